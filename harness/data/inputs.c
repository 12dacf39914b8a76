/* lh-inputs: record the files a program learns about, for the result cache (harness/inputs.py).
 *
 * Loaded with LD_PRELOAD into every process of a job (beside a checker's own runtime).  Each call
 * through which a C program (or OpenSSL: BIO_new_file -> fopen, the config's .include -> opendir,
 * a provider -> dlopen with a full path) learns about a file by its name is written down as one
 * line, before the real call runs:
 *
 *   r RESULT PATH   a read: open/openat/fopen/freopen for reading (O_RDONLY, O_RDWR), dlopen of a path
 *   p RESULT PATH   a probe that follows symbolic links: stat, access, realpath, open(O_PATH), O_EXCL
 *   q RESULT PATH   a probe that does not: lstat, AT_SYMLINK_NOFOLLOW, readlink
 *   d RESULT PATH   a directory listed: opendir, fdopendir, scandir
 *   x RESULT PATH   a program run: the exec family, posix_spawn, system and popen (/bin/sh)
 *   s ?             a child started inside glibc (posix_spawn, system, popen): its pid is not seen
 *   l NAME          dlopen of a bare library name, not already loaded: the loader's search is unseen
 *   u WHAT ARG      a directory walk made inside glibc (glob, nftw, ftw, fts): not recordable
 *
 * RESULT is what the file system said just before the call: "+" (the path exists) or "-ERRNO"
 * (2: absent).  PATH is absolute: a relative one is joined to the working folder of that moment,
 * a *at call's directory descriptor is resolved through /proc/self/fd; "//" and "/./" are folded
 * (".." is left alone: it is not the same path as its folded form under a symbolic link).  Bytes
 * below 0x20, 0x7f and '\' are written as \xNN.  Opens for writing only are not inputs; /proc,
 * /sys, /dev and the job's own log folder are ignored.
 *
 * One log per process: PREFIX.<pid> (PREFIX from LH_INPUTS_LOG).  A process writes a start line
 * when the library sets up in it (its constructor, or the first hooked call when a library's
 * constructor calls in before it; a "fork" line on the child side of fork), its records, and
 * an end line from the destructor or _exit; an exec starts a new section in the same file (same
 * pid).  A section with no end line ended by a signal, a raw exit_group (the Go runtime) or an
 * exec of a program that does not load the library (static, setuid): the reader does not vouch
 * for it.  A process that finds its executable (or, for a shell, its script) in LH_INPUTS_SKIP
 * (the harness's lh-reaper, valgrind's launcher and wrapper script, llvm-symbolizer: checker
 * machinery, not the program) writes one skip line and nothing else.  LH_INPUTS_MAX caps the
 * bytes of one process's log; past it a "capped" line says the record is cut.  Calls made from
 * the checkers' own runtimes (libasan's symbolizer opening debug files, say) are not recorded:
 * the return address of the hooked call tells whose they are.
 *
 * It must not disturb the checkers it runs under:
 * - No malloc, no locks, no shared memory written after setting up (helgrind would see a
 *   race on a counter; a lock would add happens-before edges that hide a program's real races
 *   from TSan and helgrind).  Per-thread state is initial-exec TLS; the log is opened, written
 *   with one write(2) per line (O_APPEND: lines of threads and processes never interleave) and
 *   closed for every line, through raw system calls, so the program's descriptor numbers and a
 *   closefrom() are unaffected and no sanitizer interceptor sees our own file work; nor does
 *   any sanitizer see our string handling (our own loops, not its intercepted strlen and
 *   memcpy).  A forked child writes to its own file simply because its pid is another.
 * - The hooks end in a tail call to the real function (compiled as a sibling call: a
 *   non-variadic prototype, -O2, no stack protector), so our frame is gone when the real call
 *   runs: an ASan, TSan or valgrind report raised inside it (a freed path, a too-small stat
 *   buffer) shows the same stack as without us, and dlopen sees the program as its caller (its
 *   RUNPATH is the one searched).  The result is therefore taken by a stat of our own first.
 * - Under valgrind, error reporting is switched off while we read the program's path string (a
 *   bad pointer is reported once, by valgrind's check of the real system call, not twice).
 * - errno is preserved; nothing is printed on stdout or stderr.
 * - A signal handler that calls a hooked function while this thread is inside the recorder
 *   finds its buffers busy: a "lost" line says a record is missing.  If the log cannot be opened
 *   (the program used up its descriptors) an empty PREFIX.<pid>.lost is made with mknod (no
 *   descriptor needed) so that the loss cannot go unnoticed.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* valgrind's client requests are a few no-op instructions natively.  The harness passes
 * -DLH_HAVE_VALGRIND_H when the header is installed (part of the build's cache key). */
#ifdef LH_HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#define QUIET_BEGIN() VALGRIND_DISABLE_ERROR_REPORTING
#define QUIET_END() VALGRIND_ENABLE_ERROR_REPORTING
#endif
#ifndef QUIET_BEGIN
#define QUIET_BEGIN() ((void)0)
#define QUIET_END() ((void)0)
#endif

#define TLS __thread __attribute__((tls_model("initial-exec")))
#define EXPORT __attribute__((visibility("default")))
/* The recording stays out of line: a hook that inlined it (its stack buffers, valgrind's client
 * request block) could not end in a tail call. */
#define NOINLINE __attribute__((noinline))

#define PATH_BUF 4608                  /* PATH_MAX and a working folder's worth more */
#define LINE_BUF (PATH_BUF + 64)
#define SEEN 256                       /* lines remembered per thread (repeats are not written again); a power of 2 */
#define CHECK_EVERY 64                 /* lines between two looks at the log's size */
#define DEFAULT_MAX (16UL << 20)

/* --- state: written while setting up only (init_once), before any thread of the program ----- */

static int ready;                      /* set up, and this process is recorded */
static int inert;                      /* checker machinery (LH_INPUTS_SKIP) or no LH_INPUTS_LOG */
static int early;                      /* hooked calls made while another thread was setting up */
static char log_prefix[512];
static char log_dir[512];              /* the job's log folder, with a trailing '/': ignored */
static size_t log_dir_len;
static unsigned long max_bytes = DEFAULT_MAX;
static char exe_path[1024];

/* The code of the checkers' own runtimes (the sanitizers' libraries, valgrind's preloaded ones),
 * found when setting up: a call made from there is the checker's own file work (gcc's
 * sanitizers symbolize a report with libbacktrace, which opens the binaries and their debug
 * files through libc), not the program's, and is not recorded. */
#define MAX_TOOL_RANGES 32
static struct {
    uintptr_t lo, hi;
} tool_ranges[MAX_TOOL_RANGES];
static int n_tool_ranges;
static int (*libc_dl_iterate_phdr)(int (*)(struct dl_phdr_info *, size_t, void *), void *);
static const char *const TOOL_LIBS[] = {"libasan.", "libtsan.", "libubsan.", "liblsan.", "libhwasan.",
                                        "libclang_rt.", "vgpreload_", NULL};

/* The hook's return address: where the call came from (our hooks end in a tail call, so it is
 * the only frame of ours). */
#define CALLER __builtin_return_address(0)

/* --- per-thread state ------------------------------------------------------------------------ */

struct tstate {
    int busy;                          /* inside the recorder: a signal handler must not reuse the buffers */
    int capped;
    unsigned lines;
    uint64_t seen[SEEN][2];
    char path[PATH_BUF];
    char line[LINE_BUF];
};
static TLS struct tstate ts;

/* --- the real functions ---------------------------------------------------------------------- */

