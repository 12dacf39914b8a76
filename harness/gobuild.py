"""Build Go programs (which call C through cgo) for the Go checkers, through the build cache.

Three builds of one program: plain `go build` for cgocheck (run with GODEBUG=cgocheck=2), the
same with a helper that hides Go's memory from valgrind's exit-time leak check for memcheck
(MEMCHECK_HELPER_SOURCE says why), and `go build -asan` for go-asan.  Go 1.19 (Debian 12's
golang-go) never runs LeakSanitizer at exit, so the go-asan build adds a small cgo file whose
`main` calls the program's own main (renamed) and then LeakSanitizer's check, and prints
LEAK_CHECK_MARK when the check has run; the user's files are never touched: `go build -overlay`
hands the compiler the renamed copy and the extra file (measured in ../shared/catalog.md).
Both helpers first run OpenSSL's cleanup once the program's main has returned, as C's exit()
would before the leak checks (_OPENSSL_CLEANUP_C says why and how).

A program is a rendered catalog source (written, with a go.mod, into a folder of the cache
that stays, so stack traces name a file that exists), one or more .go files of one folder, or a
folder holding a Go package (a module, or loose files).  The cache key covers the sources, every
file of the module the go command could compile into the program (the other packages it imports,
their C and assembly, go.mod and go.sum: `_module_tree`), the modules beside it that go.mod's
replace directives or a go.work bring in and what #cgo directives reach outside them, the Go
toolchain's and the C compiler's identities, the files //go:embed names, the environment the
go command, cgo and the C compiler read (GOFLAGS, CGO_*, CPATH...), the OpenSSL version, the build mode and the
helper's text; the C files among them, which Go's own cache does not track, also go into
CGO_CFLAGS as a hash (_c_stamp).  GOCACHE lives in the harness's cache (never $HOME); the network
is off (GOPROXY=off, GOTOOLCHAIN=local): only the standard library and what is already downloaded.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from . import facts
from .build import link_inputs
from .build import run_tool as _run
from .errors import BuildError

COMPILE_TIMEOUT = 300
# Printed to stderr by the go-asan helper once LeakSanitizer's check has returned: without it
# the program ended before its main returned (os.Exit, a panic, a signal) and nothing was checked.
LEAK_CHECK_MARK = "leakharness: go-asan leak check done"
# Where a process of a Go program leakharness built says it got to its exit-time check (the
# helpers' leakharness_mark_process, spelt the same there): a file GO_MARK_FILE.PID in the folder
# GO_MARKS_ENV names (the job's log folder), and the mark followed by " pid PID" on stderr.
GO_MARKS_ENV = "LEAKHARNESS_GO_MARKS"
GO_MARK_FILE = "go-mark"
# Before the mark, when leaks were found: one line per block a Go call allocated and Go never freed.
GO_ALLOC_MARK = "leakharness-go-alloc"
GO_ALLOC_LIMIT = 100000
VALGRIND_RECORD_LIMIT = 1000000  # loss records memcheck's Go helper lists the blocks of (block_list)
HELPER_NAME = "zz_leakharness_leakcheck.go"
# ... and one per recorded pointer a C call returned to Go that LeakSanitizer found leaked (KEEP_SOURCE).
GO_RETURN_MARK = "leakharness-go-return"
KEEP_NAME = "zz_leakharness_returns.go"
KEEP_LINK_NAME = "zz_leakharness_returns_linked.go"  # in the module's other packages that call C
REWRITE_VERSION = "keep-2"  # which C calls _rewrite_cgo_calls sends through leakharnessKeep (a build key part)
KEEP_LIMIT = 1 << 16  # addresses between two sweeps of the record, at least (KEEP_SOURCE)
USER_MAIN = "leakharnessUserMain"
GO_MOD = "module leakharness.local/prog\n\ngo 1.19\n"
INSTALL_HINT = "sudo apt-get install golang-go (or scripts/install-system-packages.sh)"

# Ending a Go program the way C's exit() ends a C program, for both helpers.  C's exit() runs the
# atexit handlers before LeakSanitizer's own exit-time check (registered earlier, so run later)
# and before valgrind's; OpenSSL registers OPENSSL_cleanup as one, which frees its global state,
# the method store among it.  A Go program leaves through exit_group and runs none, so the store
# still points at every method ever fetched and a reference the program took (EVP_MD_fetch,
# EVP_CIPHER_fetch, the implicit fetch in EVP_EncryptInit_ex, ...) and never handed back looked
# "still reachable", never lost: measured on five EVP_MD_fetch calls without EVP_MD_free, C loses
# 240 B + 581 B under both checkers and the Go program was "ok, 0 error(s)" under both.  So the
# helpers call OPENSSL_cleanup once the program's main has returned, right before the leak check.
# (Also when the program asked for OPENSSL_INIT_NO_ATEXIT: that can only reveal more, never less.)
#
# OpenSSL is looked up at run time, never linked: a program without OpenSSL must build and run as
# before.  dlsym(RTLD_DEFAULT) finds a libcrypto the program links, but not one it (or a library
# such as golang-fips/openssl) loaded with dlopen(RTLD_LOCAL) (measured), so every loaded object
# is asked, through a handle dlopen(RTLD_NOLOAD) gives without loading anything.  The names are
# copied and all handles taken before any cleanup runs, and released after it: OPENSSL_cleanup
# may unload provider modules.  It returns at once when OpenSSL was never initialised or is
# already cleaned up, so calling it once per object that exports it (a libssl handle finds
# libcrypto's too; the program may have called it itself) is harmless.
#
# Only OpenSSL's handler, not every atexit handler: running them all means calling C's exit(),
# which in the go-asan build also runs LeakSanitizer's own exit-time check (it dies with exit code
# 23 before this helper's Go-caller report and LEAK_CHECK_MARK, so the run would read as not
# checked), and ld.so's destructor pass while the Go runtime's threads still run; glibc has no
# call that runs the handlers and returns (__cxa_finalize(NULL) runs those two as well).  A Go
# program never runs atexit handlers itself; this one is run for what it reveals, since OpenSSL's
# store is what hides lost references.  What another library's handler would free stays allocated
# and reachable from that library's globals (no false alarm); a reference lost behind such a
# library's own cache stays unseen, as it was before.
#
# Goroutines still running when main returns keep running (as other threads do during C's
# exit()): one that uses OpenSSL after the cleanup, or a finalizer that frees an OpenSSL object
# then, may crash or be reported; that shows as a crash or an error, never as a clean run.
_OPENSSL_CLEANUP_C = r"""
#cgo LDFLAGS: -ldl
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  // dl_iterate_phdr and RTLD_NOLOAD (before any include)
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
// This process got to its exit-time check: a file named by its pid in the job's log folder (where
// the checker looks: a child's stderr may go elsewhere), and the mark with its pid on stderr.  A
// child that ends before its main returns (os.Exit) writes neither, and is found unchecked.
static void leakharness_mark_process(const char *mark) {
	const char *dir = getenv("LEAKHARNESS_GO_MARKS");
	char path[4096];
	if (dir && dir[0] == '/' && snprintf(path, sizeof path, "%s/go-mark.%ld", dir, (long)getpid()) < (int)sizeof path) {
		int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd >= 0)
			close(fd);
	}
	fprintf(stderr, "\n%s pid %ld\n", mark, (long)getpid());
	fflush(stderr);
}
#define LEAKHARNESS_MAX_OBJECTS 1024
static char *leakharness_names[LEAKHARNESS_MAX_OBJECTS];
static int leakharness_nnames;
// Only the names, copied: a dlopen inside dl_iterate_phdr's lock could deadlock against another
// thread's dlopen (a goroutine's getaddrinfo loading an NSS module, say).
static int leakharness_object(struct dl_phdr_info *info, size_t size, void *data) {
	(void)size;
	(void)data;
	if (leakharness_nnames < LEAKHARNESS_MAX_OBJECTS && info->dlpi_name && info->dlpi_name[0])
		leakharness_names[leakharness_nnames++] = strdup(info->dlpi_name);
	return 0;
}
static void *leakharness_handles[LEAKHARNESS_MAX_OBJECTS + 1];
static void leakharness_openssl_cleanup(void) {
	void **handles = leakharness_handles;
	void (*cleanup)(void);
	int i, n = 0;
	handles[n] = dlopen(NULL, RTLD_LAZY);  // the program and what it links (an OpenSSL built in)
	n += handles[n] != NULL;
	dl_iterate_phdr(leakharness_object, NULL);
	for (i = 0; i < leakharness_nnames; i++) {
		if (leakharness_names[i]) {
			handles[n] = dlopen(leakharness_names[i], RTLD_LAZY | RTLD_NOLOAD);  // loaded already, or NULL
			n += handles[n] != NULL;
			free(leakharness_names[i]);
		}
	}
	leakharness_nnames = 0;
	for (i = 0; i < n; i++) {
		*(void **)&cleanup = dlsym(handles[i], "OPENSSL_cleanup");
		if (cleanup)
			cleanup();
	}
	for (i = 0; i < n; i++)
		dlclose(handles[i]);
}
"""

# Go text both the helper and KEEP_LINK_SOURCE (the module's other packages) hold, written once as
# the compiler reads it; _braced() makes it survive the str.format a template still goes through.
_WRAPPERS_GO = """func leakharnessCString(s string) *C.char {
	p := C.CString(s)
	leakharnessRecord(unsafe.Pointer(p), len(s)+1)
	return p
}

