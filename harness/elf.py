"""What a program file is, read from its bytes: an ELF executable or not, statically linked or
not, setuid or not, built by the Go toolchain or not.  The checkers ask before they run a program (valgrind cannot
replace a static program's malloc; an LD_PRELOAD interposer never loads into it; a setuid
program runs without either), and collect asks about the programs a job's processes ran.
"""

from __future__ import annotations

import functools
import os
import re
import stat
import struct

PT_INTERP = 3
PT_DYNAMIC = 2
GO_BUILDINFO = b"\xff Go buildinf:"  # what every binary the Go toolchain built carries


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


@functools.lru_cache(maxsize=1024)
def _kind(path: str, mtime_ns: int, size: int) -> str:
    """"static", "dynamic", "script", "not-elf" or "unreadable" for one version of a file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
            if head.startswith(b"#!"):
                return "script"
            if len(head) < 64 or head[:4] != b"\x7fELF":
                return "not-elf"
            is64, little = head[4] == 2, head[5] == 1
            end = "<" if little else ">"
            if is64:
                phoff, = struct.unpack_from(end + "Q", head, 0x20)
                phentsize, phnum = struct.unpack_from(end + "HH", head, 0x36)
            else:
                phoff, = struct.unpack_from(end + "I", head, 0x1C)
                phentsize, phnum = struct.unpack_from(end + "HH", head, 0x2A)
            if not phnum or phentsize < 4:
                return "static"
            fh.seek(phoff)
            table = fh.read(phentsize * min(phnum, 4096))
    except OSError:
        return "unreadable"
    types = {struct.unpack_from(end + "I", table, i * phentsize)[0]
             for i in range(len(table) // phentsize)}
    # No program interpreter: the kernel runs it as it is, with no dynamic loader, so no
    # LD_PRELOAD and no malloc valgrind could replace (a static-pie has PT_DYNAMIC but no PT_INTERP).
    return "dynamic" if PT_INTERP in types else "static"


def kind(path: str | os.PathLike) -> str:
    """"static", "dynamic", "script", "not-elf", "unreadable" or "missing"."""
    real = os.path.realpath(path)
    st = _stat(real)
    if st is None:
        return "missing"
    return _kind(real, st.st_mtime_ns, st.st_size)


def is_static(path: str | os.PathLike) -> bool:
    return kind(path) == "static"


def is_setuid(path: str | os.PathLike) -> bool:
    """Set-user-ID or set-group-ID: the loader ignores LD_PRELOAD for it, and valgrind refuses it."""
    st = _stat(os.path.realpath(path))
    return st is not None and bool(st.st_mode & (stat.S_ISUID | stat.S_ISGID)) and stat.S_ISREG(st.st_mode)


def is_go_binary(program: str) -> bool:
    """A binary the Go toolchain built (it carries Go's build-info blob)."""
    return contains(program, GO_BUILDINFO)


def contains(program: str, needle: bytes) -> bool:
    """The file holds these bytes; remembered by its identity across processes (facts.py): a
    catalog run asks it of every valgrind job's binary."""
    from . import facts

    try:
        st = os.stat(program)
    except (OSError, ValueError):
        return False
    ident = facts.identity(program, st)
    key = f"contains:{needle.hex()}:" + ",".join(map(str, ident)) if ident else None
    known = facts.get(key) if key else None
    if isinstance(known, bool):
        return known
    found = _file_contains(os.path.realpath(program), st.st_mtime_ns, st.st_size, needle)
    if key and facts.settled(ident):
        facts.put(key, found)
    return found


@functools.lru_cache(maxsize=512)
def _file_contains(path: str, mtime_ns: int, size: int, needle: bytes) -> bool:
    try:
        with open(path, "rb") as fh:
            if fh.read(4) != b"\x7fELF":
                return False
            fh.seek(0)
            tail = b""
            while True:
                chunk = fh.read(1 << 20)
                if not chunk:
                    return False
                if needle in tail + chunk:
                    return True
                tail = chunk[-len(needle):]  # a mark split over two chunks
    except OSError:
        return False


_EMBEDDED_OPTION = re.compile(rb"(?:suppressions|include|include_if_exists)=[\x20-\x7e]{1,1024}")


def compiled_sanitizer_options(program: str) -> list[str]:
    """The sanitizer option strings a program holds that name files (its own
    __asan_default_options, __lsan_default_options...: `include=conf/lsan.opts`), which its
    runtime reads with its own system calls; only looked for in a program that has such a
    function's name at all."""
    if not contains(program, b"_default_options"):
        return []
    try:
        st = os.stat(program)
    except (OSError, ValueError):
        return []
    return list(_option_strings(os.path.realpath(program), st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=256)
def _option_strings(path: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return ()
    return tuple(m.group(0).decode("ascii", "replace") for m in _EMBEDDED_OPTION.finditer(data))[:64]