#define REAL_DECL(ret, name, args) static ret (*real_##name) args
REAL_DECL(int, open, (const char *, int, ...));
REAL_DECL(int, open64, (const char *, int, ...));
REAL_DECL(int, __open, (const char *, int, ...));
REAL_DECL(int, __open64, (const char *, int, ...));
REAL_DECL(int, __open_2, (const char *, int));
REAL_DECL(int, __open64_2, (const char *, int));
REAL_DECL(int, openat, (int, const char *, int, ...));
REAL_DECL(int, openat64, (int, const char *, int, ...));
REAL_DECL(int, __openat_2, (int, const char *, int));
REAL_DECL(int, __openat64_2, (int, const char *, int));
REAL_DECL(FILE *, fopen, (const char *, const char *));
REAL_DECL(FILE *, fopen64, (const char *, const char *));
REAL_DECL(FILE *, freopen, (const char *, const char *, FILE *));
REAL_DECL(FILE *, freopen64, (const char *, const char *, FILE *));
REAL_DECL(int, stat, (const char *, struct stat *));
REAL_DECL(int, stat64, (const char *, struct stat64 *));
REAL_DECL(int, lstat, (const char *, struct stat *));
REAL_DECL(int, lstat64, (const char *, struct stat64 *));
REAL_DECL(int, fstatat, (int, const char *, struct stat *, int));
REAL_DECL(int, fstatat64, (int, const char *, struct stat64 *, int));
REAL_DECL(int, __xstat, (int, const char *, struct stat *));
REAL_DECL(int, __xstat64, (int, const char *, struct stat64 *));
REAL_DECL(int, __lxstat, (int, const char *, struct stat *));
REAL_DECL(int, __lxstat64, (int, const char *, struct stat64 *));
REAL_DECL(int, __fxstatat, (int, int, const char *, struct stat *, int));
REAL_DECL(int, __fxstatat64, (int, int, const char *, struct stat64 *, int));
REAL_DECL(int, statx, (int, const char *, int, unsigned int, void *));
REAL_DECL(int, access, (const char *, int));
REAL_DECL(int, faccessat, (int, const char *, int, int));
REAL_DECL(int, euidaccess, (const char *, int));
REAL_DECL(int, eaccess, (const char *, int));
REAL_DECL(ssize_t, readlink, (const char *, char *, size_t));
REAL_DECL(ssize_t, readlinkat, (int, const char *, char *, size_t));
REAL_DECL(char *, realpath, (const char *, char *));
REAL_DECL(char *, canonicalize_file_name, (const char *));
REAL_DECL(DIR *, opendir, (const char *));
REAL_DECL(DIR *, fdopendir, (int));
REAL_DECL(int, scandir, (const char *, void *, void *, void *));
REAL_DECL(int, scandir64, (const char *, void *, void *, void *));
REAL_DECL(int, scandirat, (int, const char *, void *, void *, void *));
REAL_DECL(int, scandirat64, (int, const char *, void *, void *, void *));
REAL_DECL(int, glob, (const char *, int, void *, void *));
REAL_DECL(int, glob64, (const char *, int, void *, void *));
REAL_DECL(int, nftw, (const char *, void *, int, int));
REAL_DECL(int, nftw64, (const char *, void *, int, int));
REAL_DECL(int, ftw, (const char *, void *, int));
REAL_DECL(int, ftw64, (const char *, void *, int));
REAL_DECL(void *, fts_open, (char *const *, int, void *));
REAL_DECL(void *, fts64_open, (char *const *, int, void *));
REAL_DECL(int, execve, (const char *, char *const[], char *const[]));
REAL_DECL(int, execv, (const char *, char *const[]));
REAL_DECL(int, execvp, (const char *, char *const[]));
REAL_DECL(int, execvpe, (const char *, char *const[], char *const[]));
REAL_DECL(int, fexecve, (int, char *const[], char *const[]));
REAL_DECL(int, execveat, (int, const char *, char *const[], char *const[], int));
REAL_DECL(int, posix_spawn, (pid_t *, const char *, const posix_spawn_file_actions_t *,
                             const posix_spawnattr_t *, char *const[], char *const[]));
REAL_DECL(int, posix_spawnp, (pid_t *, const char *, const posix_spawn_file_actions_t *,
                              const posix_spawnattr_t *, char *const[], char *const[]));
REAL_DECL(int, system, (const char *));
REAL_DECL(int, posix_spawn_file_actions_addopen, (posix_spawn_file_actions_t *, int, const char *, int, mode_t));
REAL_DECL(FILE *, popen, (const char *, const char *));
REAL_DECL(int, connect, (int, const struct sockaddr *, socklen_t));
REAL_DECL(void *, dlopen, (const char *, int));
REAL_DECL(void *, dlmopen, (Lmid_t, const char *, int));
REAL_DECL(int, dlclose, (void *));
REAL_DECL(void, _exit, (int));
REAL_DECL(void, _Exit, (int));

static void init_once(int argc, char **argv);

/* Set up on first use: the constructor, or a hook called before it.  The program's libraries are
 * initialised before a preloaded one (glibc runs the dependencies' constructors first), and one
 * may read a file in its constructor (libselinux reads its configuration): that read is still
 * recorded.  The state goes 0 -> 1 -> 2 once, while only the constructors run (no thread of the
 * program's yet): nothing is written to it after. */
static int init_state;

static void ensure_init(void)
{
    if (__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != 2)
        init_once(0, NULL);
}

/* A hook called while another thread is setting up (a library constructor that started a
 * thread): the real function is looked up on the spot, into no shared variable; the call is
 * counted, and the reader does not vouch for the process, since the call was not recorded. */
static void *early_sym(const char *name)
{
    __atomic_fetch_add(&early, 1, __ATOMIC_RELAXED);
    return dlsym(RTLD_NEXT, name);
}

#define REAL(name) (real_##name ? real_##name                                            \
                    : (ensure_init(), real_##name ? real_##name                           \
                                                  : (__typeof__(real_##name))early_sym(#name)))

/* --- string helpers of our own ------------------------------------------------------------
 * The sanitizers intercept strlen, memcpy, strchr and the rest: a call to them from here would
 * be checked as the program's (a freed path read by us reported in our frame).  Built with
 * -fno-builtin -fno-tree-loop-distribute-patterns so that the compiler does not turn these loops
 * back into library calls (tests/test_inputs.py checks the library's undefined symbols). */

static size_t lh_strlen(const char *s)
{
    const char *p = s;
    while (*p)
        p++;
    return (size_t)(p - s);
}

static void lh_memcpy(char *d, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d[i] = s[i];
}

static int lh_strncmp(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i] != b[i])
            return (unsigned char)a[i] - (unsigned char)b[i];
        if (a[i] == '\0')
            return 0;
    }
    return 0;
}

static int lh_strcmp(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return (unsigned char)*a - (unsigned char)*b;
}

static const char *lh_strchr(const char *s, char c)
{
    for (; *s; s++)
        if (*s == c)
            return s;
    return NULL;
}

static const char *lh_memchr(const char *s, char c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == c)
            return s + i;
    return NULL;
}

static const char *lh_basename(const char *s)
{
    const char *base = s;
    for (; *s; s++)
        if (*s == '/')
            base = s + 1;
    return base;
}

/* --- raw system calls: no interceptor (ASan, TSan) sees the recorder's own file work ---------- */

static long sys_write(int fd, const void *buf, size_t len) { return syscall(SYS_write, fd, buf, len); }
static int sys_close(int fd) { return (int)syscall(SYS_close, fd); }
static int sys_getpid(void) { return (int)syscall(SYS_getpid); }

static int sys_fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
    return (int)syscall(SYS_newfstatat, dirfd, path, st, flags);
}

/* --- formatting ------------------------------------------------------------------------------ */

struct out {
    char *p;
    size_t len, cap;
    int cut;
};

static void put(struct out *o, const char *s)
{
    while (*s) {
        if (o->len + 1 >= o->cap) {
            o->cut = 1;
            return;
        }
        o->p[o->len++] = *s++;
    }
}

static void put_u(struct out *o, unsigned long long v)
{
    char tmp[24];
    int i = 0;
    do {
        tmp[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i) {
        if (o->len + 1 >= o->cap) {
            o->cut = 1;
            return;
        }
        o->p[o->len++] = tmp[--i];
    }
}

/* A path, made safe for one line of the log: control bytes, DEL and '\' as \xNN. */
static void put_path(struct out *o, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f || c == '\\') {
            if (o->len + 5 >= o->cap) {
                o->cut = 1;
                return;
            }
            o->p[o->len++] = '\\';
            o->p[o->len++] = 'x';
            o->p[o->len++] = "0123456789abcdef"[c >> 4];
            o->p[o->len++] = "0123456789abcdef"[c & 15];
        } else {
            if (o->len + 1 >= o->cap) {
                o->cut = 1;
                return;
            }
            o->p[o->len++] = (char)c;
        }
    }
}

/* --- the log ---------------------------------------------------------------------------------- */

static int log_name(char *path, size_t cap, const char *suffix)
{
    struct out o = {path, 0, cap, 0};
    put(&o, log_prefix);
    put(&o, ".");
    put_u(&o, (unsigned long long)sys_getpid());
    put(&o, suffix);
    path[o.len] = '\0';
    return o.cut ? -1 : 0;
}