func leakharnessCBytes(b []byte) unsafe.Pointer {
	p := C.CBytes(b)
	leakharnessRecord(p, len(b))
	return p
}

func leakharnessCMalloc(n C.size_t) unsafe.Pointer {
	p := C.malloc(n)
	leakharnessRecord(p, int(n))
	return p
}

func leakharnessCFree(p unsafe.Pointer) {
	leakharnessForget(p)
	C.free(p)
}
"""
_KEEP_GO = """func leakharnessKeep[T any](function string, v T) T {
	r := reflect.ValueOf(any(v))
	if k := r.Kind(); k == reflect.Ptr || k == reflect.UnsafePointer {
		if p := r.Pointer(); p != 0 {
			var pcs [4]uintptr
			n := runtime.Callers(2, pcs[:]) // its caller (resolved at exit)
			leakharnessStore(function, p, pcs, n)
		}
	}
	return v
}
"""


def _braced(text: str, formats: int = 1) -> str:
    """text with its braces doubled once per str.format it is still to go through."""
    for _ in range(formats):
        text = text.replace("{", "{{").replace("}", "}}")
    return text


# The recoverable check returns instead of exiting on a leak, so the mark is printed either way;
# the process then exits 23 when leaks were found (as LSan's exitcode) so a shell sees it too.
#
# Naming the Go caller: no unwinder crosses the cgo stack switch, so LSan's stack of a C.CString
# ends in cgo's allocation stub.  The overlay also rewrites the package's C.CString, C.CBytes,
# C.malloc and C.free calls into the wrappers below, which record each block's address with the Go
# function and line that asked for it (and forget it when Go frees it); after a leak check that
# found leaks, the blocks still recorded are printed (GO_ALLOC_MARK lines), and collect joins them
# with the addresses LSan lists (report_objects=1): a leaked block named by both is that Go call's.
_RECORD_GO = f"""type leakharnessSite struct {{
	size int
	n    int
	pcs  [4]uintptr
}}

// By the name's end: in a package's test binary they are <import path>.leakharnessCString.
var leakharnessWrappers = []string{{".leakharnessRecord", ".leakharnessCString", ".leakharnessCBytes",
	".leakharnessCMalloc"}}

func leakharnessIsWrapper(function string) bool {{
	for _, suffix := range leakharnessWrappers {{
		if strings.HasSuffix(function, suffix) {{
			return true
		}}
	}}
	return strings.Contains(function, ".leakharnessKeep[") // generic: main.leakharnessKeep[...]
}}

var (
	leakharnessMu     sync.Mutex
	leakharnessBlocks = map[uintptr]leakharnessSite{{}} // by leakharnessHidden address
	// The records keep their addresses with the top bits flipped: no value in Go's memory may
	// point at a C block, or valgrind's leak check (of a program that ends by os.Exit, its Go
	// memory never hidden) would count the lost block as reachable through the record itself.
	leakharnessMask = ^(^uintptr(0) >> 16) // the top 16 bits: never a heap address once flipped
)

func leakharnessHidden(p uintptr) uintptr {{
	return p ^ leakharnessMask // its own inverse
}}

func leakharnessRecord(p unsafe.Pointer, size int) {{
	if p == nil {{
		return
	}}
	site := leakharnessSite{{size: size}}
	site.n = runtime.Callers(2, site.pcs[:]) // the wrapper and its callers (resolved at exit)
	leakharnessMu.Lock()
	leakharnessBlocks[leakharnessHidden(uintptr(p))] = site
	leakharnessMu.Unlock()
}}

{_WRAPPERS_GO}
// Is p a block the allocator handed out and that was not freed since?  (go-asan: ASan's ownership;
// memcheck: addressable memory, which a freed block is not while valgrind keeps it apart.)
func leakharnessOwned(p uintptr) bool {{
	return C.leakharness_owned(C.uintptr_t(p)) != 0
}}

func leakharnessForget(p unsafe.Pointer) {{
	leakharnessMu.Lock()
	delete(leakharnessBlocks, leakharnessHidden(uintptr(p)))
	leakharnessMu.Unlock()
}}

// The Go frames of a recorded call, its caller first (inlined ones included): the wrappers, the
// runtime and this file left out, the program's main under its own name again.
func leakharnessFrames(pcs []uintptr) []runtime.Frame {{
	var out []runtime.Frame
	frames := runtime.CallersFrames(pcs)
	for {{
		fr, more := frames.Next()
		if fr.Function != "" && !leakharnessIsWrapper(fr.Function) && !strings.HasPrefix(fr.Function, "runtime.") &&
			!strings.HasSuffix(fr.File, "/{HELPER_NAME}") {{
			if fr.Function == "main.{USER_MAIN}" || strings.HasPrefix(fr.Function, "main.{USER_MAIN}.") {{
				fr.Function = "main.main" + fr.Function[len("main.{USER_MAIN}"):] // renamed for the overlay only (closures too)
			}}
			out = append(out, fr)
		}}
		if !more {{
			return out
		}}
	}}
}}

// The Go function and line of a recorded call.
func leakharnessCaller(pcs []uintptr) (string, string, int) {{
	if frames := leakharnessFrames(pcs); len(frames) > 0 {{
		return frames[0].Function, frames[0].File, frames[0].Line
	}}
	return "?", "?", 0
}}

// Set by the returns file ({KEEP_NAME}) when the build also records the pointers C calls return.
var leakharnessReportReturns func(w *bufio.Writer) int

// The recorded Go calls of the blocks still allocated (GO_ALLOC_MARK, GO_RETURN_MARK lines); how
// many it wrote (none: no lost block can be named, and memcheck's helper lists none).
func leakharnessReport() int {{
	w := bufio.NewWriter(os.Stderr)
	leakharnessMu.Lock()
	n, written := 0, 0
	for key, site := range leakharnessBlocks {{
		addr := leakharnessHidden(key)
		if !leakharnessOwned(addr) {{
			continue
		}}
		if n++; n > {GO_ALLOC_LIMIT} {{
			break
		}}
		written++
		fn, file, line := leakharnessCaller(site.pcs[:site.n])
		w.WriteString("{GO_ALLOC_MARK} 0x" + strconv.FormatUint(uint64(addr), 16) + " " + strconv.Itoa(site.size) +
			" " + fn + " " + file + ":" + strconv.Itoa(line) + "\\n")
	}}
	if leakharnessReportReturns != nil {{
		written += leakharnessReportReturns(w)
	}}
	leakharnessMu.Unlock()
	w.Flush()
	return written
}}
"""

HELPER_SOURCE = f"""// Added by leakharness to the go-asan build only (go build -overlay): Go 1.19 never runs
// LeakSanitizer at exit, so main runs the program's own main and then the leak check.
package main

/*{_OPENSSL_CLEANUP_C}
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
int __lsan_do_recoverable_leak_check(void);
int __sanitizer_get_ownership(const volatile void *p);
static int leakharness_leak_check(void) {{
	return __lsan_do_recoverable_leak_check();
}}
static int leakharness_owned(uintptr_t p) {{
	return __sanitizer_get_ownership((const volatile void *)p);
}}
static void leakharness_mark(void) {{
	leakharness_mark_process("{LEAK_CHECK_MARK}");
}}
*/
import "C"

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"
)

{_RECORD_GO}
func main() {{
	{USER_MAIN}()
	C.leakharness_openssl_cleanup() // as C's exit() would, before the leak check (see gobuild.py)
	leaked := C.leakharness_leak_check() != 0
	if leaked {{
		leakharnessReport()
	}}
	C.leakharness_mark()
	if leaked {{
		os.Exit(23)
	}}
}}
"""
# Naming the Go caller of any C call whose result leaked: the go-asan build also sends every C
# call whose value Go uses (`ctx := C.EVP_MD_CTX_new()`, `return C.SSL_new(c)`, an argument) through
# leakharnessKeep, which records a returned pointer with the C function and the Go function and
# line that called it; after a leak check that found leaks, the records are printed (GO_RETURN_MARK
# lines) and collect joins them with LeakSanitizer's leaked objects by address and C function: a
# leaked block that the C function returned to that Go line is named by it.  OpenSSL's own frees are
# not seen: a record whose block C has freed is dropped at the next sweep and never printed (ASan's
# ownership), but a block freed and a new one at the same address between two sweeps could be
# named by the old call, only for the same C function and only after ASan's quarantine (256 MB of
# frees) has let the address be reused.  leakharnessKeep is generic, so the file is added only to a
# package whose language version has generics (Go 1.18).
KEEP_SOURCE = f"""// Added by leakharness to the go-asan and memcheck builds only (go build -overlay): the
// pointers C calls return to Go, recorded with the Go function and line that made the call.
package {{package}}

import (
	"bufio"
	"reflect"
	"runtime"
	"strconv"
)

type leakharnessReturn struct {{{{
	function string
	n        int
	pcs      [4]uintptr
}}}}

// A program may get millions of pointers from C (and ASan's quarantine keeps a freed address from
// coming back soon): when the record reaches leakharnessSweepAt addresses, those C has freed since
// are dropped, and the next sweep comes at twice what is left (at least {KEEP_LIMIT}).  Past four
// times that, a new address is not recorded (its block, if leaked, is not named).
const leakharnessReturnsMin = {KEEP_LIMIT}

var (
	leakharnessReturns = map[uintptr]leakharnessReturn{{{{}}}} // by leakharnessHidden address
	leakharnessSweepAt = leakharnessReturnsMin
)

func leakharnessSweep() {{{{
	for key := range leakharnessReturns {{{{
		if !leakharnessOwned(leakharnessHidden(key)) {{{{
			delete(leakharnessReturns, key)
		}}}}
	}}}}
	leakharnessSweepAt = 2 * len(leakharnessReturns)
	if leakharnessSweepAt < leakharnessReturnsMin {{{{
		leakharnessSweepAt = leakharnessReturnsMin
	}}}} else if leakharnessSweepAt > 4*leakharnessReturnsMin {{{{
		leakharnessSweepAt = 4 * leakharnessReturnsMin
	}}}}
}}}}

func init() {{{{
	leakharnessReportReturns = leakharnessWriteReturns
}}}}

{_braced(_KEEP_GO)}
// The record of one pointer C returned: this package's calls and, through {KEEP_LINK_NAME}, the
// other packages' of the module.
func leakharnessStore(function string, p uintptr, pcs [4]uintptr, n int) {{{{
	key := leakharnessHidden(p)
	leakharnessMu.Lock()
	_, known := leakharnessReturns[key]
	if !known && len(leakharnessReturns) >= leakharnessSweepAt {{{{
		leakharnessSweep()
	}}}}
	if known || len(leakharnessReturns) < leakharnessSweepAt {{{{
		leakharnessReturns[key] = leakharnessReturn{{{{function: function, n: n, pcs: pcs}}}}
	}}}}
	leakharnessMu.Unlock()
}}}}

// Called by leakharnessReport, with leakharnessMu held: per block still allocated (the others were
// freed, in C: no leak of theirs to name), the C function, then the Go frames that made the call
// (leakharnessFrames, a tab between two).
func leakharnessWriteReturns(w *bufio.Writer) int {{{{
	n, written := 0, 0
	for key, site := range leakharnessReturns {{{{
		addr := leakharnessHidden(key)
		if !leakharnessOwned(addr) {{{{
			continue
		}}}}
		if n++; n > {GO_ALLOC_LIMIT} {{{{
			break
		}}}}
		written++
		w.WriteString("{GO_RETURN_MARK} 0x" + strconv.FormatUint(uint64(addr), 16) + " " + site.function)
		sep := " "
		for _, fr := range leakharnessFrames(site.pcs[:site.n]) {{{{
			w.WriteString(sep + fr.Function + " " + fr.File + ":" + strconv.Itoa(fr.Line))
			sep = "\\t"
		}}}}
		w.WriteString("\\n")
	}}}}
	return written
}}}}
"""

# The module's other packages that call C (a program's internal/..., a module a replace directive
# brings in) are rewritten the same way; KEEP_LINK_SOURCE, added to each, sends their records to
# the helper's own functions through //go:linkname (a package cannot import main): `target` is
# main, or the tested package's import path in a test binary.  Both are generic-free but
# leakharnessKeep, so the file goes only to a package of a module with generics.
KEEP_LINK_SOURCE = """// Added by leakharness to the go-asan and memcheck builds only (go build -overlay): this
// package's C calls, recorded by the program's own record (the helper's functions in {target}).
package {package}

/*
#include <stdlib.h>
*/
import "C"

import (
	"reflect"
	"runtime"
	"unsafe"
)

//go:linkname leakharnessStore {target}.leakharnessStore
func leakharnessStore(function string, p uintptr, pcs [4]uintptr, n int)

//go:linkname leakharnessRecord {target}.leakharnessRecord
func leakharnessRecord(p unsafe.Pointer, size int)

//go:linkname leakharnessForget {target}.leakharnessForget
func leakharnessForget(p unsafe.Pointer)
""" + "\n" + _braced(_KEEP_GO) + "\n" + _braced(_WRAPPERS_GO)

# C.CString(...) and the others, as a call (not C.CStringFoo, not inside another identifier).
_CGO_ALLOC_CALL = re.compile(r"(?<![\w.])C\.(CString|CBytes|malloc|free)\(")
_WRAPPERS = {"CString": "leakharnessCString(", "CBytes": "leakharnessCBytes(", "malloc": "leakharnessCMalloc(",
             "free": "leakharnessCFree("}
_IMPORTS_C = re.compile(r'^import\s+"C"|^\s+"C"\s*$', re.M)
# Any C call, and what may come before one whose value Go uses (KEEP_SOURCE): an assignment or a
# comparison (`=`, `:=`, `==`, `+=`), another operator, `(` or `,` (an argument, an element), or
# `return`; after `{` or `:` only with a comma after it (an element of a composite literal).  Never
# a call that is a statement of its own (a void C function, or a result dropped), nor one after `[`
# (an array's length: where a constant is due).
_CGO_CALL = re.compile(r"(?<![\w.])C\.(\w+)\(")
_VALUE_BEFORE = re.compile(r"(?:[-=+*/%&|^<>!(,]|(?<![\w.])return)\Z")
# cgo's own functions, and its numeric types (a conversion, perhaps in a constant expression).
_NOT_KEPT = frozenset({"CString", "CBytes", "malloc", "free", "GoString", "GoStringN", "GoBytes", "char", "schar",
                       "uchar", "short", "ushort", "int", "uint", "long", "ulong", "longlong", "ulonglong", "float",
                       "double", "complexfloat", "complexdouble"})
_CONST = re.compile(r"(?<![\w.])const\b\s*(\()?")


def _code_only(text: str) -> str:
    """text with its comments (the cgo preamble among them), strings and runes blanked out, every
    character where it was and every newline kept: what the rewrite may read as Go code."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'`" or text.startswith(("//", "/*"), i):
            if text.startswith("//", i):
                end = text.find("\n", i)
                end = n if end < 0 else end
            elif text.startswith("/*", i):
                end = text.find("*/", i + 2)
                end = n if end < 0 else end + 2
            elif c == "`":
                end = text.find("`", i + 1)
                end = n if end < 0 else end + 1
            else:  # "..." or '...', with backslash escapes, never past the line
                end = i + 1
                while end < n and text[end] not in (c, "\n"):
                    end += 2 if text[end] == "\\" else 1
                end = min(end + 1, n)
            for k in range(i, end):
                if out[k] != "\n":
                    out[k] = " "
            i = end
            continue
        i += 1
    return "".join(out)


def _closing(code: str, open_at: int) -> int | None:
    """The index of the parenthesis closing the one at open_at."""
    depth = 0
    for k in range(open_at, len(code)):
        if code[k] in "([{":
            depth += 1
        elif code[k] in ")]}":
            depth -= 1
            if depth == 0:
                return k if code[k] == ")" else None
    return None


def _const_spans(code: str) -> list[tuple[int, int]]:
    spans = []
    for m in _CONST.finditer(code):
        if m.group(1):
            end = _closing(code, m.start(1))
            spans.append((m.start(), len(code) if end is None else end))
        else:
            end = code.find("\n", m.end())
            spans.append((m.start(), len(code) if end < 0 else end))
    return spans


def _single_target(code: str, op_end: int) -> bool:
    """Is the assignment ending at op_end (`=`, `:=`) made to one target?  `p, err := C.f()` is
    cgo's errno form: the call has two results there."""
    start = max(code.rfind(ch, max(0, op_end - 4096), op_end) for ch in "\n;{}") + 1
    depth = 0
    for ch in code[start:op_end]:
        depth += ch in "([" and 1 or (ch in ")]" and -1 or 0)
        if ch == "," and depth == 0:
            return False
    return True