/* The log could not be written: leave a mark the reader cannot miss, made without a descriptor. */
static void mark_lost(void)
{
    char path[600];
    if (log_name(path, sizeof path, ".lost") == 0)
        syscall(SYS_mknodat, AT_FDCWD, path, S_IFREG | 0644, 0);
}

/* One whole line, appended with one write(2).  Records (not the start and end lines) count
 * towards the cap; past it this thread records no more, after saying so. */
static void emit(const char *buf, size_t len, int record)
{
    char path[600];
    if (log_name(path, sizeof path, "") != 0)
        return;
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        mark_lost();
        return;
    }
    if (record && ts.lines++ % CHECK_EVERY == 0) {
        struct stat st;
        if (syscall(SYS_fstat, fd, &st) == 0 && (unsigned long)st.st_size >= max_bytes) {
            static const char capped[] = "LH-INPUTS capped\n";
            ts.capped = 1;
            sys_write(fd, capped, sizeof capped - 1);
            sys_close(fd);
            return;
        }
    }
    size_t off = 0;
    while (off < len) {
        long n = sys_write(fd, buf + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            mark_lost();
            break;
        }
        off += (size_t)n;
    }
    sys_close(fd);
}

static void write_start(const char *what)
{
    char buf[1400];
    struct out o = {buf, 0, sizeof buf, 0};
    struct timespec now = {0, 0};
    /* The coarse clock is the one file times are stamped with: the reader compares them. */
    syscall(SYS_clock_gettime, CLOCK_REALTIME_COARSE, &now);
    put(&o, "LH-INPUTS 1 ");
    put(&o, what);
    put(&o, " pid=");
    put_u(&o, (unsigned long long)sys_getpid());
    put(&o, " ppid=");
    put_u(&o, (unsigned long long)syscall(SYS_getppid));
    put(&o, " time=");
    put_u(&o, (unsigned long long)now.tv_sec * 1000000000ULL + (unsigned long long)now.tv_nsec);
    put(&o, " early=");
    put_u(&o, (unsigned long long)early);
    put(&o, " max=");
    put_u(&o, max_bytes);
    put(&o, " exe=");
    put_path(&o, exe_path);
    if (o.cut)
        o.len = o.cap - 2;
    buf[o.len++] = '\n';
    emit(buf, o.len, 0);
}

static void write_end(const char *how)
{
    char buf[128];
    struct out o = {buf, 0, sizeof buf, 0};
    put(&o, "LH-INPUTS end pid=");
    put_u(&o, (unsigned long long)sys_getpid());
    put(&o, " by=");
    put(&o, how);
    buf[o.len++] = '\n';
    emit(buf, o.len, 0);
}

/* --- recording ------------------------------------------------------------------------------- */

static int from_tool(const void *from)
{
    uintptr_t a = (uintptr_t)from;
    for (int i = 0; i < n_tool_ranges; i++)
        if (a >= tool_ranges[i].lo && a < tool_ranges[i].hi)
            return 1;
    return 0;
}

static int find_tools(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    (void)data;
    const char *name = info->dlpi_name;
    if (name == NULL || name[0] == '\0')
        return 0;
    const char *base = lh_basename(name);
    for (const char *const *t = TOOL_LIBS; *t; t++) {
        if (lh_strncmp(base, *t, lh_strlen(*t)) != 0)
            continue;
        for (int i = 0; i < info->dlpi_phnum && n_tool_ranges < MAX_TOOL_RANGES; i++) {
            const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
            if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
                tool_ranges[n_tool_ranges].lo = info->dlpi_addr + ph->p_vaddr;
                tool_ranges[n_tool_ranges].hi = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
                n_tool_ranges++;
            }
        }
    }
    return 0;
}

/* Enter the recorder: 0 when this call is not to be recorded.  Saves errno. */
static int enter(const void *from, int *saved)
{
    ensure_init();
    if (!ready || inert || from_tool(from))
        return 0;
    *saved = errno;
    if (ts.busy) {
        /* A signal handler interrupted the recorder on this thread: its record cannot be made. */
        static const char lost[] = "LH-INPUTS lost\n";
        emit(lost, sizeof lost - 1, 0);
        errno = *saved;
        return 0;
    }
    if (ts.capped)
        return 0;
    ts.busy = 1;
    QUIET_BEGIN();
    return 1;
}

static void leave(int saved)
{
    QUIET_END();
    ts.busy = 0;
    errno = saved;
}

/* "//" -> "/", "/./" -> "/", a trailing "/." dropped: the same file, always. */
static void fold(char *p)
{
    char *r = p, *w = p;
    while (*r) {
        if (r[0] == '/' && (r[1] == '/' || (r[1] == '.' && (r[2] == '/' || r[2] == '\0')))) {
            r += r[1] == '/' ? 1 : 2;
            continue;
        }
        *w++ = *r++;
    }
    if (w > p + 1 && w[-1] == '/')
        w--;
    if (w == p)
        *w++ = '/';  /* "/." is the root */
    *w = '\0';
}

/* A path through a process's working folder, root or a folder's descriptor
 * (/proc/self/cwd/conf/x, /proc/PID/task/TID/root/..., /proc/self/fd/N/x, /dev/fd/N/x) is the
 * file behind it: the link is read and the rest of the path put after it (else the path is
 * under /proc or /dev, not recorded, and a file read that way was never an input).  ts.line is
 * free here. */
static const char *digits_then_slash(const char *p)
{
    const char *d = p;
    while (*p >= '0' && *p <= '9')
        p++;
    return p == d || *p != '/' ? NULL : p + 1;
}

static void proc_link(char *buf)
{
    char link[64];
    const char *p, *rest;
    if (lh_strncmp(buf, "/dev/fd/", 8) == 0) {
        p = buf + 8;
        const char *d = p;
        while (*p >= '0' && *p <= '9')
            p++;
        if (p == d || (*p != '/' && *p != '\0') || (size_t)(p - d) > 20)
            return;
        struct out o = {link, 0, sizeof link, 0};
        put(&o, "/proc/self/fd/");
        link[o.len] = '\0';
        lh_memcpy(link + o.len, d, (size_t)(p - d));
        link[o.len + (size_t)(p - d)] = '\0';
        rest = p;
    } else {
        if (lh_strncmp(buf, "/proc/", 6) != 0)
            return;
        p = buf + 6;
        if (lh_strncmp(p, "self/", 5) == 0)
            p += 5;
        else if (lh_strncmp(p, "thread-self/", 12) == 0)
            p += 12;
        else if ((p = digits_then_slash(p)) == NULL)
            return;
        if (lh_strncmp(p, "task/", 5) == 0 && (p = digits_then_slash(p + 5)) == NULL)
            return;
        if (lh_strncmp(p, "cwd", 3) == 0 && (p[3] == '/' || p[3] == '\0'))
            p += 3;
        else if (lh_strncmp(p, "root", 4) == 0 && (p[4] == '/' || p[4] == '\0'))
            p += 4;
        else if (lh_strncmp(p, "fd/", 3) == 0) {
            p += 3;
            const char *d = p;
            while (*p >= '0' && *p <= '9')
                p++;
            if (p == d || (*p != '/' && *p != '\0'))
                return;
        } else
            return;
        size_t link_len = (size_t)(p - buf);
        if (link_len >= sizeof link)
            return;
        lh_memcpy(link, buf, link_len);
        link[link_len] = '\0';
        rest = p;
    }
    long got = syscall(SYS_readlinkat, AT_FDCWD, link, ts.line, PATH_BUF - 1);
    if (got <= 0 || ts.line[0] != '/')
        return;
    size_t more = lh_strlen(rest);
    if ((size_t)got + more + 1 > PATH_BUF)
        return;
    lh_memcpy(ts.line + got, rest, more + 1);
    lh_memcpy(buf, ts.line, (size_t)got + more + 1);
    fold(buf);
}