def _rewrite_cgo_calls(text: str, keep: bool = False) -> str:
    """The file's cgo allocations and frees through the recording wrappers and, with keep, every C
    call whose value Go uses through leakharnessKeep (KEEP_SOURCE); lines unchanged.  Strings,
    runes and comments (the cgo preamble among them) are left as they are."""
    if not _IMPORTS_C.search(text):
        return text
    code = _code_only(text)
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement): end == start inserts
    consts = _const_spans(code) if keep else []
    for m in _CGO_CALL.finditer(code):
        name = m.group(1)
        if name in _WRAPPERS:
            edits.append((m.start(), m.end(), _WRAPPERS[name]))
            continue
        if not keep or name in _NOT_KEPT or name.endswith("_t"):
            continue
        last = m.start() - 1  # the code before the call, spaces and line ends skipped
        while last >= 0 and code[last].isspace():
            last -= 1
        before = code[max(0, last - 7):last + 1]
        close = _closing(code, m.end() - 1)
        if close is None or any(a <= m.start() < b for a, b in consts):
            continue
        if not _VALUE_BEFORE.search(before):
            # An element of a composite literal (`&conn{ssl: C.SSL_new(c), ...}`, `{C.f(), ...}`):
            # a comma after it.  Not a statement after `case x:` or a label, never followed by one.
            after = code[close + 1:close + 2048].lstrip()
            if not (before.endswith((":", "{")) and after.startswith(",")):
                continue
        if before.endswith("=") and not before.endswith(("==", "!=", "<=", ">=")) and not _single_target(code, last):
            continue
        edits.append((m.start(), m.start(), f'leakharnessKeep("{name}", '))
        edits.append((close + 1, close + 1, ")"))
    for start, end, replacement in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


# memcheck: valgrind scans all of Go's memory at exit, where dead goroutine frames and dead heap
# objects still hold the addresses of C blocks the program lost, so such leaks show as "still
# reachable" (measured on cgo_ssl_error_path: 36,952 B more reachable, nothing lost).  The memcheck
# build therefore ends, once the program's main has returned (it released everything then), by
# marking Go's heap arenas (goroutine stacks included; linux/amd64 puts them at the hints
# i<<40 | 0xc000000000) as no-access for valgrind and leaving with _exit(0): valgrind's exit-time
# leak check then scans the C side alone, as LeakSanitizer does (error reports are turned off in
# those ranges first: the runtime's own threads, sysmon, still touch them until the process is
# gone).  It prints MEMCHECK_MARK first.
MEMCHECK_MARK = "leakharness: Go memory hidden from valgrind's leak check"
MEMCHECK_HELPER_SOURCE = f"""// Added by leakharness to the memcheck build only (go build -overlay): after the program's
// main, valgrind's leak check must not take stale pointers in Go's memory for references.
package main

/*{_OPENSSL_CLEANUP_C}
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <valgrind/memcheck.h>
static int leakharness_owned(uintptr_t p) {{
	unsigned char vbits;
	return VALGRIND_GET_VBITS((void *)p, &vbits, 1) == 1;  // 3: not addressable (freed), and no error reported
}}
static void leakharness_hide_go_memory_and_exit(int code, int listed) {{
	FILE *maps = fopen("/proc/self/maps", "r");
	char line[4096];
	unsigned long lo, hi;
	while (maps && fgets(line, sizeof line, maps)) {{
		if (sscanf(line, "%lx-%lx", &lo, &hi) != 2 || hi <= lo)
			continue;
		if ((lo >> 40) == ((hi - 1) >> 40) && (lo & 0xffffffffffUL) >= 0xc000000000UL) {{
			// The runtime's own threads (sysmon) may still touch it before _exit: not errors.
			VALGRIND_DISABLE_ADDR_ERROR_REPORTING_IN_RANGE((void *)lo, hi - lo);
			VALGRIND_MAKE_MEM_NOACCESS((void *)lo, hi - lo);
		}}
	}}
	if (maps)
		fclose(maps);
	if (listed) {{
		// The addresses of the lost blocks, for the Go calls recorded above (valgrind's XML has
		// none): a leak search as valgrind's own at exit will make, and its blocks, record by record.
		unsigned long leaked = 0, dubious = 0, reachable = 0, suppressed = 0;
		VALGRIND_MONITOR_COMMAND("leak_check summary");
		VALGRIND_COUNT_LEAK_BLOCKS(leaked, dubious, reachable, suppressed);
		if (leaked + dubious > 0)
			VALGRIND_MONITOR_COMMAND("block_list 1..{VALGRIND_RECORD_LIMIT} limited {GO_ALLOC_LIMIT}");
	}}
	leakharness_mark_process("{MEMCHECK_MARK}");
	_exit(code);  // no Go code runs with its memory hidden
}}
*/
import "C"

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"
)
{_RECORD_GO}
func main() {{
	{USER_MAIN}()
	C.leakharness_openssl_cleanup() // as C's exit() would, before valgrind's leak check (see gobuild.py)
	C.leakharness_hide_go_memory_and_exit(0, C.int(leakharnessReport())) // listed: a leak search, for the join
}}
"""

# A package's tests (`go test -c`, a project's go_test target): the same helpers, put into the
# package itself, whose end runs once the tests have: a TestMain added by the overlay runs them
# (through the package's own TestMain, renamed, when it has one), then OpenSSL's cleanup and the
# leak check, and exits with the tests' own exit code.
TEST_MAIN_NAME = "zz_leakharness_testmain_test.go"
USER_TEST_MAIN = "leakharnessUserTestMain"
_TEST_FINISH = {
    "address": """
func leakharnessTestFinish(code int) {
	C.leakharness_openssl_cleanup() // as C's exit() would, before the leak check (see gobuild.py)
	leaked := C.leakharness_leak_check() != 0
	if leaked {
		leakharnessReport()
	}
	C.leakharness_mark()
	if leaked {
		os.Exit(23)
	}
	os.Exit(code)
}
""",
    "valgrind": """
func leakharnessTestFinish(code int) {
	C.leakharness_openssl_cleanup() // as C's exit() would, before valgrind's leak check (see gobuild.py)
	C.leakharness_hide_go_memory_and_exit(C.int(code), C.int(leakharnessReport()))
}
""",
}
_TEST_MAIN = """// Added by leakharness (go test -c -overlay): the leak check runs once the tests have.
package {package}

import (
	"reflect"
	"testing"
)

var _ = reflect.ValueOf

func TestMain(m *testing.M) {{
{body}
}}
"""
_TEST_MAIN_FUNC = re.compile(r"^func\s+TestMain\s*\(", re.M)
_PACKAGE_NAME = re.compile(r"^package\s+(\w+)", re.M)


def test_helper_source(mode: str, package: str) -> str:
    """The helper of `mode` for a package's test binary: in that package, ending in
    leakharnessTestFinish(code) instead of a main."""
    head = HELPERS[mode].split("\nfunc main() {", 1)[0]
    return head.replace("package main\n", f"package {package}\n", 1) + _TEST_FINISH[mode]


# The build modes a Go checker may ask for (Checker.go_mode): "valgrind" (with the helper that
# hides Go's memory from valgrind's leak check), "plain", and "address" (-asan with the
# leak-check helper).
MODES = ("valgrind", "plain", "address")
RECORDING_MODES = ("address", "valgrind")  # whose helper records the Go calls of C memory (_RECORD_GO)
HELPERS = {"address": HELPER_SOURCE, "valgrind": MEMCHECK_HELPER_SOURCE}
_MAIN_FUNC = re.compile(r"^func\s+main\s*\(\s*\)", re.M)
_PACKAGE_MAIN = re.compile(r"^package\s+main\b", re.M)


def go_binary() -> str | None:
    return shutil.which("go")


@functools.lru_cache(maxsize=None)
def go_identity() -> str:
    """`/usr/lib/go-1.19/bin/go go version go1.19.8 linux/amd64`: part of every Go build's key."""
    go = go_binary()
    if go is None:
        raise BuildError(f"go not found (the Go checkers need it; install: {INSTALL_HINT})")

    def ask() -> str | None:
        try:
            return _run([go, "version"], env=_go_env(None)).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return None

    # The version is the binary's own: remembered while it is unchanged (facts.py).
    answer = facts.remembered("go-version:" + os.path.realpath(go), [os.path.realpath(go)], ask)
    if answer is None:
        raise BuildError("go version failed: it could not be run")
    return f"{os.path.realpath(go)} {answer}"


def _go_env(cache_dir: Path | None, extra_cflags: tuple[str, ...] = (),
            extra_ldflags: tuple[str, ...] = ()) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO") or k in ("GOPATH", "GOMODCACHE", "GOFLAGS")}
    env.update({
        "CGO_ENABLED": "1",
        "GOTOOLCHAIN": "local",  # never download another toolchain
        "GOPROXY": "off",  # nor modules: stdlib and what the module cache holds
        "GOSUMDB": "off",
        "GO111MODULE": "on",
        "CC": "gcc",
        # -O0: cgo's own C (the preamble's helpers) keeps its frames in memcheck's stacks.
        "CGO_CFLAGS": " ".join(("-g", "-O0", *extra_cflags)),
        "CGO_LDFLAGS": " ".join(extra_ldflags),
    })
    if cache_dir is not None:
        env["GOCACHE"] = str(Path(cache_dir) / "go-build")
    return env


def is_go_source(path: Path) -> bool:
    path = Path(path)
    return path.suffix == ".go" or (path.is_dir() and any(path.glob("*.go")))


def _package_files(folder: Path, tests: bool = False) -> list[Path]:
    """The files of the package in folder that the build reads (and go.mod, go.sum above it);
    with tests, its _test.go files too."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".go", ".c", ".h", ".s", ".S")
                   and (tests or not p.name.endswith("_test.go")))
    for parent in (folder, *folder.parents):
        if (parent / "go.mod").is_file():
            files.append(parent / "go.mod")
            if (parent / "go.sum").is_file():
                files.append(parent / "go.sum")
            break
    return files


def _module_root(folder: Path) -> Path | None:
    for parent in (folder, *folder.parents):
        if (parent / "go.mod").is_file():
            return parent
    return None


def key(spec, tree: list[Path], stamp: str | None) -> str:
    """The build's cache key; tree is _module_tree's, stamp _c_stamp's (both computed once by build_go)."""
    from .build import compiler_identity, openssl_flags

    h = hashlib.sha256()

    def add(*parts: str) -> None:
        for part in parts:
            h.update(part.encode("utf-8", "surrogateescape"))
            h.update(b"\0")

    mode = spec.go_mode
    if mode not in MODES:
        raise BuildError(f"checker {spec.profile!r} cannot check a Go program (it has no Go build mode)")
    if mode == "valgrind" and shutil.which("valgrind") is None:  # its build includes valgrind/memcheck.h
        raise BuildError("valgrind not found on PATH; install: sudo apt-get install valgrind "
                         "(or scripts/install-system-packages.sh)")
    version, ssl_cflags, ssl_libs = openssl_flags()
    add("leakharness-gobuild-2", "output", spec.name)  # builds/KEY/NAME: one entry per name (build.BuildSpec.key)
    add(go_identity(), compiler_identity("gcc"), "openssl", version, *ssl_cflags,
        *ssl_libs, "mode", mode, "cflags", *spec.cflags, "ldflags", *spec.ldflags)
    if spec.go_test:
        add("test", _TEST_MAIN, *_TEST_FINISH.values())
    if mode in HELPERS:
        add("helper", HELPERS[mode])
    if mode in RECORDING_MODES:  # which calls are rewritten, and whether the package's Go has generics
        add("keep", KEEP_SOURCE, KEEP_LINK_SOURCE, REWRITE_VERSION, str(_has_generics(_spec_folder(spec))))
    # What the go command, cgo, the C compiler and pkg-config read from the environment the build
    # is handed (GOFLAGS: -mod=vendor, -tags; CGO_CPPFLAGS=-DLEAK changed the program and the
    # key did not see it); CC, CGO_CFLAGS and CGO_LDFLAGS are set by _go_env, the user's kept here.
    add("environment", *sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("CGO_") or k in _BUILD_ENV))
    for name, text in spec.sources:
        add("source", name, text)
    user = _user_files(spec)
    for path in user:
        add("file", str(path), path.read_text(encoding="utf-8", errors="replace"))
    for path in tree:
        add("module file", str(path), facts.sha256_file(path))
    for path in _embedded([*user, *tree]):  # //go:embed: compiled into the program as they are
        add("embedded file", str(path), facts.sha256_file(path))
    for path in link_inputs(spec.ldflags):  # the target's own ldflags (CGO_LDFLAGS): -L folders, archives
        add("link input", path, facts.sha256_file(path))
    if stamp:
        add("C inputs", stamp)
    return h.hexdigest()


# The environment variables a Go build reads besides CGO_* (gobuild.key).
_BUILD_ENV = frozenset({"GOFLAGS", "GOPATH", "GOMODCACHE", "CXX", "AR", "FC", "PKG_CONFIG", "PKG_CONFIG_PATH",
                        "PKG_CONFIG_LIBDIR", "PKG_CONFIG_SYSROOT_DIR", "CPATH", "C_INCLUDE_PATH",
                        "CPLUS_INCLUDE_PATH", "LIBRARY_PATH", "GCC_EXEC_PREFIX", "COMPILER_PATH"})
_EMBED = re.compile(r"^//go:embed\s(.*)$", re.M)
_EMBED_PATTERN = re.compile(r'"((?:[^"\\]|\\.)*)"|`([^`]*)`|(\S+)')


def _text(path: Path) -> str | None:
    """A source's text (undecodable bytes replaced), or None when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder)
    except (OSError, RuntimeError, ValueError):  # a symbolic link loop: the go command refuses it too
        return False


def _embedded(files: list[Path]) -> list[Path]:
    """The files the //go:embed directives of these Go files name (a folder: every file under
    it), inside each file's own folder, as the go command allows."""
    found: list[Path] = []
    for f in files:
        text = _text(f) if f.suffix == ".go" else None
        if text is None or "//go:embed" not in text:
            continue
        folder = f.parent.resolve()
        for directive in _EMBED.finditer(text):
            for m in _EMBED_PATTERN.finditer(directive.group(1)):
                pattern = next(g for g in m.groups() if g is not None)
                pattern = pattern.removeprefix("all:")
                if not pattern or pattern.startswith("/") or ".." in pattern.split("/"):
                    continue  # the go command refuses these
                for hit in sorted(folder.glob(pattern)):
                    if not _inside(hit, folder):
                        continue
                    if hit.is_dir():
                        found.extend(p for p in sorted(hit.rglob("*")) if p.is_file() and _inside(p, folder))
                    elif hit.is_file():
                        found.append(hit)
    return list(dict.fromkeys(found))


def _c_stamp(spec, tree: list[Path], cache_dir: Path) -> str | None:
    """A hash of the C side of a build the go command itself does not track: every file of the
    module tree but Go's (a header another package includes by a relative path or -I), and what
    the #cgo directives reach outside it (_cgo_inputs).  Go's build cache keys a cgo compile by
    its package's own files and flags only, so the build passes it as a -D flag (_stamped_env):
    an edited header or a new archive is compiled and linked again, never taken from GOCACHE.
    None when there is no such file (a catalog program: GOCACHE shared as before)."""
    c_side = [p for p in tree if p.suffix != ".go" and p.name not in _MODULE_FILES + _WORK_FILES]
    try:
        outside = _cgo_inputs([*_user_files(spec), *tree], set(tree), Path(cache_dir) / "cgo-preambles")
    except _Unbounded:  # cannot be vouched for: a new key, so a new build, every time
        return f"unbounded-{time.time_ns()}"
    if not c_side and not outside:
        return None
    h = hashlib.sha256()
    for path in (*c_side, *outside):
        h.update(f"{path}\0{facts.sha256_file(path)}\0".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:24]


def _stamped_env(spec, cache_dir: Path, stamp: str | None) -> dict[str, str]:
    """The build's environment (_go_env) with _c_stamp's hash among CGO_CFLAGS, when there is one."""
    extra = (f"-DLEAKHARNESS_C_INPUTS={stamp}",) if stamp else ()
    return _go_env(cache_dir, (*spec.cflags, *extra), spec.ldflags)


_CGO_DIRECTIVE = re.compile(r"^\s*(?://)?\s*#cgo\s+(?:[^:\n]*\s)?(CFLAGS|CPPFLAGS|CXXFLAGS|LDFLAGS|pkg-config)\s*:(.*)$",
                            re.M)
_HEADER_SUFFIXES = frozenset({".h", ".hh", ".hpp", ".hxx", ".inc"})
# The compiler's and the distribution's folders (their identities cover them) and the kernel's.
_SYSTEM_FOLDERS = ("usr", "lib", "lib64", "proc", "sys", "dev")
# Headers under one -I folder that are read to key a build; past it the folder cannot be vouched
# for, and the build is made again every time (_c_stamp): never a stale one.
HEADER_WALK_LIMIT = 20_000


def _headers_under(folder: Path) -> list[Path] | None:
    """The header files under folder (symbolic links to folders not followed), or None past
    HEADER_WALK_LIMIT files."""
    found, seen = [], 0
    for here, dirs, files in os.walk(folder):
        dirs.sort()
        seen += len(files)
        if seen > HEADER_WALK_LIMIT:
            return None
        found += [Path(here) / f for f in sorted(files) if os.path.splitext(f)[1] in _HEADER_SUFFIXES]
    return [p for p in found if p.is_file()]


def _cgo_inputs(files: list[Path], known: set[Path], preambles: Path) -> list[Path]:
    """What the `#cgo` directives and C preambles of these Go files make a build read outside the
    files already keyed (known), ${SRCDIR} being each file's folder, the distribution's folders
    aside (_distributed): the headers under their -I folders; the archives and libraries their
    LDFLAGS and pkg-config packages name (link_inputs: an archive of /usr/local/lib too); and
    every header a preamble includes, as `gcc -M` finds it with the file's flags (/usr/local/include
    after a `make install`), each preamble written into the folder `preambles`."""
    found: list[Path] = []
    for f in files:
        if f.suffix != ".go":
            continue
        text = f.read_text(encoding="utf-8", errors="replace")
        if "#cgo" not in text and 'import "C"' not in text:
            continue
        cflags: list[str] = []
        for kind, value in _CGO_DIRECTIVE.findall(text):
            try:
                flags = shlex.split(value.replace("${SRCDIR}", str(f.parent)))
            except ValueError:
                continue  # the go command refuses it, and the build fails
            if kind == "pkg-config":
                package_cflags, libs = _pkg_config(tuple(flags))
                cflags += package_cflags
                found += [Path(p) for p in link_inputs(libs, str(f.parent))]
                continue
            if kind == "LDFLAGS":
                found += [Path(p) for p in link_inputs(flags, str(f.parent))]
                continue
            cflags += flags
            tokens = iter(flags)
            for token in tokens:
                if token == "-I":
                    token += next(tokens, "")
                if token.startswith("-I"):
                    folder = (f.parent / token[2:]).resolve()
                    if folder.is_dir() and not _distributed(folder):
                        headers = _headers_under(folder)
                        if headers is None:
                            raise _Unbounded(folder)
                        found += headers
        preamble = _preamble(text)
        if preamble:
            found += [p for p in _preamble_headers(preamble, f.parent, cflags, preambles) if not _distributed(p)]
    return [p for p in dict.fromkeys(found) if p not in known]