/* The absolute path of (dirfd, path) into ts.path; path "" names dirfd itself.  -1: cannot. */
static int absolute(int dirfd, const char *path)
{
    char *buf = ts.path;
    size_t n;
    if (path[0] == '/') {
        n = 0;
    } else if (dirfd == AT_FDCWD) {
        long got = syscall(SYS_getcwd, buf, PATH_BUF);
        if (got <= 0 || buf[0] != '/')
            return -1;  /* no working folder (removed): nothing can be found relative to it */
        n = lh_strlen(buf);
    } else {
        char link[40];
        struct out o = {link, 0, sizeof link, 0};
        put(&o, "/proc/self/fd/");
        put_u(&o, (unsigned long long)(unsigned)dirfd);
        link[o.len] = '\0';
        long got = syscall(SYS_readlinkat, AT_FDCWD, link, buf, PATH_BUF - 1);
        if (got <= 0 || buf[0] != '/')
            return -1;  /* not a descriptor of a file-system object: the real call fails too */
        n = (size_t)got;
        buf[n] = '\0';
    }
    if (path[0] != '\0') {
        if (n > 0 && buf[n - 1] != '/')
            buf[n++] = '/';
        size_t len = lh_strlen(path);
        if (n + len + 1 > PATH_BUF)
            return -2;  /* too long to record: said so */
        lh_memcpy(buf + n, path, len + 1);
    }
    fold(buf);
    /* A descriptor reopened by its /proc/self/fd or /dev/fd name (systemd's O_PATH idiom): the
     * file behind it is the input.  ts.line is free here: the caller has written nothing yet. */
    const char *num = NULL;
    if (lh_strncmp(buf, "/proc/self/fd/", 14) == 0)
        num = buf + 14;
    else if (lh_strncmp(buf, "/dev/fd/", 8) == 0)
        num = buf + 8;
    if (num && *num) {
        const char *c = num;
        while (*c >= '0' && *c <= '9')
            c++;
        if (*c == '\0') {
            long got = syscall(SYS_readlinkat, AT_FDCWD, buf, ts.line, PATH_BUF - 1);
            if (got > 0 && ts.line[0] == '/') {
                ts.line[got] = '\0';
                lh_memcpy(buf, ts.line, (size_t)got + 1);
            }
        }
    }
    proc_link(buf);
    return 0;
}

static int under(const char *path, const char *dir, size_t len)
{
    return lh_strncmp(path, dir, len) == 0 && (path[len] == '/' || path[len] == '\0');
}

static int ignored(const char *p)
{
    /* /dev/shm and /dev/mqueue hold ordinary files (a configuration a program keeps in shared
     * memory): recorded like any other. */
    if (under(p, "/proc", 5) || under(p, "/sys", 4)
        || (under(p, "/dev", 4) && !under(p, "/dev/shm", 8) && !under(p, "/dev/mqueue", 11)))
        return 1;
    return log_dir_len && lh_strncmp(p, log_dir, log_dir_len) == 0;
}

/* Two independent 64-bit hashes of a line: a repeat is skipped only when both match.  Sets of
 * four slots (a program alternating between two files that share a slot would write both every
 * time with one). */
static int seen_before(const char *s, size_t len)
{
    uint64_t a = 1469598103934665603ULL, b = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < len; i++) {
        a = (a ^ (unsigned char)s[i]) * 1099511628211ULL;
        b = (b + (unsigned char)s[i]) * 0xff51afd7ed558ccdULL;
        b ^= b >> 29;
    }
    a ^= a >> 33;  /* FNV leaves lines that differ in one late byte close: mixed before indexing */
    a *= 0xc4ceb9fe1a85ec53ULL;
    a ^= a >> 33;
    a |= 1;  /* never 0: an empty slot */
    unsigned set = (unsigned)(a >> 40) & (SEEN - 4);
    for (unsigned i = set; i < set + 4; i++)
        if (ts.seen[i][0] == a && ts.seen[i][1] == b)
            return 1;
    unsigned way = 0;
    while (way < 3 && ts.seen[set + way][0] != 0)
        way++;  /* an empty slot of the set, else the last one (the oldest moves out in turn) */
    if (way == 3 && ts.seen[set + 3][0] != 0) {
        for (unsigned i = set; i < set + 3; i++) {
            ts.seen[i][0] = ts.seen[i + 1][0];
            ts.seen[i][1] = ts.seen[i + 1][1];
        }
    }
    ts.seen[set + way][0] = a;
    ts.seen[set + way][1] = b;
    return 0;
}

/* Write "KIND RESULT PATH" for (dirfd, path).  stat_flags: how the existence check follows
 * links; with dirfd >= 0 and path "", dirfd itself is the file.  Returns 1 when the path exists
 * (what the stat said), else 0. */
static int note_in(char kind, int dirfd, const char *path, int stat_flags, int structural)
{
    struct out o = {ts.line, 0, LINE_BUF, 0};
    int bad = absolute(dirfd, path);
    int exists = 0;
    if (bad == -1)
        return 0;
    if (bad == 0 && ignored(ts.path))
        return 0;
    char head[2] = {kind, '\0'};
    put(&o, head);
    if (bad == -2) {
        put(&o, " ! ");  /* the reader does not vouch for a path it was not given whole */
        put_path(&o, path);
    } else {
        struct stat st;
        int rc = path[0] == '\0' ? (int)syscall(SYS_fstat, dirfd, &st) : sys_fstatat(dirfd, path, &st, stat_flags);
        exists = rc == 0;
        if (rc == 0) {
            put(&o, " + ");
        } else {
            put(&o, " -");
            put_u(&o, (unsigned long long)errno);
            put(&o, " ");
        }
        put_path(&o, ts.path);
    }
    if (o.cut) {  /* a path too long for the line: marked as cut, the reader does not vouch for it */
        o.len = 0;
        put(&o, head);
        put(&o, " ! ");
        put_path(&o, ts.path);
    }
    ts.line[o.len++] = '\n';
    if (!structural && seen_before(ts.line, o.len))
        return exists;
    emit(ts.line, o.len, 1);
    return exists;
}

NOINLINE static int note(const void *from, char kind, int dirfd, const char *path, int stat_flags)
{
    int saved, exists = 0;
    if (path == NULL || !enter(from, &saved))
        return 0;
    if (path[0] != '\0')
        exists = note_in(kind, dirfd, path, stat_flags, kind == 'x');
    leave(saved);
    return exists;
}

NOINLINE static void note_fd(const void *from, char kind, int fd)
{
    int saved;
    if (fd < 0 || !enter(from, &saved))
        return;
    note_in(kind, fd, "", 0, kind == 'x');
    leave(saved);
}

/* A line with a fixed head and an escaped argument: s, l, u. */
NOINLINE static void note_text(const void *from, const char *head, const char *arg)
{
    int saved;
    if (!enter(from, &saved))
        return;
    struct out o = {ts.line, 0, LINE_BUF - 1, 0};
    put(&o, head);
    if (arg)
        put_path(&o, arg);  /* cut short if it must be: such a line makes the record incomplete anyway */
    ts.line[o.len++] = '\n';
    emit(ts.line, o.len, 1);
    leave(saved);
}


/* open's flags: what the call tells the program about the file before the write, if anything. */
static char open_kind(int flags)
{
    int acc = flags & O_ACCMODE;
    if ((flags & O_PATH) == O_PATH)
        return (flags & O_NOFOLLOW) ? 'q' : 'p';
    if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL))
        return 'p';  /* the call fails when the file exists: its existence is what the program learns */
    if (acc == O_WRONLY)
        return 0;  /* written, not read: not an input */
    if ((flags & (O_CREAT | O_TRUNC)) == (O_CREAT | O_TRUNC))
        return 0;  /* made empty whatever was there: what is read back is the program's own */
    return 'r';
}

static int open_stat_flags(int flags)
{
    return (flags & O_NOFOLLOW) ? AT_SYMLINK_NOFOLLOW : 0;
}

NOINLINE static void note_open(const void *from, int dirfd, const char *path, int flags)
{
    char kind = open_kind(flags);
    if (kind)
        note(from, kind, dirfd, path, open_stat_flags(flags));
}

/* fopen's mode: 'r' or '+' reads; "w" and "w+" truncate; "a" appends without reading; 'x' is O_EXCL. */
NOINLINE static void note_fopen(const void *from, const char *path, const char *mode)
{
    if (mode == NULL)
        return;
    int plus = lh_strchr(mode, '+') != NULL, excl = lh_strchr(mode, 'x') != NULL;
    if (excl && mode[0] != 'r')
        note(from, 'p', AT_FDCWD, path, 0);
    else if (mode[0] == 'r' || (mode[0] == 'a' && plus))
        note(from, 'r', AT_FDCWD, path, 0);
}

/* execvp's search: each directory of PATH is tried in turn; the ones that hold no such program
 * are probes (a program put there later would run instead), the first that does is the run. */
NOINLINE static int note_search(const void *from, const char *file)
{
    if (file == NULL || file[0] == '\0')
        return 0;
    if (lh_strchr(file, '/'))
        return note(from, 'x', AT_FDCWD, file, 0);
    int saved, found = 0;
    if (!enter(from, &saved))
        return 0;
    const char *path = getenv("PATH");
    if (path == NULL)
        path = "/bin:/usr/bin";  /* glibc's default when PATH is not set */
    char cand[PATH_BUF];
    size_t flen = lh_strlen(file);
    for (const char *p = path;; p++) {
        const char *end = lh_strchr(p, ':');
        size_t dlen = end ? (size_t)(end - p) : lh_strlen(p);
        if (dlen + flen + 2 <= sizeof cand) {
            size_t n = 0;
            if (dlen == 0)
                cand[n++] = '.';  /* an empty entry is the working folder */
            lh_memcpy(cand + n, p, dlen);
            n += dlen;
            cand[n++] = '/';
            lh_memcpy(cand + n, file, flen + 1);
            found = syscall(SYS_faccessat, AT_FDCWD, cand, X_OK) == 0;
            note_in(found ? 'x' : 'p', AT_FDCWD, cand, 0, found);
            if (found)
                break;
        }
        if (!end)
            break;
        p = end;
    }
    leave(saved);
    return found;
}

/* --- the hooks -------------------------------------------------------------------------------
 * Declared under another C name with the libc symbol as their assembler name: fcntl.h's
 * variadic prototypes would forbid the tail call.  The mode argument is passed on as it came
 * (glibc reads it only when O_CREAT or O_TMPFILE asks for it). */

#define HOOK(ret, name, args) EXPORT ret hook_##name args __asm__(#name); EXPORT ret hook_##name args

HOOK(int, open, (const char *path, int flags, mode_t mode))
{
    const void *from = CALLER;
    note_open(from, AT_FDCWD, path, flags);
    return REAL(open)(path, flags, mode);
}

HOOK(int, open64, (const char *path, int flags, mode_t mode))
{
    const void *from = CALLER;
    note_open(from, AT_FDCWD, path, flags);
    return REAL(open64)(path, flags, mode);
}

HOOK(int, __open, (const char *path, int flags, mode_t mode))
{
    const void *from = CALLER;
    note_open(from, AT_FDCWD, path, flags);
    return REAL(__open)(path, flags, mode);
}

HOOK(int, __open64, (const char *path, int flags, mode_t mode))
{
    const void *from = CALLER;
    note_open(from, AT_FDCWD, path, flags);
    return REAL(__open64)(path, flags, mode);
}

HOOK(int, __open_2, (const char *path, int flags))
{
    const void *from = CALLER;
    note_open(from, AT_FDCWD, path, flags);
    return REAL(__open_2)(path, flags);
}

HOOK(int, __open64_2, (const char *path, int flags))
{
    const void *from = CALLER;
    note_open(from, AT_FDCWD, path, flags);
    return REAL(__open64_2)(path, flags);
}

HOOK(int, openat, (int dirfd, const char *path, int flags, mode_t mode))
{
    const void *from = CALLER;
    note_open(from, dirfd, path, flags);
    return REAL(openat)(dirfd, path, flags, mode);
}

HOOK(int, openat64, (int dirfd, const char *path, int flags, mode_t mode))
{
    const void *from = CALLER;
    note_open(from, dirfd, path, flags);
    return REAL(openat64)(dirfd, path, flags, mode);
}

HOOK(int, __openat_2, (int dirfd, const char *path, int flags))
{
    const void *from = CALLER;
    note_open(from, dirfd, path, flags);
    return REAL(__openat_2)(dirfd, path, flags);
}

HOOK(int, __openat64_2, (int dirfd, const char *path, int flags))
{
    const void *from = CALLER;
    note_open(from, dirfd, path, flags);
    return REAL(__openat64_2)(dirfd, path, flags);
}

HOOK(FILE *, fopen, (const char *path, const char *mode))
{
    const void *from = CALLER;
    note_fopen(from, path, mode);
    return REAL(fopen)(path, mode);
}

HOOK(FILE *, fopen64, (const char *path, const char *mode))
{
    const void *from = CALLER;
    note_fopen(from, path, mode);
    return REAL(fopen64)(path, mode);
}

HOOK(FILE *, freopen, (const char *path, const char *mode, FILE *stream))
{
    const void *from = CALLER;
    note_fopen(from, path, mode);
    return REAL(freopen)(path, mode, stream);
}

HOOK(FILE *, freopen64, (const char *path, const char *mode, FILE *stream))
{
    const void *from = CALLER;
    note_fopen(from, path, mode);
    return REAL(freopen64)(path, mode, stream);
}

HOOK(int, stat, (const char *path, struct stat *st))
{
    const void *from = CALLER;
    note(from, 'p', AT_FDCWD, path, 0);
    return REAL(stat)(path, st);
}

HOOK(int, stat64, (const char *path, struct stat64 *st))
{
    const void *from = CALLER;
    note(from, 'p', AT_FDCWD, path, 0);
    return REAL(stat64)(path, st);
}

HOOK(int, lstat, (const char *path, struct stat *st))
{
    const void *from = CALLER;
    note(from, 'q', AT_FDCWD, path, AT_SYMLINK_NOFOLLOW);
    return REAL(lstat)(path, st);
}

HOOK(int, lstat64, (const char *path, struct stat64 *st))
{
    const void *from = CALLER;
    note(from, 'q', AT_FDCWD, path, AT_SYMLINK_NOFOLLOW);
    return REAL(lstat64)(path, st);
}

NOINLINE static void note_at(const void *from, int dirfd, const char *path, int flags)
{
    /* AT_EMPTY_PATH with "": the descriptor's own file, not a name: nothing learnt by name. */
    if (path && path[0] != '\0') {
        int nofollow = flags & AT_SYMLINK_NOFOLLOW;
        note(from, nofollow ? 'q' : 'p', dirfd, path, nofollow ? AT_SYMLINK_NOFOLLOW : 0);
    }
}

HOOK(int, fstatat, (int dirfd, const char *path, struct stat *st, int flags))
{
    const void *from = CALLER;
    note_at(from, dirfd, path, flags);
    return REAL(fstatat)(dirfd, path, st, flags);
}

HOOK(int, fstatat64, (int dirfd, const char *path, struct stat64 *st, int flags))
{
    const void *from = CALLER;
    note_at(from, dirfd, path, flags);
    return REAL(fstatat64)(dirfd, path, st, flags);
}

/* The names programs built against glibc before 2.33 call stat and lstat by. */
HOOK(int, __xstat, (int ver, const char *path, struct stat *st))
{
    const void *from = CALLER;
    note(from, 'p', AT_FDCWD, path, 0);
    return REAL(__xstat)(ver, path, st);
}

HOOK(int, __xstat64, (int ver, const char *path, struct stat64 *st))
{
    const void *from = CALLER;
    note(from, 'p', AT_FDCWD, path, 0);
    return REAL(__xstat64)(ver, path, st);
}

HOOK(int, __lxstat, (int ver, const char *path, struct stat *st))
{
    const void *from = CALLER;
    note(from, 'q', AT_FDCWD, path, AT_SYMLINK_NOFOLLOW);
    return REAL(__lxstat)(ver, path, st);
}

HOOK(int, __lxstat64, (int ver, const char *path, struct stat64 *st))
{
    const void *from = CALLER;
    note(from, 'q', AT_FDCWD, path, AT_SYMLINK_NOFOLLOW);
    return REAL(__lxstat64)(ver, path, st);
}

HOOK(int, __fxstatat, (int ver, int dirfd, const char *path, struct stat *st, int flags))
{
    const void *from = CALLER;
    note_at(from, dirfd, path, flags);
    return REAL(__fxstatat)(ver, dirfd, path, st, flags);
}

HOOK(int, __fxstatat64, (int ver, int dirfd, const char *path, struct stat64 *st, int flags))
{
    const void *from = CALLER;
    note_at(from, dirfd, path, flags);
    return REAL(__fxstatat64)(ver, dirfd, path, st, flags);
}

HOOK(int, statx, (int dirfd, const char *path, int flags, unsigned int mask, void *buf))
{
    const void *from = CALLER;
    note_at(from, dirfd, path, flags);
    return REAL(statx)(dirfd, path, flags, mask, buf);
}

HOOK(int, access, (const char *path, int mode))
{
    const void *from = CALLER;
    note(from, 'p', AT_FDCWD, path, 0);
    return REAL(access)(path, mode);
}

HOOK(int, faccessat, (int dirfd, const char *path, int mode, int flags))
{
    const void *from = CALLER;
    note_at(from, dirfd, path, flags);
    return REAL(faccessat)(dirfd, path, mode, flags);
}

HOOK(int, euidaccess, (const char *path, int mode))
{
    const void *from = CALLER;
    note(from, 'p', AT_FDCWD, path, 0);
    return REAL(euidaccess)(path, mode);
}

HOOK(int, eaccess, (const char *path, int mode))
{
    const void *from = CALLER;
    note(from, 'p', AT_FDCWD, path, 0);
    return REAL(eaccess)(path, mode);
}

HOOK(ssize_t, readlink, (const char *path, char *buf, size_t size))
{
    const void *from = CALLER;
    note(from, 'q', AT_FDCWD, path, AT_SYMLINK_NOFOLLOW);
    return REAL(readlink)(path, buf, size);
}

HOOK(ssize_t, readlinkat, (int dirfd, const char *path, char *buf, size_t size))
{
    const void *from = CALLER;
    note(from, 'q', dirfd, path, AT_SYMLINK_NOFOLLOW);
    return REAL(readlinkat)(dirfd, path, buf, size);
}

HOOK(char *, realpath, (const char *path, char *resolved))
{
    const void *from = CALLER;
    note(from, 'p', AT_FDCWD, path, 0);
    return REAL(realpath)(path, resolved);
}

HOOK(char *, canonicalize_file_name, (const char *path))
{
    const void *from = CALLER;
    note(from, 'p', AT_FDCWD, path, 0);
    return REAL(canonicalize_file_name)(path);
}

HOOK(DIR *, opendir, (const char *path))
{
    const void *from = CALLER;
    note(from, 'd', AT_FDCWD, path, 0);
    return REAL(opendir)(path);
}

HOOK(DIR *, fdopendir, (int fd))
{
    const void *from = CALLER;
    note_fd(from, 'd', fd);
    return REAL(fdopendir)(fd);
}

HOOK(int, scandir, (const char *path, void *list, void *filter, void *compar))
{
    const void *from = CALLER;
    note(from, 'd', AT_FDCWD, path, 0);
    return REAL(scandir)(path, list, filter, compar);
}

HOOK(int, scandir64, (const char *path, void *list, void *filter, void *compar))
{
    const void *from = CALLER;
    note(from, 'd', AT_FDCWD, path, 0);
    return REAL(scandir64)(path, list, filter, compar);
}

HOOK(int, scandirat, (int dirfd, const char *path, void *list, void *filter, void *compar))
{
    const void *from = CALLER;
    note(from, 'd', dirfd, path, 0);
    return REAL(scandirat)(dirfd, path, list, filter, compar);
}

HOOK(int, scandirat64, (int dirfd, const char *path, void *list, void *filter, void *compar))
{
    const void *from = CALLER;
    note(from, 'd', dirfd, path, 0);
    return REAL(scandirat64)(dirfd, path, list, filter, compar);
}

/* Walks glibc makes with its own internal calls: which folders they listed is not seen. */
HOOK(int, glob, (const char *pattern, int flags, void *errfunc, void *out))
{
    const void *from = CALLER;
    note_text(from, "u glob ", pattern);
    return REAL(glob)(pattern, flags, errfunc, out);
}

HOOK(int, glob64, (const char *pattern, int flags, void *errfunc, void *out))
{
    const void *from = CALLER;
    note_text(from, "u glob ", pattern);
    return REAL(glob64)(pattern, flags, errfunc, out);
}

HOOK(int, nftw, (const char *dir, void *fn, int fds, int flags))
{
    const void *from = CALLER;
    note_text(from, "u nftw ", dir);
    return REAL(nftw)(dir, fn, fds, flags);
}

HOOK(int, nftw64, (const char *dir, void *fn, int fds, int flags))
{
    const void *from = CALLER;
    note_text(from, "u nftw ", dir);
    return REAL(nftw64)(dir, fn, fds, flags);
}

HOOK(int, ftw, (const char *dir, void *fn, int fds))
{
    const void *from = CALLER;
    note_text(from, "u ftw ", dir);
    return REAL(ftw)(dir, fn, fds);
}

HOOK(int, ftw64, (const char *dir, void *fn, int fds))
{
    const void *from = CALLER;
    note_text(from, "u ftw ", dir);
    return REAL(ftw64)(dir, fn, fds);
}

HOOK(void *, fts_open, (char *const *paths, int options, void *compar))
{
    const void *from = CALLER;
    note_text(from, "u fts ", paths && paths[0] ? paths[0] : "");
    return REAL(fts_open)(paths, options, compar);
}

HOOK(void *, fts64_open, (char *const *paths, int options, void *compar))
{
    const void *from = CALLER;
    note_text(from, "u fts ", paths && paths[0] ? paths[0] : "");
    return REAL(fts64_open)(paths, options, compar);
}

/* --- programs run ------------------------------------------------------------------------------
 * The exec is written before it is made.  If it fails the process goes on (more records, or its
 * end line follow); if it succeeds the new program writes a new section under the same pid, or
 * nothing at all when it does not load this library: then the reader sees the exec as the last
 * word of a section with no end, and does not vouch for what came after. */

HOOK(int, execve, (const char *path, char *const argv[], char *const envp[]))
{
    const void *from = CALLER;
    note(from, 'x', AT_FDCWD, path, 0);
    return REAL(execve)(path, argv, envp);
}

HOOK(int, execv, (const char *path, char *const argv[]))
{
    const void *from = CALLER;
    note(from, 'x', AT_FDCWD, path, 0);
    return REAL(execv)(path, argv);
}

HOOK(int, execvp, (const char *file, char *const argv[]))
{
    const void *from = CALLER;
    note_search(from, file);
    return REAL(execvp)(file, argv);
}

HOOK(int, execvpe, (const char *file, char *const argv[], char *const envp[]))
{
    const void *from = CALLER;
    note_search(from, file);
    return REAL(execvpe)(file, argv, envp);
}

HOOK(int, fexecve, (int fd, char *const argv[], char *const envp[]))
{
    const void *from = CALLER;
    note_fd(from, 'x', fd);
    return REAL(fexecve)(fd, argv, envp);
}

HOOK(int, execveat, (int dirfd, const char *path, char *const argv[], char *const envp[], int flags))
{
    const void *from = CALLER;
    if (path && path[0] == '\0')
        note_fd(from, 'x', dirfd);
    else
        note(from, 'x', dirfd, path, (flags & AT_SYMLINK_NOFOLLOW) ? AT_SYMLINK_NOFOLLOW : 0);
    return REAL(execveat)(dirfd, path, argv, envp, flags);
}

/* execl and friends take their arguments as a list: gathered into an array on our stack (as
 * glibc does) and passed to the real execv/execve/execvp. */
#define GATHER(first, ap, argv, extra)                                   \
    size_t n_ = 1;                                                       \
    va_list count_;                                                      \
    va_copy(count_, ap);                                                 \
    while (va_arg(count_, char *) != NULL)                               \
        n_++;                                                            \
    va_end(count_);                                                      \
    char *argv[n_ + 1];                                                  \
    argv[0] = (char *)(first);                                           \
    for (size_t i_ = 1; i_ <= n_; i_++)                                  \
        argv[i_] = va_arg(ap, char *);                                   \
    char *const *extra = va_arg(ap, char *const *)

EXPORT int execl(const char *path, const char *arg, ...)
{
    const void *from = CALLER;
    va_list ap;
    va_start(ap, arg);
    GATHER(arg, ap, argv, unused);
    (void)unused;
    va_end(ap);
    note(from, 'x', AT_FDCWD, path, 0);
    return REAL(execv)(path, argv);
}

EXPORT int execle(const char *path, const char *arg, ...)
{
    const void *from = CALLER;
    va_list ap;
    va_start(ap, arg);
    GATHER(arg, ap, argv, envp);
    va_end(ap);
    note(from, 'x', AT_FDCWD, path, 0);
    return REAL(execve)(path, argv, envp);
}

EXPORT int execlp(const char *file, const char *arg, ...)
{
    const void *from = CALLER;
    va_list ap;
    va_start(ap, arg);
    GATHER(arg, ap, argv, unused);
    (void)unused;
    va_end(ap);
    note_search(from, file);
    return REAL(execvp)(file, argv);
}

/* A child started by glibc's own spawning code (posix_spawn, system, popen), whose exec no hook
 * sees: "s ?" tells the reader to find a process whose parent is this one.  Not when the program
 * does not exist: the spawn fails, no process is expected. */
NOINLINE static void note_spawn(const void *from, const char *file, int search)
{
    if (search ? note_search(from, file) : note(from, 'x', AT_FDCWD, file, 0))
        note_text(from, "s ?", NULL);
}

/* A file the spawned child gets open (its stdin, say): glibc opens it in the child before the
 * exec, with its own system call.  Noted when the action is added, from the parent's folder
 * (an addchdir_np before it would move the child's: such a path is then read relative to it). */
HOOK(int, posix_spawn_file_actions_addopen, (posix_spawn_file_actions_t *actions, int fd, const char *path,
                                             int flags, mode_t mode))
{
    const void *from = CALLER;
    note_open(from, AT_FDCWD, path, flags);
    return REAL(posix_spawn_file_actions_addopen)(actions, fd, path, flags, mode);
}

HOOK(int, posix_spawn, (pid_t *pid, const char *path, const posix_spawn_file_actions_t *actions,
                        const posix_spawnattr_t *attr, char *const argv[], char *const envp[]))
{
    const void *from = CALLER;
    note_spawn(from, path, 0);
    return REAL(posix_spawn)(pid, path, actions, attr, argv, envp);
}

HOOK(int, posix_spawnp, (pid_t *pid, const char *file, const posix_spawn_file_actions_t *actions,
                         const posix_spawnattr_t *attr, char *const argv[], char *const envp[]))
{
    const void *from = CALLER;
    note_spawn(from, file, 1);
    return REAL(posix_spawnp)(pid, file, actions, attr, argv, envp);
}

/* system and popen run /bin/sh through glibc's own posix_spawn: the child's pid is not handed
 * back, so the reader looks for a process whose parent is this one. */
HOOK(int, system, (const char *command))
{
    const void *from = CALLER;
    if (command)
        note_spawn(from, "/bin/sh", 0);
    else
        note(from, 'p', AT_FDCWD, "/bin/sh", 0);  /* system(NULL): is there a shell? */
    return REAL(system)(command);
}

HOOK(FILE *, popen, (const char *command, const char *type))
{
    const void *from = CALLER;
    note_spawn(from, "/bin/sh", 0);
    return REAL(popen)(command, type);
}

/* --- libraries loaded by name ------------------------------------------------------------------ */

struct find_loaded {
    const char *name;
    size_t len;
    const char *found;
};

static int find_loaded_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    struct find_loaded *f = data;
    const char *n = info->dlpi_name;
    if (n == NULL || n[0] == '\0')
        return 0;
    size_t len = lh_strlen(n);
    if (len >= f->len && lh_strcmp(n + len - f->len, f->name) == 0 && (len == f->len || n[len - f->len - 1] == '/')) {
        f->found = n;
        return 1;
    }
    return 0;
}

/* A path is a read like any other.  A bare name already loaded (libc.so.6, libcrypto.so.3) is
 * not searched for again: the loaded file is the input (the vDSO, loaded with no file, is none).
 * Any other bare name is searched for by the loader with calls this library cannot see: written
 * as such, and not vouched for. */
NOINLINE static void note_dlopen(const void *from, const char *file)
{
    if (file == NULL || file[0] == '\0')
        return;
    if (lh_strchr(file, '/')) {
        note(from, 'r', AT_FDCWD, file, 0);
        return;
    }
    ensure_init();
    if (!ready || inert)
        return;
    struct find_loaded f = {file, lh_strlen(file), NULL};
    if (libc_dl_iterate_phdr)
        libc_dl_iterate_phdr(find_loaded_cb, &f);
    if (f.found && f.found[0] == '/')
        note(from, 'r', AT_FDCWD, f.found, 0);
    else if (f.found && !lh_strchr(f.found, '/'))
        return; /* loaded under its bare name with no file behind it: the vDSO (linux-vdso.so.1),
                 * which the loader finds among the loaded objects without a search or a read */
    else
        note_text(from, "l ", file);
}

/* What a dlopen brought in with the file named: the libraries it needs, found by the loader
 * through its RUNPATH with opens this library cannot see.  Every object still loaded when the
 * process ends (its end line) is written as a read (repeats are dropped by seen_before; the
 * hook itself must stay a tail call, the loader reading the caller's RUNPATH from its return
 * address): the names are gathered first, and written outside dl_iterate_phdr, which holds the
 * loader's lock.  So is every object loaded when the program calls dlclose: a plugin closed
 * before the end, and the libraries it brought in, are inputs all the same. */
#define LOADED_MAX 256
struct loaded_names {
    const char *names[LOADED_MAX];
    int count;
    int more;
};

static int gather_loaded_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    struct loaded_names *l = data;
    const char *n = info->dlpi_name;
    if (n == NULL || n[0] != '/')
        return 0;
    const char *base = lh_basename(n);
    for (const char *const *t = TOOL_LIBS; *t; t++)
        if (lh_strncmp(base, *t, lh_strlen(*t)) == 0)
            return 0;  /* a checker's runtime (libasan, valgrind's preloads): in the key as the checker's */
    if (lh_strncmp(base, "lh-inputs.", 10) == 0)
        return 0;  /* this library */
    if (l->count == LOADED_MAX) {
        l->more = 1;
        return 1;
    }
    l->names[l->count++] = n;
    return 0;
}

NOINLINE static void note_loaded(const void *from)
{
    if (!ready || inert || !libc_dl_iterate_phdr)
        return;
    struct loaded_names l;
    l.count = 0;
    l.more = 0;
    libc_dl_iterate_phdr(gather_loaded_cb, &l);
    for (int i = 0; i < l.count; i++)
        note(from, 'r', AT_FDCWD, l.names[i], 0);
    if (l.more)
        note_text(from, "l ", "(more than 256 loaded objects)");
}

HOOK(void *, dlopen, (const char *file, int mode))
{
    const void *from = CALLER;
    note_dlopen(from, file);
    return REAL(dlopen)(file, mode);  /* a tail call: the loader takes the caller's RUNPATH from it */
}

HOOK(void *, dlmopen, (Lmid_t lmid, const char *file, int mode))
{
    const void *from = CALLER;
    note_dlopen(from, file);
    return REAL(dlmopen)(lmid, file, mode);
}

HOOK(int, dlclose, (void *handle))
{
    const void *from = CALLER;
    note_loaded(from);  /* before it goes: what the dlopen of this handle brought in */
    return REAL(dlclose)(handle);
}

/* --- sockets ---------------------------------------------------------------------------------- */

/* A connection is input from another process: a Unix socket by its path is written as a read of
 * it (a socket's state is never vouched for, as a FIFO's), any other as "n" (not in the file
 * system): a run that talked to a server is not reused on a guess. */
HOOK(int, connect, (int fd, const struct sockaddr *addr, socklen_t len))
{
    const void *from = CALLER;
    if (addr && len > (socklen_t)sizeof(sa_family_t)) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)addr;
        size_t room = len - offsetof(struct sockaddr_un, sun_path);
        if (addr->sa_family == AF_UNIX && room > 0 && un->sun_path[0] != '\0') {
            char path[sizeof un->sun_path + 1];
            size_t i = 0;
            for (; i < room && i < sizeof un->sun_path && un->sun_path[i]; i++)
                path[i] = un->sun_path[i];
            path[i] = '\0';
            note(from, 'r', AT_FDCWD, path, 0);
        } else if (addr->sa_family == AF_UNIX) {
            note_text(from, "n ", "an abstract Unix socket");
        } else if (addr->sa_family == AF_INET || addr->sa_family == AF_INET6) {
            note_text(from, "n ", addr->sa_family == AF_INET ? "an IPv4 address" : "an IPv6 address");
        }
    }
    return REAL(connect)(fd, addr, len);
}

/* --- the ends of a process ----------------------------------------------------------------- */

NOINLINE static void end_line(const char *how)
{
    int saved = errno;
    if (ready && !inert) {
        note_loaded(NULL);
        write_end(how);
    }
    errno = saved;
}

/* _exit skips the destructors (a forked child's usual way out, a failed exec's): the end line is
 * written here. */
HOOK(void, _exit, (int status))
{
    end_line("_exit");
    REAL(_exit)(status);
    __builtin_unreachable();
}

HOOK(void, _Exit, (int status))
{
    end_line("_exit");
    REAL(_Exit)(status);
    __builtin_unreachable();
}

/* The child of fork: its own file (its pid is another), its own start line, no memory of the
 * lines its parent wrote.  Only this thread exists in the child: its TLS is all there is to reset. */
static void after_fork_child(void)
{
    if (!ready || inert)
        return;
    int saved = errno;
    for (int i = 0; i < SEEN; i++)
        ts.seen[i][0] = ts.seen[i][1] = 0;
    ts.lines = 0;
    ts.capped = 0;
    ts.busy = 0;
    write_start("fork");  /* not "start": the reader tells a forked child from a spawned program */
    errno = saved;
}

static int in_list(const char *list, const char *exe)
{
    const char *base = lh_basename(exe);
    size_t exe_len = lh_strlen(exe), base_len = lh_strlen(base);
    while (list && *list) {
        const char *end = lh_strchr(list, ':');
        size_t len = end ? (size_t)(end - list) : lh_strlen(list);
        /* an entry with a '/' names one file; one without names a program wherever it is */
        int path_entry = lh_memchr(list, '/', len) != NULL;
        if (len && (path_entry ? (len == exe_len && lh_strncmp(list, exe, len) == 0)
                               : (len == base_len && lh_strncmp(list, base, len) == 0)))
            return 1;
        list = end ? end + 1 : NULL;
    }
    return 0;
}

static int is_shell(const char *exe)
{
    const char *base = lh_basename(exe);
    return !lh_strcmp(base, "sh") || !lh_strcmp(base, "dash") || !lh_strcmp(base, "bash");
}

static int shell_script_skipped(const char *skip, int argc, char **argv);

/* Where to write, whether this process is recorded, and its start line. */
static void setup(int argc, char **argv)
{
    const char *prefix = getenv("LH_INPUTS_LOG");
    if (prefix == NULL || prefix[0] != '/' || lh_strlen(prefix) + 32 >= sizeof log_prefix) {
        inert = 1;  /* nowhere to write: not a recorded run */
        return;
    }
    lh_memcpy(log_prefix, prefix, lh_strlen(prefix) + 1);
    log_dir_len = (size_t)(lh_basename(log_prefix) - log_prefix);
    lh_memcpy(log_dir, log_prefix, log_dir_len);
    log_dir[log_dir_len] = '\0';
    const char *cap = getenv("LH_INPUTS_MAX");
    if (cap && *cap) {
        unsigned long v = 0;
        for (; *cap >= '0' && *cap <= '9'; cap++)
            v = v * 10 + (unsigned long)(*cap - '0');
        if (v > 0)
            max_bytes = v;
    }
    long n = syscall(SYS_readlinkat, AT_FDCWD, "/proc/self/exe", exe_path, sizeof exe_path - 1);
    exe_path[n > 0 ? n : 0] = '\0';

    /* The harness's own machinery is not the program: its process writes one line and no more. */
    const char *skip = getenv("LH_INPUTS_SKIP");
    if ((exe_path[0] && in_list(skip, exe_path)) || shell_script_skipped(skip, argc, argv)) {
        write_start("skip");
        inert = 1;
        return;
    }
    /* The next dl_iterate_phdr: TSan's interceptor of it under TSan, which passes the walk on
     * unchanged.  (libc's own cannot be had without a dlopen of libc, which allocates: memcheck
     * would show the block as still reachable after a crash.) */
    libc_dl_iterate_phdr = (__typeof__(libc_dl_iterate_phdr))dlsym(RTLD_NEXT, "dl_iterate_phdr");
    if (libc_dl_iterate_phdr)
        libc_dl_iterate_phdr(find_tools, NULL);
    pthread_atfork(NULL, NULL, after_fork_child);
    write_start("start");
    ready = 1;
}

#define RESOLVE(name) real_##name = (__typeof__(real_##name))dlsym(RTLD_NEXT, #name)

/* Is this a shell running a skipped script (valgrind's Debian wrapper: "sh -e /usr/bin/valgrind")?
 * The kernel runs "#!/bin/sh -e" as argv "/bin/sh", "-e", SCRIPT: the script is argv[1] or [2].
 * Without argv (set up from a hook, before the constructor), /proc/self/cmdline says the same. */
static int shell_script_skipped(const char *skip, int argc, char **argv)
{
    if (!is_shell(exe_path))
        return 0;
    static char cmdline[4096];
    char *args[3] = {NULL, NULL, NULL};
    if (argv == NULL) {
        int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
        long got = fd >= 0 ? syscall(SYS_read, fd, cmdline, sizeof cmdline - 1) : -1;
        if (fd >= 0)
            sys_close(fd);
        if (got <= 0)
            return 0;
        cmdline[got] = '\0';
        char *p = cmdline, *end = cmdline + got;
        for (argc = 0; argc < 3 && p < end; argc++) {
            args[argc] = p;
            p += lh_strlen(p) + 1;
        }
        argv = args;
    }
    for (int i = 1; i < argc && i <= 2 && argv[i]; i++)
        if (argv[i][0] == '/' && in_list(skip, argv[i]))
            return 1;
    return 0;
}

static void init_once(int argc, char **argv)
{
    int expected = 0;
    if (!__atomic_compare_exchange_n(&init_state, &expected, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return;  /* done, or under way in another thread (then that call is counted as early) */
    int saved = errno;  /* a hook may set up from inside a signal handler: errno is the program's */
    RESOLVE(open); RESOLVE(open64); RESOLVE(__open); RESOLVE(__open64); RESOLVE(__open_2);
    RESOLVE(__open64_2); RESOLVE(openat); RESOLVE(openat64); RESOLVE(__openat_2); RESOLVE(__openat64_2);
    RESOLVE(fopen); RESOLVE(fopen64); RESOLVE(freopen); RESOLVE(freopen64);
    RESOLVE(stat); RESOLVE(stat64); RESOLVE(lstat); RESOLVE(lstat64); RESOLVE(fstatat); RESOLVE(fstatat64);
    RESOLVE(__xstat); RESOLVE(__xstat64); RESOLVE(__lxstat); RESOLVE(__lxstat64); RESOLVE(__fxstatat);
    RESOLVE(__fxstatat64); RESOLVE(statx); RESOLVE(access); RESOLVE(faccessat); RESOLVE(euidaccess);
    RESOLVE(eaccess); RESOLVE(readlink); RESOLVE(readlinkat); RESOLVE(realpath); RESOLVE(canonicalize_file_name);
    RESOLVE(opendir); RESOLVE(fdopendir); RESOLVE(scandir); RESOLVE(scandir64); RESOLVE(scandirat);
    RESOLVE(scandirat64); RESOLVE(glob); RESOLVE(glob64); RESOLVE(nftw); RESOLVE(nftw64); RESOLVE(ftw);
    RESOLVE(ftw64); RESOLVE(fts_open); RESOLVE(fts64_open);
    RESOLVE(execve); RESOLVE(execv); RESOLVE(execvp); RESOLVE(execvpe); RESOLVE(fexecve); RESOLVE(execveat);
    RESOLVE(posix_spawn); RESOLVE(posix_spawnp); RESOLVE(posix_spawn_file_actions_addopen);
    RESOLVE(system); RESOLVE(popen);
    RESOLVE(dlopen); RESOLVE(dlmopen); RESOLVE(dlclose); RESOLVE(_exit); RESOLVE(_Exit); RESOLVE(connect);
    setup(argc, argv);
    __atomic_store_n(&init_state, 2, __ATOMIC_RELEASE);
    errno = saved;
}

/* glibc hands an ELF constructor (argc, argv, envp). */
__attribute__((constructor(101))) static void inputs_init(int argc, char **argv, char **envp)
{
    (void)envp;
    init_once(argc, argv);
}

__attribute__((destructor(101))) static void inputs_fini(void)
{
    end_line("exit");
    /* Calls after this point (later destructors, libc's clean-up) are still recorded: the
     * reader reads the lines after the end line too. */
}