def _distributed(path: Path) -> bool:
    """A file or folder of the distribution's or the compiler's (/usr but /usr/local, /lib): its
    packages' and the compiler's identities cover it, as for C.  Not the kernel's (/proc, /sys,
    /dev: never a build input)."""
    parts = Path(path).parts
    if len(parts) < 2:
        return True
    return parts[1] in _SYSTEM_FOLDERS and not (parts[1] == "usr" and len(parts) > 2 and parts[2] == "local")


_IMPORT_C = re.compile(r'^import\s+"C"\s*$', re.M)


def _preamble(text: str) -> str:
    """The C preamble of a Go file: the comment right above its `import "C"` (a /* */ block or
    // lines), with cgo's own #cgo lines left out; "" when there is none."""
    m = _IMPORT_C.search(text)
    if m is None:
        return ""
    before = text[: m.start()].rstrip(" \t")
    if before.endswith("*/\n"):
        start = before.rfind("/*")
        body = before[start + 2: -3] if start >= 0 else ""
    else:
        lines = before.split("\n")[:-1]
        taken = []
        while lines and lines[-1].lstrip().startswith("//"):
            taken.append(lines.pop().lstrip()[2:])
        body = "\n".join(reversed(taken))
    return "\n".join("" if line.lstrip().startswith("#cgo") else line for line in body.split("\n"))


def _preamble_headers(preamble: str, folder: Path, cflags: list[str], preambles: Path) -> list[Path]:
    """The headers a preamble includes (build._with_headers: `gcc -M`, remembered), compiled
    as cgo compiles it: its package's folder first on the include path."""
    from .build import _with_headers

    digest = hashlib.sha256(f"{folder}\0{preamble}".encode("utf-8", "surrogateescape")).hexdigest()[:32]
    source = preambles / f"{digest}.c"
    if not source.is_file():  # written whole, then renamed: two jobs of a run may write it at once
        preambles.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=preambles, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write(preamble + "\n")
        os.replace(partial, source)
    try:
        return [p for p in _with_headers("gcc", (source,), ("-iquote", str(folder), "-I", str(folder), *cflags))
                if p != source]
    except BuildError:
        return []


@functools.lru_cache(maxsize=64)
def _pkg_config(names: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(cflags, libs) pkg-config gives for a `#cgo pkg-config:` line's packages ([] when it fails:
    the go command's build then fails too)."""
    try:
        cflags = _run(["pkg-config", "--cflags", "--", *names]).stdout.split()
        libs = _run(["pkg-config", "--libs", "--", *names]).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return [], []
    return cflags, libs


class _Unbounded(Exception):
    """A -I folder too big to key a build by (_headers_under)."""


# What the go command may read from a module for a build: Go files, cgo's C, C++, Fortran and
# assembly, prebuilt objects (.syso; .a, .o and .so a `#cgo LDFLAGS: -L${SRCDIR}/lib` links), SWIG
# files.  Folders it never builds from (testdata, hidden
# and _-prefixed ones) and nested modules (a go.mod of their own) are not part of the module.
_BUILD_SUFFIXES = frozenset({".go", ".c", ".h", ".s", ".S", ".sx", ".cc", ".cpp", ".cxx", ".hh", ".hpp", ".hxx",
                             ".m", ".f", ".F", ".for", ".f90", ".syso", ".a", ".o", ".so", ".swig", ".swigcxx"})
_MODULE_FILES = ("go.mod", "go.sum")
_WORK_FILES = ("go.work", "go.work.sum")
_GO_MOD_COMMENT = re.compile(r"//.*")


def _module_files(root: Path) -> list[Path]:
    """The files under a module's root that a build of any of its packages may read (tests
    aside: a package's own _test.go files are its spec's files); a symbolic link is keyed by
    what it points at, as the go command reads it."""
    found = []
    visited = {os.path.realpath(root)}
    # A package folder that is a symbolic link (lib -> ../vendored/lib) is compiled through it
    # by the go command: followed, each real folder once.
    for folder, dirs, files in os.walk(root, followlinks=True):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")) and d != "testdata"
                         and not (here / d / "go.mod").is_file() and _first_visit(here / d, visited))
        for name in sorted(files):
            if name in _MODULE_FILES or (here.name == "vendor" and name == "modules.txt") or (
                    os.path.splitext(name)[1] in _BUILD_SUFFIXES and not name.endswith("_test.go")):
                if (here / name).is_file():
                    found.append(here / name)
    return found


def _first_visit(folder: Path, visited: set[str]) -> bool:
    """A folder of a module's walk not walked yet: a symbolic link to one already walked (a loop)
    is not; nor one into the system's folders (`ext -> /usr`: no package of the module is there,
    and walking it hashed all of /usr on every run)."""
    real = os.path.realpath(folder)
    parts = Path(real).parts
    if real in visited or real == "/" or (len(parts) > 1 and parts[1] in _SYSTEM_FOLDERS):
        return False
    visited.add(real)
    return True


_QUOTED_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"\n]+)"', re.M)
_C_FAMILY = frozenset({".c", ".h", ".cc", ".cpp", ".cxx", ".hh", ".hpp", ".hxx", ".s", ".S", ".sx", ".m", ".inc",
                       ".def"})


def _quoted_includes(files: list[Path]) -> list[Path]:
    """The files the C of a Go package includes by a quoted name beside itself that are not
    among `files` (body.inc, opts.def, a header without a suffix: not files the go command
    lists, nor Go's cache tracks), and those they include in turn."""
    known = {Path(f) for f in files}
    pending = [Path(f) for f in files if Path(f).suffix in _C_FAMILY]
    found: list[Path] = []
    while pending and len(found) < 10_000:
        f = pending.pop()
        text = _text(f)
        if text is None or "include" not in text:
            continue
        for name in _QUOTED_INCLUDE.findall(text):
            candidate = f.parent / name
            if candidate.is_file() and candidate not in known:
                known.add(candidate)
                found.append(candidate)
                pending.append(candidate)
    return found


def _local_paths(text: str, directive: str, base: Path) -> list[Path]:
    """The local folders (./x, ../x, /x) a go.mod's `replace` or a go.work's `use` directives
    name, single or in a ( ... ) block."""
    found, block = [], False
    for line in text.splitlines():
        line = _GO_MOD_COMMENT.sub("", line).strip()
        if block:
            if line == ")":
                block = False
                continue
            entry = line
        elif line.startswith(directive):
            entry = line[len(directive):].strip()
            if entry == "(":
                block = True
                continue
        else:
            continue
        target = entry.split("=>", 1)[1].split() if directive == "replace" and "=>" in entry else \
            (entry.split() if directive == "use" else [])
        if target:
            where = target[0].strip('"`')
            if where.startswith(("./", "../", "/")) or where in (".", ".."):
                found.append((base / where).resolve())
    return found


def _module_tree(folder: Path | None) -> list[Path]:
    """Every file outside the given ones that a build in folder may compile: its module's files
    (_module_files), those of the local modules its go.mod replaces others with, and the go.work
    the go command would find above folder with the modules it uses (and replaces)."""
    root = _module_root(folder) if folder is not None else None
    if root is None:
        return []  # loose files outside any module: only themselves
    roots = [root]
    try:
        roots += _local_paths((root / "go.mod").read_text(encoding="utf-8", errors="replace"), "replace", root)
    except OSError:
        pass
    found: list[Path] = []
    for parent in (folder, *folder.parents):
        work = parent / "go.work"
        if work.is_file():
            found += [p for p in (parent / name for name in _WORK_FILES) if p.is_file()]
            text = work.read_text(encoding="utf-8", errors="replace")
            roots += _local_paths(text, "use", parent) + _local_paths(text, "replace", parent)
            break
    for r in dict.fromkeys(roots):
        if r.is_dir():
            found += _module_files(r)
    return list(dict.fromkeys(found))


def _user_files(spec) -> list[Path]:
    found: list[Path] = []
    for f in spec.files:
        f = Path(f).resolve()
        if f.is_dir():
            found.extend(_package_files(f, tests=spec.go_test))
        elif f.is_file():
            found.append(f)
            found.extend(p for p in _package_files(f.parent) if p.name in ("go.mod", "go.sum"))
        else:
            raise BuildError(f"{f}: no such source file or folder")
    return list(dict.fromkeys(found))


def _spec_folder(spec) -> Path | None:
    """The folder of a program given as files or a folder (None for a catalog source: its go.mod
    is GO_MOD's)."""
    if not spec.files:
        return None
    first = Path(spec.files[0]).resolve()
    return first if first.is_dir() else first.parent


_GO_DIRECTIVE = re.compile(r"^go\s+1\.(\d+)", re.M)


def _has_generics(folder: Path | None) -> bool:
    """Does the Go of the module holding folder have generics (its go.mod says 1.18 or later)?
    Files outside any module are built at the toolchain's own version: yes."""
    root = _module_root(folder) if folder is not None else None
    if root is None:
        return True
    try:
        m = _GO_DIRECTIVE.search((root / "go.mod").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return False
    return m is not None and int(m.group(1)) >= 18  # a go.mod without a go line is Go 1.16 to the compiler


def _record_attempts(mode: str, folder: Path | None) -> tuple[tuple[bool, bool, bool], ...]:
    """The builds to try in turn, (record allocations, keep returns, in the module's other packages
    too): should the rewritten calls not compile (a C.malloc given another integer type, a call
    kept where Go wants a constant), the next with less rewritten, and at last with only the leak
    check."""
    if mode not in RECORDING_MODES:
        return ((False, False, False),)
    if _has_generics(folder):
        return ((True, True, True), (True, True, False), (True, False, False), (False, False, False))
    return ((True, False, False), (False, False, False))


_MODULE_LINE = re.compile(r"^module\s+(\S+)", re.M)


def _import_path(package_dir: Path) -> str | None:
    """The import path of the package in package_dir (its module's path and the folder below)."""
    root = _module_root(package_dir)
    if root is None:
        return None
    try:
        m = _MODULE_LINE.search((root / "go.mod").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None
    if m is None:
        return None
    module = m.group(1).strip('"`')
    rel = package_dir.relative_to(root).as_posix()
    return module if rel == "." else f"{module}/{rel}"


def _linked_packages(package_dir: Path) -> list[tuple[Path, str, list[Path]]]:
    """The packages besides package_dir's that a build there may compile and that call C: (folder,
    package name, its Go files but tests), from the module tree (_module_tree), each of a module
    with generics (KEEP_LINK_SOURCE's leakharnessKeep); commands (package main) are never imported."""
    by_folder: dict[Path, list[Path]] = {}
    for path in _module_tree(package_dir):
        if path.suffix == ".go" and path.parent != package_dir:
            by_folder.setdefault(path.parent, []).append(path)
    found = []
    for folder, files in by_folder.items():
        name = None
        for f in files:
            text = f.read_text(encoding="utf-8", errors="replace")
            m = _PACKAGE_NAME.search(text)
            if m and _IMPORTS_C.search(text):
                name = m.group(1)
                break
        if name is not None and name != "main" and _has_generics(folder):
            found.append((folder, name, files))
    return found


def _link_others(package_dir: Path, target: str, folder: Path, replace: dict[str, str],
                 skip: frozenset[Path] = frozenset()) -> None:
    """The module's other packages that call C (_linked_packages) but those in skip, rewritten into
    the overlay (a folder each) with KEEP_LINK_SOURCE recording into target's helper."""
    for i, (pkg_dir, name, files) in enumerate(_linked_packages(package_dir)):
        if pkg_dir in skip:
            continue
        sub = folder / f"linked-{i}"
        sub.mkdir()
        for g in files:
            original = g.read_text(encoding="utf-8", errors="replace")
            changed = _rewrite_cgo_calls(original, keep=True)
            if changed != original:
                (sub / g.name).write_text(changed, encoding="utf-8")
                replace[str(g)] = str(sub / g.name)
        _add_files([(KEEP_LINK_NAME, KEEP_LINK_SOURCE.format(package=name, target=target))], pkg_dir, sub, replace)


_COMPILER_ERROR = re.compile(r"^(\S+\.go):\d+(?::\d+)?: ", re.M)


def _without_failing(proc, package_dir: Path, skip: frozenset[Path], others: bool) -> tuple[frozenset[Path], bool]:
    """After a failed build that rewrote the module's other packages: (skip and the linked packages
    the compiler's errors are in, whether any is new, so that the same attempt is made again without
    them: one package the rewrite breaks leaves the others recorded)."""
    if not others:
        return skip, False
    linked = {folder for folder, _name, _files in _linked_packages(package_dir)}
    failing = {(package_dir / m.group(1)).resolve().parent
               for m in _COMPILER_ERROR.finditer(proc.stderr + proc.stdout)} & linked
    new = frozenset(failing - skip)
    return skip | new, bool(new)


def _overlay(package_dir: Path, go_files: list[Path], work: Path, record: bool = True,
             helper_source: str = HELPER_SOURCE, keep: bool = False, others: bool = False,
             skip: frozenset[Path] = frozenset(), main_file: tuple[Path, str] | None = None) -> tuple[Path, list[Path]]:
    """An overlay that renames the program's main (in main_file, _main_file's answer), adds the
    leak-check helper beside it and, with record, sends the cgo allocations through the recording
    wrappers (with keep, also the values C calls return, KEEP_SOURCE; with others, in the module's
    other packages too); (overlay.json, the added files' paths as the compiler sees them)."""
    f, text = main_file or _main_file(package_dir, go_files)
    folder = work / "overlay"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    replace: dict[str, str] = {}
    for g in go_files:
        original = text if g == f else g.read_text(encoding="utf-8", errors="replace")
        changed = _MAIN_FUNC.sub(f"func {USER_MAIN}()", original, count=1) if g == f else original
        if record:
            changed = _rewrite_cgo_calls(changed, keep=keep)
        if changed != original:
            (folder / g.name).write_text(changed, encoding="utf-8")
            replace[str(g)] = str(folder / g.name)
    added = [(HELPER_NAME, helper_source)]
    if record and keep:
        added.append((KEEP_NAME, KEEP_SOURCE.format(package="main")))
    virtual = _add_files(added, package_dir, folder, replace)
    if record and keep and others:
        _link_others(package_dir, "main", folder, replace, skip)
    overlay = work / "overlay.json"
    overlay.write_text(json.dumps({"Replace": replace}))
    return overlay, virtual


def _main_file(package_dir: Path, go_files: list[Path]) -> tuple[Path, str]:
    """The file of package main holding `func main()`, and its text; BuildError when there is none."""
    for f in go_files:
        text = f.read_text(encoding="utf-8", errors="replace") if f.is_file() else ""
        if _PACKAGE_MAIN.search(text) and _MAIN_FUNC.search(text):
            return f, text
    raise BuildError(f"{package_dir}: no `func main()` in package main: nothing to build a program from "
                     f"(a package's tests are a project's go_test target)")


def _add_files(files: list[tuple[str, str]], package_dir: Path, folder: Path, replace: dict[str, str]) -> list[Path]:
    """leakharness's own files (name, text) into the overlay, as if in package_dir; their paths
    there, as the compiler sees them."""
    virtual = []
    for name, text in files:
        path = package_dir / name
        if path.exists():
            raise BuildError(f"{path}: a file of that name is in the way of leakharness's helper")
        (folder / name).write_text(text, encoding="utf-8")
        replace[str(path)] = str(folder / name)
        virtual.append(path)
    return virtual


# The first build of a mode in a cache compiles the standard library for it into GOCACHE (for
# -asan, about ten CPU seconds); two of them at once would each compile it, Go's cache has no
# lock for work in progress.  So the first build of each mode (per cache) goes alone, and every
# later one, the library then cached, runs beside the others.
_FIRST_LOCK = threading.Lock()
_FIRST: dict[tuple[str, str], threading.Lock] = {}
_WARMED: set[tuple[str, str]] = set()


def build_go(spec, cache_dir: Path):
    """Build spec (a Go program) or reuse the cached binary of the same key: a build.Build."""
    from .build import in_cache

    from .build import touch

    cache_dir = Path(cache_dir)
    tree = _module_tree(_spec_folder(spec))
    tree += _quoted_includes([*_user_files(spec), *tree])  # keyed, and in the C stamp, as the module's files
    stamp = _c_stamp(spec, tree, cache_dir)  # the same for the key and the build (an unbounded one is new each time)
    k = key(spec, tree, stamp)
    compile_into = lambda work, final: _compile_go(spec, cache_dir, k, work, stamp)  # noqa: E731
    mode = (str(cache_dir), spec.go_mode or "")
    if mode in _WARMED:
        made = in_cache(spec, cache_dir, k, compile_into)
    else:
        with _FIRST_LOCK:
            first = _FIRST.setdefault(mode, threading.Lock())
        with first:
            made = in_cache(spec, cache_dir, k, compile_into)
            if made.status == "ok":
                _WARMED.add(mode)
    if spec.sources and made.cached:  # the rendered sources its stacks name: used with it, trimmed with it
        touch(cache_dir / "builds" / k[:2] / f"{k}.src")
    return made


def _compile_go(spec, cache_dir: Path, k: str, work: Path, stamp: str | None):
    from .build import Build

    if spec.go_test:
        return _compile_go_test(spec, cache_dir, work, stamp)
    if spec.sources:
        package_dir = _catalog_sources(spec, cache_dir, k)
        go_files = [package_dir / name for name, _ in spec.sources if name.endswith(".go")]
        targets: list[str] = ["."]
    else:
        given = [Path(f).resolve() for f in spec.files]
        if len(given) == 1 and given[0].is_dir():
            package_dir = given[0]
            go_files = [p for p in _package_files(package_dir) if p.suffix == ".go"]
            # A module builds as a package; loose files of a folder without go.mod as files.
            targets = ["."] if _module_root(package_dir) else [str(p) for p in go_files]
        else:
            if any(p.suffix != ".go" for p in given) or len({p.parent for p in given}) != 1:
                raise BuildError(f"{given[0]}: give Go files of one folder, or the folder itself")
            package_dir, go_files, targets = given[0].parent, given, [str(p) for p in given]
    main_file = _main_file(package_dir, go_files)  # every mode: a plain `go build` of another package is an archive
    binary = work / spec.name
    env = _stamped_env(spec, cache_dir, stamp)
    mode = spec.go_mode
    attempts, skip = list(_record_attempts(mode, _spec_folder(spec))), frozenset()
    while attempts:
        record, keep, others = attempts[0]
        cmd = [go_binary() or "go", "build", "-o", str(binary)]
        build_targets = list(targets)
        if mode in HELPERS:
            overlay, added = _overlay(package_dir, go_files, work, record=record, helper_source=HELPERS[mode],
                                      keep=keep, others=others and not spec.sources, skip=skip,
                                      main_file=main_file)
            cmd += (["-asan"] if mode == "address" else []) + [f"-overlay={overlay}"]
            if build_targets != ["."]:
                build_targets += [str(p) for p in added]
        cmd += build_targets
        try:
            proc = _run(cmd, env=env, cwd=str(package_dir), timeout=COMPILE_TIMEOUT)
        except subprocess.TimeoutExpired:
            return Build(spec, "build-failed", None, message=f"go build timed out after {COMPILE_TIMEOUT} s",
                         command=tuple(cmd))
        if proc.returncode == 0 and binary.is_file():
            break
        skip, again = _without_failing(proc, package_dir, skip, others)
        if not again:
            attempts.pop(0)
    message = (proc.stderr + proc.stdout).strip()
    if proc.returncode != 0 or not binary.is_file():
        return Build(spec, "build-failed", None, message=message or f"go build exit {proc.returncode}",
                     command=tuple(cmd))
    shutil.rmtree(work / "overlay", ignore_errors=True)
    (work / "overlay.json").unlink(missing_ok=True)
    source_paths = [str(package_dir / name) for name, _ in spec.sources]
    return {"name": spec.name, "profile": spec.profile, "language": "go", "command": cmd, "message": message,
            "sources": [], "source_paths": source_paths, "compile_dir": str(package_dir),
            "files": [str(p) for p in _user_files(spec)] if spec.files else source_paths}


def _test_overlay(package_dir: Path, go_files: list[Path], test_files: list[Path], package: str, mode: str,
                  work: Path, record: bool, keep: bool = False, others: bool = False,
                  skip: frozenset[Path] = frozenset()) -> Path:
    """An overlay for a package's test binary: the helper and a TestMain beside the package's
    files (its own TestMain renamed), with record the cgo allocations through the wrappers."""
    folder = work / "overlay"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    replace: dict[str, str] = {}
    if record:
        for g in go_files:
            original = g.read_text(encoding="utf-8", errors="replace")
            changed = _rewrite_cgo_calls(original, keep=keep)
            if changed != original:
                (folder / g.name).write_text(changed, encoding="utf-8")
                replace[str(g)] = str(folder / g.name)
    body = "\tleakharnessTestFinish(m.Run())"
    for t in test_files:
        text = t.read_text(encoding="utf-8", errors="replace")
        if not _TEST_MAIN_FUNC.search(text):
            continue
        found = _PACKAGE_NAME.search(text)
        if not found or found.group(1) != package:
            raise BuildError(f"{t}: its TestMain is in the external test package {found.group(1) if found else '?'}; "
                             f"leakharness adds its leak check through a TestMain in package {package}")
        (folder / t.name).write_text(_TEST_MAIN_FUNC.sub(f"func {USER_TEST_MAIN}(", text, count=1), encoding="utf-8")
        replace[str(t)] = str(folder / t.name)
        # The package's own TestMain, then the exit code it left in m (what go test's main reads
        # when a TestMain returns); one that calls os.Exit ends before the leak check (incomplete).
        body = (f"\t{USER_TEST_MAIN}(m)\n"
                f"\tleakharnessTestFinish(int(reflect.ValueOf(m).Elem().FieldByName(\"exitCode\").Int()))")
        break
    added = [(HELPER_NAME, test_helper_source(mode, package)),
             (TEST_MAIN_NAME, _TEST_MAIN.format(package=package, body=body))]
    if record and keep:
        added.append((KEEP_NAME, KEEP_SOURCE.format(package=package)))
    _add_files(added, package_dir, folder, replace)
    target = _import_path(package_dir)
    if record and keep and others and target:
        _link_others(package_dir, target, folder, replace, skip)
    overlay = work / "overlay.json"
    overlay.write_text(json.dumps({"Replace": replace}))
    return overlay


def _compile_go_test(spec, cache_dir: Path, work: Path, stamp: str | None):
    """`go test -c` of a package (a project's go_test target), with the checker's helper; what
    stops it (no tests, no module) is the build's failure, not a missing tool."""
    from .build import Build

    try:
        return _compile_go_test_in(spec, cache_dir, work, stamp)
    except BuildError as exc:
        return Build(spec, "build-failed", None, message=str(exc))


def _compile_go_test_in(spec, cache_dir: Path, work: Path, stamp: str | None):
    from .build import Build

    given = [Path(f).resolve() for f in spec.files]
    if len(given) != 1 or not given[0].is_dir():
        raise BuildError(f"{given[0] if given else '?'}: a package's tests are built from its folder")
    package_dir = given[0]
    if _module_root(package_dir) is None:
        raise BuildError(f"{package_dir}: go test -c needs a Go module (no go.mod here or above)")
    files = _package_files(package_dir, tests=True)
    go_files = [p for p in files if p.suffix == ".go" and not p.name.endswith("_test.go")]
    test_files = [p for p in files if p.name.endswith("_test.go")]
    if not test_files:
        raise BuildError(f"{package_dir}: no _test.go files: no tests to build")
    named = next((m.group(1) for p in go_files + test_files
                  for m in [_PACKAGE_NAME.search(p.read_text(encoding="utf-8", errors="replace"))]
                  if m and not m.group(1).endswith("_test")), None)
    if named is None:
        raise BuildError(f"{package_dir}: cannot tell the package's name (no `package NAME` line)")
    binary = work / spec.name
    env = _stamped_env(spec, cache_dir, stamp)
    mode = spec.go_mode
    attempts, skip = list(_record_attempts(mode, package_dir)), frozenset()
    while attempts:
        record, keep, others = attempts[0]
        cmd = [go_binary() or "go", "test", "-c", "-vet=off", "-o", str(binary)]
        if mode in HELPERS:
            overlay = _test_overlay(package_dir, go_files, test_files, named, mode, work, record, keep, others, skip)
            cmd += (["-asan"] if mode == "address" else []) + [f"-overlay={overlay}"]
        cmd.append(".")
        try:
            proc = _run(cmd, env=env, cwd=str(package_dir), timeout=COMPILE_TIMEOUT)
        except subprocess.TimeoutExpired:
            return Build(spec, "build-failed", None, message=f"go test -c timed out after {COMPILE_TIMEOUT} s",
                         command=tuple(cmd))
        if proc.returncode == 0 and binary.is_file():
            break
        skip, again = _without_failing(proc, package_dir, skip, others)
        if not again:
            attempts.pop(0)
    message = (proc.stderr + proc.stdout).strip()
    if proc.returncode != 0 or not binary.is_file():
        return Build(spec, "build-failed", None, message=message or f"go test -c exit {proc.returncode}",
                     command=tuple(cmd))
    shutil.rmtree(work / "overlay", ignore_errors=True)
    (work / "overlay.json").unlink(missing_ok=True)
    return {"name": spec.name, "profile": spec.profile, "language": "go", "command": cmd, "message": message,
            "sources": [], "source_paths": [], "compile_dir": str(package_dir),
            "files": [str(p) for p in files]}


def _catalog_sources(spec, cache_dir: Path, k: str) -> Path:
    """A rendered program's files and a go.mod in a cache folder that stays (beside the build,
    so the cache's trimming removes it too): Go's stack traces name these paths."""
    folder = cache_dir / "builds" / k[:2] / f"{k}.src"
    if (folder / "go.mod").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{k[:12]}.", dir=folder.parent))
    try:
        for name, text in spec.sources:
            (tmp / name).write_text(text, encoding="utf-8")
        (tmp / "go.mod").write_text(GO_MOD, encoding="utf-8")
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "go.mod").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder
