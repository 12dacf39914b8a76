/* lh-residue: find secrets left behind in freed memory (leakharness checker "residue").
 *
 * Loaded with LD_PRELOAD into a plain (uninstrumented) build.  The harness tells it the canary
 * bytes the program's secrets hold (LH_RESIDUE_SECRETS: comma-separated hex, each at least 8
 * bytes) and where to write (LH_RESIDUE_LOG: a prefix; this process writes PREFIX.<pid>).
 *
 * - free(): the block being freed is searched for every canary before the real free; a hit is
 *   a block given back while still holding key material (OPENSSL_free where OPENSSL_clear_free
 *   was due).
 * - realloc(): the old block is searched before the real realloc; when the block moved, the
 *   allocator freed the old copy as it was: a hit is a secret left in the old copy.
 * - when main returns (or exit() is called; at the latest in the destructor): the main thread's
 *   stack, from its lowest mapped page up to where the process started, is searched for a stack
 *   buffer that held key material and was never cleansed.  The search runs on a stack of its
 *   own, so that no frame of exit's overwrites those dead frames first; the harness runs the
 *   program with LD_BIND_NOW=1, since a lazily bound call saves ~1 KB of registers below the
 *   caller.  For each hit the nearest saved return address above it names the caller of the
 *   function whose frame held the buffer.
 *
 * Every allocation's requested size is kept in a table (a finding gives the block's size, not
 * the allocator's rounded-up usable size), with its allocation stack, deduplicated in a depot as
 * the sanitizers keep theirs.  LH_RESIDUE_ALLOC_STACKS: "own" (default) unwinds the whole stack
 * only for allocations called from the program's own code (not a system library), directly or
 * through OPENSSL_malloc/zalloc/strdup/..., and keeps the caller alone for the others; "all" unwinds at every allocation (about 12x a plain run on
 * the catalog's cleanse_missing, against 1.6x for "own"); "0" keeps none.  Stacks are raw
 * return addresses with their module and offset (dladdr1): the harness names them offline with
 * llvm-symbolizer.
 *
 * Nothing here may call malloc (we are malloc): memory comes from mmap, output goes out with
 * write(2) in whole records (one write per finding, O_APPEND), a thread-local flag stops
 * recursion (backtrace may allocate the first time it loads libgcc_s: done in the constructor),
 * and calls that arrive before the constructor pass straight through.
 *
 * The log (PREFIX.<pid>): a start line, a config line, one record per finding (an R line; `f`
 * lines: the free or realloc stack, or the caller above a stack secret; an `m` line: main itself
 * (the secret was in main's own frame: the address is main's entry, not a return address); `a` lines: the
 * allocation stack, after a `p` line when only the allocator's caller was kept; an E line), and
 * an end line written by the destructor (or _exit).  A process that did not finish (a signal, a
 * raw exit_group as the Go runtime makes) leaves no end line, and the harness must not call it clean; an exec starts a new section
 * (another start line) in the same file.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <link.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#define MAX_SECRETS 64
#define MAX_SECRET_LEN 1024
#define MIN_SECRET_LEN 8
#define MAX_FRAMES 40
#define RECORD_MAX 16384
#define DEPOT_SLOTS (1u << 20)          /* distinct allocation stacks kept */
#define DEPOT_FRAMES (16u << 20)        /* frames kept in all (128 MB reserved, touched as used) */
#define MAX_XRANGES 512
#define LOCAL __attribute__((visibility("hidden")))
#define TLS __attribute__((tls_model("initial-exec")))

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_stack_end;

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static void *(*real_memalign)(size_t, size_t);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);

static void prepare_scan(void);
static void (*real__exit)(int);
static int (*real_main)(int, char **, char **);
static void (*real_exit)(int);
static volatile int ready;              /* the constructor finished */
static TLS __thread int in_hook;        /* this thread is inside one of our hooks */
static int log_fd = -1;
static char log_prefix[512];
static int alloc_stacks = 1;

static unsigned char secrets[MAX_SECRETS][MAX_SECRET_LEN];
static size_t secret_len[MAX_SECRETS];
static int nsecrets;
static size_t min_len = (size_t)-1;

static char exe_path[1024];
static unsigned long n_frees, n_reallocs, n_findings, scanned_bytes;
static unsigned long n_unwinds, n_sites;  /* backtraces taken at allocations; wrapper call sites learnt */

/* --- a lock that needs nothing (no pthread_mutex_init before the constructor) ------------ */

static volatile int table_lock;

static void lock(void)
{
    while (__atomic_exchange_n(&table_lock, 1, __ATOMIC_ACQUIRE))
        sched_yield();
}

static void unlock(void)
{
    __atomic_store_n(&table_lock, 0, __ATOMIC_RELEASE);
}

/* --- output: whole lines with write(2) ---------------------------------------------------- */

struct buf {
    char data[RECORD_MAX];
    size_t len;
};

static void put(struct buf *b, const char *s)
{
    while (*s && b->len < sizeof b->data - 1)
        b->data[b->len++] = *s++;
}

/* A path, which may not break a line of the log. */
static void put_path(struct buf *b, const char *s)
{
    while (*s && b->len < sizeof b->data - 1) {
        char c = *s++;
        b->data[b->len++] = (c == '\n' || c == '\r') ? '?' : c;
    }
}

static void put_u(struct buf *b, unsigned long v)
{
    char tmp[24];
    int i = 0;
    do {
        tmp[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i && b->len < sizeof b->data - 1)
        b->data[b->len++] = tmp[--i];
}

static void put_x(struct buf *b, unsigned long v)
{
    char tmp[24];
    int i = 0;
    do {
        tmp[i++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    put(b, "0x");
    while (i && b->len < sizeof b->data - 1)
        b->data[b->len++] = tmp[--i];
}

static void flush(struct buf *b)
{
    size_t off = 0;
    if (log_fd < 0)
        return;
    while (off < b->len) {
        ssize_t n = write(log_fd, b->data + off, b->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    b->len = 0;
}

/* One frame: `TAG 0xADDR 0xOFFSET MODULE`: the offset is the address in the module's own
 * address space (what llvm-symbolizer takes); "-" when no loaded object holds it. */
static void put_frame(struct buf *b, const char *tag, void *addr)
{
    Dl_info info;
    struct link_map *map = NULL;
    put(b, tag);
    put(b, " ");
    put_x(b, (unsigned long)addr);
    if (dladdr1(addr, &info, (void **)&map, RTLD_DL_LINKMAP) && map != NULL) {
        const char *name = (info.dli_fname && info.dli_fname[0]) ? info.dli_fname : exe_path;
        if (map->l_name == NULL || map->l_name[0] == '\0')
            name = exe_path;  /* the main program: dladdr names it by argv[0] at best */
        put(b, " ");
        put_x(b, (unsigned long)addr - (unsigned long)map->l_addr);
        put(b, " ");
        put_path(b, name);
    } else {
        put(b, " - -");
    }
    put(b, "\n");
}

static void open_log(void)
{
    struct buf b;
    char path[600];
    size_t n = strlen(log_prefix);
    if (n == 0)
        return;
    memcpy(path, log_prefix, n);
    b.len = 0;
    put(&b, ".");
    put_u(&b, (unsigned long)getpid());
    memcpy(path + n, b.data, b.len);
    path[n + b.len] = '\0';
    /* O_APPEND, no O_TRUNC: after an exec the same pid writes a second section. */
    log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    b.len = 0;
    put(&b, "LH-RESIDUE 1 start pid=");
    put_u(&b, (unsigned long)getpid());
    put(&b, " ppid=");
    put_u(&b, (unsigned long)getppid());
    put(&b, " exe=");
    put_path(&b, exe_path);
    put(&b, "\n");
    flush(&b);
}

/* --- the table of live blocks: pointer -> requested size and allocation stack ------------- */

/* Open addressing, linear probing, deletion by backward shift (no tombstones, so probes stay
 * short however many blocks come and go).  16-byte slots: it is touched at every malloc and
 * free, and its cache misses are most of what it costs. */
struct slot {
    uintptr_t ptr;  /* 0: empty */
    uint32_t size;  /* UINT32_MAX: 4 GB or more (the usable size is taken then) */
    uint32_t stack;  /* depot id, 0: not known */
};

static struct slot *table;
static size_t table_cap, table_live;

static void *map_pages(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static size_t hash_ptr(uintptr_t p)
{
    p ^= p >> 33;
    p *= 0xff51afd7ed558ccdULL;
    p ^= p >> 33;
    return (size_t)p;
}

static void table_grow(void)
{
    size_t cap = table_cap ? table_cap * 2 : (1u << 14);
    struct slot *fresh = map_pages(cap * sizeof *fresh);
    if (fresh == NULL)
        return;
    for (size_t i = 0; i < table_cap; i++) {
        if (table[i].ptr) {
            size_t j = hash_ptr(table[i].ptr) & (cap - 1);
            while (fresh[j].ptr)
                j = (j + 1) & (cap - 1);
            fresh[j] = table[i];
        }
    }
    if (table)
        munmap(table, table_cap * sizeof *table);
    table = fresh;
    table_cap = cap;
}

static void table_put(void *ptr, size_t size, uint32_t stack)
{
    uintptr_t p = (uintptr_t)ptr;
    if (p == 0)
        return;
    lock();
    if ((table_live + 1) * 2 > table_cap)
        table_grow();
    if (table_cap && (table_live + 1) * 2 <= table_cap) {
        size_t j = hash_ptr(p) & (table_cap - 1);
        while (table[j].ptr && table[j].ptr != p)
            j = (j + 1) & (table_cap - 1);
        if (table[j].ptr != p)
            table_live++;
        table[j].ptr = p;
        table[j].size = size >= UINT32_MAX ? UINT32_MAX : (uint32_t)size;
        table[j].stack = stack;
    }
    unlock();
}

/* Removes ptr; returns whether it was there (with its size, 0 when not known, and stack). */
static int table_take(void *ptr, size_t *size, uint32_t *stack)
{
    uintptr_t p = (uintptr_t)ptr;
    int found = 0;
    lock();
    if (table_cap) {
        size_t mask = table_cap - 1, j = hash_ptr(p) & mask;
        while (table[j].ptr && table[j].ptr != p)
            j = (j + 1) & mask;
        if (table[j].ptr == p) {
            *size = table[j].size == UINT32_MAX ? 0 : table[j].size;
            *stack = table[j].stack;
            found = 1;
            table_live--;
            /* Backward shift: move later members of the run into the hole when their home
             * slot allows it, so that no probe ever stops early at a false empty slot. */
            size_t hole = j, k = j;
            for (;;) {
                k = (k + 1) & mask;
                if (!table[k].ptr)
                    break;
                size_t home = hash_ptr(table[k].ptr) & mask;
                if (((k - home) & mask) >= ((k - hole) & mask)) {
                    table[hole] = table[k];
                    hole = k;
                }
            }
            table[hole].ptr = 0;
        }
    }
    unlock();
    return found;
}

/* --- the stack depot: each distinct allocation stack stored once ------------------------- */

struct depot_slot {
    uint64_t hash;
    uint32_t start;  /* index into depot_frames */
    uint32_t count;
    uint32_t partial;  /* 1: only the allocator's caller was recorded */
};

static struct depot_slot *depot;
static void **depot_frames;
static uint32_t depot_next = 1, depot_stacks;

static uint32_t depot_put(void **frames, int n, uint32_t partial)
{
    uint64_t h = 1469598103934665603ULL ^ partial;
    for (int i = 0; i < n; i++) {
        h ^= (uint64_t)(uintptr_t)frames[i];
        h *= 1099511628211ULL;
    }
    h |= 1;  /* 0 marks an empty slot */
    uint32_t id = 0;
    lock();
    if (depot != NULL) {
        size_t j = h & (DEPOT_SLOTS - 1);
        for (size_t probes = 0; probes < 64; probes++, j = (j + 1) & (DEPOT_SLOTS - 1)) {
            if (depot[j].hash == h && depot[j].count == (uint32_t)n && depot[j].partial == partial &&
                memcmp(depot_frames + depot[j].start, frames, (size_t)n * sizeof *frames) == 0) {
                id = (uint32_t)j + 1;
                break;
            }
            if (depot[j].hash == 0) {
                if (depot_next + (uint32_t)n < DEPOT_FRAMES && depot_stacks < DEPOT_SLOTS / 2) {
                    memcpy(depot_frames + depot_next, frames, (size_t)n * sizeof *frames);
                    depot[j].start = depot_next;
                    depot[j].count = (uint32_t)n;
                    depot[j].partial = partial;
                    depot[j].hash = h;
                    depot_next += (uint32_t)n;
                    depot_stacks++;
                    id = (uint32_t)j + 1;
                }
                break;
            }
        }
    }
    unlock();
    return id;
}

static void put_depot_stack(struct buf *b, uint32_t id)
{
    if (id == 0 || depot == NULL)
        return;
    struct depot_slot s = depot[id - 1];  /* written once, before the id was handed out */
    if (s.partial)
        put(b, "p caller-only\n");
    for (uint32_t i = 0; i < s.count; i++)
        put_frame(b, "a", depot_frames[s.start + i]);
}

/* The program's own code: the executable segments of every module loaded at start that is not
 * a system library.  An allocation called from there gets its whole stack; one called from
 * inside a system library (most of them: OpenSSL's own) gets its caller only, since unwinding
 * at every malloc costs ten times a plain run (measured: see the report of issue 13). */
#define MAX_OWN 64
static struct {
    uintptr_t lo, hi;
} own[MAX_OWN];
static int nown;

static int system_path(const char *name)
{
    static const char *const prefixes[] = {"/lib/", "/lib64/", "/lib32/", "/usr/lib/", "/usr/lib64/",
                                           "/usr/lib32/", "linux-vdso", "linux-gate"};
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    return 0;
}

static uintptr_t self_lo, self_hi;  /* this interposer's code */

static int add_own(struct dl_phdr_info *info, size_t size, void *self)
{
    (void)size;
    int is_system = info->dlpi_name && info->dlpi_name[0] && system_path(info->dlpi_name);
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if ((uintptr_t)self >= lo && (uintptr_t)self < lo + ph->p_memsz) {
            self_lo = lo, self_hi = lo + ph->p_memsz;
            return 0;
        }
        if (is_system || nown == MAX_OWN)
            continue;
        own[nown].lo = lo;
        own[nown++].hi = lo + ph->p_memsz;
    }
    return 0;
}

/* OpenSSL's allocation wrappers (OPENSSL_zalloc, OPENSSL_strdup, ...): their caller decides. */
#define MAX_WRAPPERS 16
static struct {
    uintptr_t lo, hi;
} wrappers[MAX_WRAPPERS];
static int nwrappers;

static void find_wrappers(void)
{
    static const char *const names[] = {"CRYPTO_malloc", "CRYPTO_zalloc", "CRYPTO_realloc", "CRYPTO_clear_realloc",
                                        "CRYPTO_strdup", "CRYPTO_strndup", "CRYPTO_memdup", "CRYPTO_secure_malloc",
                                        "CRYPTO_secure_zalloc"};
    for (size_t i = 0; i < sizeof names / sizeof *names && nwrappers < MAX_WRAPPERS; i++) {
        void *fn = dlsym(RTLD_DEFAULT, names[i]);
        Dl_info info;
        const ElfW(Sym) *sym = NULL;
        if (fn && dladdr1(fn, &info, (void **)&sym, RTLD_DL_SYMENT) && sym && sym->st_size) {
            wrappers[nwrappers].lo = (uintptr_t)fn;
            wrappers[nwrappers++].hi = (uintptr_t)fn + sym->st_size;
        }
    }
}

static int in_wrapper(uintptr_t a)
{
    for (int i = 0; i < nwrappers; i++)
        if (a >= wrappers[i].lo && a < wrappers[i].hi)
            return 1;
    return 0;
}

static int is_own(uintptr_t a)
{
    for (int i = 0; i < nown; i++)
        if (a >= own[i].lo && a < own[i].hi)
            return 1;
    return 0;
}

/* The allocation stack of the block being made now (our own frames are dropped by the harness). */
/* Call sites inside the wrappers, each with where its wrapper's own return address lies above
 * the wrapper's stack pointer at that call: constant for a given call site (the wrapper's frame
 * at that instruction is fixed), learnt once with the unwinder, then read in one load. */
#define SITES 1024
static struct {
    uintptr_t site;
    intptr_t offset;  /* -1: could not be learnt */
} sites[SITES];

static intptr_t site_offset(uintptr_t site, uintptr_t sp)
{
    size_t h = hash_ptr(site) & (SITES - 1);
    for (int probe = 0; probe < 16; probe++, h = (h + 1) & (SITES - 1)) {
        uintptr_t known = __atomic_load_n(&sites[h].site, __ATOMIC_ACQUIRE);
        if (known == site)
            return sites[h].offset;
        if (known == 0)
            break;
    }
    void *frames[8];
    intptr_t offset = -1;
    int n = backtrace(frames, 8);
    __atomic_add_fetch(&n_sites, 1, __ATOMIC_RELAXED);
    for (int j = 0; j + 1 < n; j++) {
        if ((uintptr_t)frames[j] != site)
            continue;
        uintptr_t wanted = (uintptr_t)frames[j + 1];
        for (uintptr_t w = sp; w < sp + 512; w += 8)  /* the slot is in the wrapper's frame, just above */
            if (*(uintptr_t *)w == wanted) {
                offset = (intptr_t)(w - sp);
                break;
            }
        break;
    }
    lock();
    h = hash_ptr(site) & (SITES - 1);
    for (int probe = 0; probe < 16; probe++, h = (h + 1) & (SITES - 1))
        if (sites[h].site == 0 || sites[h].site == site) {
            sites[h].offset = offset;
            __atomic_store_n(&sites[h].site, site, __ATOMIC_RELEASE);
            break;
        }
    unlock();
    return offset;
}

#define CALLER_CACHE 64

static uint32_t alloc_stack(void *caller, uintptr_t caller_sp)
{
    static TLS __thread void *last_caller[CALLER_CACHE];
    static TLS __thread uint32_t last_id[CALLER_CACHE];
    void *frames[MAX_FRAMES];
    if (alloc_stacks == 0)
        return 0;
    if (alloc_stacks == 1 && !is_own((uintptr_t)caller)) {
        if (!in_wrapper((uintptr_t)caller)) {
            /* A few callers make most allocations: a small per-thread cache spares the depot. */
            size_t h = hash_ptr((uintptr_t)caller) & (CALLER_CACHE - 1);
            if (last_caller[h] != caller || last_id[h] == 0) {
                last_id[h] = depot_put(&caller, 1, 1);
                last_caller[h] = caller;
            }
            return last_id[h];
        }
        /* Called through OPENSSL_zalloc & co: the wrapper's caller decides. */
        intptr_t offset = site_offset((uintptr_t)caller, caller_sp);
        if (offset >= 0) {
            void *outer = *(void **)(caller_sp + (uintptr_t)offset);
            if (!in_wrapper((uintptr_t)outer)) {
                if (!is_own((uintptr_t)outer))
                    return depot_put(&outer, 1, 1);  /* inside the library (EVP_CIPHER_CTX_new ...) */
                __atomic_add_fetch(&n_unwinds, 1, __ATOMIC_RELAXED);
                int n = backtrace(frames, MAX_FRAMES);
                return n > 0 ? depot_put(frames, n, 0) : 0;
            }
        }
        /* A wrapper calling a wrapper (OPENSSL_strdup): a few frames, the unwinder stops there. */
        __atomic_add_fetch(&n_unwinds, 1, __ATOMIC_RELAXED);
        int n = backtrace(frames, 8), i = 0;
        while (i < n && (((uintptr_t)frames[i] >= self_lo && (uintptr_t)frames[i] < self_hi) ||
                         in_wrapper((uintptr_t)frames[i])))
            i++;
        if (i == n)
            return depot_put(&caller, 1, 1);
        if (!is_own((uintptr_t)frames[i]))
            return depot_put(&frames[i], 1, 1);  /* inside the library (EVP_CIPHER_CTX_new ...) */
    }
    __atomic_add_fetch(&n_unwinds, 1, __ATOMIC_RELAXED);
    int n = backtrace(frames, MAX_FRAMES);
    return n > 0 ? depot_put(frames, n, 0) : 0;
}

/* --- the search ---------------------------------------------------------------------------- */

/* The first canary found in [p, p+size): its index, and its offset in *offset; -1 if none. */
static int find_secret(const unsigned char *p, size_t size, size_t *offset)
{
    if (size < min_len)
        return -1;
    scanned_bytes += size;
    for (int i = 0; i < nsecrets; i++) {
        const unsigned char *hit = memmem(p, size, secrets[i], secret_len[i]);
        if (hit) {
            *offset = (size_t)(hit - p);
            return i;
        }
    }
    return -1;
}

/* Findings are rare: one at a time, built in one static buffer and written with one write(2).
 * Not the table's lock: dladdr1 takes the loader's lock, and a thread in dlopen (holding it)
 * allocates, so holding the table's lock across dladdr1 could deadlock. */
static volatile int report_lock;

static void report_begin(void)
{
    while (__atomic_exchange_n(&report_lock, 1, __ATOMIC_ACQUIRE))
        sched_yield();
}

static void report_end(void)
{
    __atomic_store_n(&report_lock, 0, __ATOMIC_RELEASE);
}

static struct buf record_buf;

static void report_block(const char *kind, size_t size, int secret, size_t offset, uint32_t stack)
{
    void *frames[MAX_FRAMES + 1];
    int n = backtrace(frames, MAX_FRAMES + 1);
    struct buf *b = &record_buf;
    report_begin();
    n_findings++;
    b->len = 0;
    put(b, "R kind=");
    put(b, kind);
    put(b, " bytes=");
    put_u(b, size);
    put(b, " secret=");
    put_u(b, (unsigned long)secret);
    put(b, " secret_bytes=");
    put_u(b, secret_len[secret]);
    put(b, " offset=");
    put_u(b, offset);
    put(b, " tid=");
    put_u(b, (unsigned long)gettid());
    put(b, "\n");
    /* frames[0] is our hook itself (free / realloc): kept, as valgrind shows its replacement. */
    for (int i = 0; i < n && b->len < RECORD_MAX - 512; i++)
        put_frame(b, "f", frames[i]);
    put_depot_stack(b, stack);
    put(b, "E\n");
    flush(b);
    report_end();
}

/* --- the hooks ------------------------------------------------------------------------------ */

static void check_freed(void *ptr, const char *kind)
{
    size_t size = 0, offset = 0;
    uint32_t stack = 0;
    if (!table_take(ptr, &size, &stack) || size == 0)
        size = malloc_usable_size(ptr);  /* made before we were ready, or by a hook we skipped */
    int secret = find_secret(ptr, size, &offset);
    if (secret >= 0)
        report_block(kind, size, secret, offset, stack);
}

void free(void *ptr)
{
    if (ptr == NULL)
        return;
    if (!ready || in_hook) {
        (real_free ? real_free : __libc_free)(ptr);
        return;
    }
    in_hook = 1;
    __atomic_add_fetch(&n_frees, 1, __ATOMIC_RELAXED);
    check_freed(ptr, "free");
    in_hook = 0;
    real_free(ptr);
}

void cfree(void *ptr)
{
    free(ptr);
}

/* Where the hook was called from, and the caller's stack pointer at that call (the .so is built
 * with frame pointers: the hook's frame address + 16). */
#define CALLER __builtin_return_address(0), (uintptr_t)__builtin_frame_address(0) + 16

static void *record(void *p, size_t size, void *caller, uintptr_t caller_sp)
{
    if (p != NULL && ready && !in_hook) {
        in_hook = 1;
        table_put(p, size, alloc_stack(caller, caller_sp));
        in_hook = 0;
    }
    return p;
}

void *malloc(size_t size)
{
    void *p = (real_malloc ? real_malloc : __libc_malloc)(size);
    return record(p, size, CALLER);
}

void *calloc(size_t n, size_t size)
{
    void *p = (real_calloc ? real_calloc : __libc_calloc)(n, size);
    return record(p, n * size, CALLER);  /* calloc failed on overflow, so the product is whole here */
}

void *realloc(void *ptr, size_t size)
{
    if (ptr == NULL)
        return record((real_malloc ? real_malloc : __libc_malloc)(size), size, CALLER);
    if (!ready || in_hook)
        return (real_realloc ? real_realloc : __libc_realloc)(ptr, size);
    if (size == 0) {  /* glibc frees the block and returns NULL */
        free(ptr);
        return NULL;
    }
    in_hook = 1;
    __atomic_add_fetch(&n_reallocs, 1, __ATOMIC_RELAXED);
    size_t old_size = 0, offset = 0;
    uint32_t stack = 0;
    if (!table_take(ptr, &old_size, &stack) || old_size == 0)
        old_size = malloc_usable_size(ptr);
    int secret = find_secret(ptr, old_size, &offset);
    void *fresh = real_realloc(ptr, size);
    if (fresh == NULL) {
        table_put(ptr, old_size, stack);  /* the old block is still the program's */
    } else {
        if (fresh != ptr && secret >= 0)
            report_block("realloc", old_size, secret, offset, stack);
        table_put(fresh, size, alloc_stack(CALLER));
    }
    in_hook = 0;
    return fresh;
}

void *reallocarray(void *ptr, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(ptr, total);
}

void *memalign(size_t align, size_t size)
{
    void *p = (real_memalign ? real_memalign : __libc_memalign)(align, size);
    return record(p, size, CALLER);
}

void *aligned_alloc(size_t align, size_t size)
{
    void *p = real_aligned_alloc ? real_aligned_alloc(align, size) : __libc_memalign(align, size);
    return record(p, size, CALLER);
}

int posix_memalign(void **out, size_t align, size_t size)
{
    if (real_posix_memalign == NULL) {
        void *p = __libc_memalign(align, size);
        if (p == NULL)
            return ENOMEM;
        *out = p;
        return 0;
    }
    int rc = real_posix_memalign(out, align, size);
    if (rc == 0)
        record(*out, size, CALLER);
    return rc;
}

/* --- start, fork, exit ---------------------------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* "" when the list is good, else what is wrong with it. */
static const char *parse_secrets(const char *text)
{
    nsecrets = 0;
    while (text && *text) {
        const char *end = strchr(text, ',');
        size_t n = end ? (size_t)(end - text) : strlen(text);
        if (n) {
            if (nsecrets == MAX_SECRETS)
                return "more than 64 secrets";
            if (n % 2)
                return "a secret has an odd number of hex digits";
            if (n / 2 < MIN_SECRET_LEN)
                return "a secret is shorter than 8 bytes";
            if (n / 2 > MAX_SECRET_LEN)
                return "a secret is longer than 1024 bytes";
            for (size_t i = 0; i < n; i += 2) {
                int hi = hexval(text[i]), lo = hexval(text[i + 1]);
                if (hi < 0 || lo < 0)
                    return "a secret is not hex";
                secrets[nsecrets][i / 2] = (unsigned char)(hi * 16 + lo);
            }
            secret_len[nsecrets] = n / 2;
            if (n / 2 < min_len)
                min_len = n / 2;
            nsecrets++;
        }
        text = end ? end + 1 : NULL;
    }
    return "";
}

static void write_config(void)
{
    struct buf b;
    b.len = 0;
    put(&b, "LH-RESIDUE config secrets=");
    put_u(&b, (unsigned long)nsecrets);
    put(&b, " alloc_stacks=");
    put(&b, alloc_stacks == 2 ? "all" : alloc_stacks == 1 ? "own" : "none");
    put(&b, "\n");
    flush(&b);
}

static void before_fork(void)
{
    lock();
}

static void after_fork_parent(void)
{
    unlock();
}

static void after_fork_child(void)
{
    unlock();
    if (log_fd >= 0)
        close(log_fd);
    log_fd = -1;
    n_frees = n_reallocs = n_findings = scanned_bytes = n_unwinds = n_sites = 0;
    open_log();  /* the child's own file, by its own pid */
    write_config();
}

__attribute__((constructor(101))) static void residue_init(void)
{
    in_hook = 1;
    real_malloc = dlsym(RTLD_NEXT, "malloc");
    real_calloc = dlsym(RTLD_NEXT, "calloc");
    real_realloc = dlsym(RTLD_NEXT, "realloc");
    real_free = dlsym(RTLD_NEXT, "free");
    real_memalign = dlsym(RTLD_NEXT, "memalign");
    real_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
    if (!real_malloc || !real_calloc || !real_realloc || !real_free) {
        in_hook = 0;
        return;  /* no start line: the harness sees the checker did not run */
    }
    ssize_t n = readlink("/proc/self/exe", exe_path, sizeof exe_path - 1);
    exe_path[n > 0 ? n : 0] = '\0';
    /* The harness's own wrapper (lh-reaper) is not the program: it passes through, writes nothing. */
    const char *skip = getenv("LH_RESIDUE_SKIP_EXE");
    size_t exe_len = strlen(exe_path);
    while (skip && *skip && exe_len) {
        const char *end = strchr(skip, ':');
        size_t len = end ? (size_t)(end - skip) : strlen(skip);
        if (len == exe_len && strncmp(skip, exe_path, len) == 0) {
            in_hook = 0;
            return;
        }
        skip = end ? end + 1 : NULL;
    }
    const char *prefix = getenv("LH_RESIDUE_LOG");
    if (prefix == NULL || !*prefix || strlen(prefix) >= sizeof log_prefix) {
        in_hook = 0;
        return;
    }
    strcpy(log_prefix, prefix);
    /* "own" (the default): whole stacks for the program's own allocations, the caller for the
     * rest; "all": whole stacks for every allocation; "0": none. */
    const char *stacks = getenv("LH_RESIDUE_ALLOC_STACKS");
    alloc_stacks = stacks == NULL ? 1 : strcmp(stacks, "0") == 0 ? 0 : strcmp(stacks, "all") == 0 ? 2 : 1;
    dl_iterate_phdr(add_own, (void *)residue_init);
    find_wrappers();
    const char *problem = parse_secrets(getenv("LH_RESIDUE_SECRETS"));
    open_log();
    struct buf b;
    b.len = 0;
    if (*problem) {
        put(&b, "LH-RESIDUE error LH_RESIDUE_SECRETS: ");
        put(&b, problem);
        put(&b, "\n");
        flush(&b);
        in_hook = 0;
        return;  /* not ready: nothing checked, and the log says why */
    }
    if (alloc_stacks) {
        depot = map_pages((size_t)DEPOT_SLOTS * sizeof *depot);
        depot_frames = map_pages((size_t)DEPOT_FRAMES * sizeof *depot_frames);
        if (depot == NULL || depot_frames == NULL)
            alloc_stacks = 0;
    }
    void *warm[4];
    backtrace(warm, 4);  /* loads libgcc_s now, while its malloc calls pass straight through */
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
    real_exit = (void (*)(int))dlsym(RTLD_NEXT, "exit");
    real__exit = (void (*)(int))dlsym(RTLD_NEXT, "_exit");
    prepare_scan();
    write_config();
    ready = 1;
    in_hook = 0;
}

/* Executable mappings, read from /proc/self/maps at exit: a word on the stack that points just
 * past a call instruction in one of them is a saved return address. */
static struct {
    uintptr_t lo, hi;
} xranges[MAX_XRANGES];
static int nxranges;
static uintptr_t stack_lo, stack_hi;

static uintptr_t parse_hex(const char **s)
{
    uintptr_t v = 0;
    int d;
    while ((d = hexval(**s)) >= 0) {
        v = v * 16 + (uintptr_t)d;
        (*s)++;
    }
    return v;
}

static void read_maps(void)
{
    static char data[1 << 18];
    size_t len = 0;
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    for (;;) {
        ssize_t n = read(fd, data + len, sizeof data - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    data[len] = '\0';
    for (const char *line = data; *line;) {
        const char *s = line;
        const char *eol = strchr(line, '\n');
        uintptr_t lo = parse_hex(&s);
        s++;
        uintptr_t hi = parse_hex(&s);
        s++;
        int readable = s[0] == 'r', exec = s[2] == 'x';
        const char *name = memmem(line, eol ? (size_t)(eol - line) : strlen(line), "[stack]", 7);
        if (name && readable)
            stack_lo = lo, stack_hi = hi;
        else if (exec && readable && nxranges < MAX_XRANGES)
            xranges[nxranges].lo = lo, xranges[nxranges++].hi = hi;
        if (!eol)
            break;
        line = eol + 1;
    }
}

static int in_code(uintptr_t a, uintptr_t before)
{
    for (int i = 0; i < nxranges; i++)
        if (a >= xranges[i].lo + before && a < xranges[i].hi)
            return 1;
    return 0;
}

/* The frame that held a stack secret at `at`: the nearest saved return address above it
 * (a word pointing just past a `call rel32` or an indirect call), and the called function. */
static void report_stack(uintptr_t at, int secret, uintptr_t sp)
{
    struct buf *b = &record_buf;
    b->len = 0;
    put(b, "R kind=stack bytes=");
    put_u(b, secret_len[secret]);
    put(b, " secret=");
    put_u(b, (unsigned long)secret);
    put(b, " secret_bytes=");
    put_u(b, secret_len[secret]);
    put(b, " offset=");
    put_u(b, (unsigned long)(stack_hi - at));
    put(b, " dead=");
    put_u(b, at < sp ? 1 : 0);
    put(b, "\n");
    /* The nearest word above it that points just past a call instruction is a saved return
     * address: into the caller of the function whose frame held the buffer (or of a later call
     * made from the same depth, which overwrote that slot: the caller is then still the one
     * whose frame lies above, the callee may be any).  So only the caller is given. */
    /* Stale code pointers in the dead frame's unset slots look like return addresses too: most
     * are left by the loader and libc start-up, which used this stack before main.  So the
     * nearest candidate into the program's own code (or our main wrapper: main's own frame) is
     * taken; else the nearest one (a frame of a library called from a library). */
    uintptr_t first = 0, chosen = 0;
    uintptr_t w = (at + 7) & ~(uintptr_t)7;
    for (; w + 8 <= stack_hi && w < at + 65536 && !chosen; w += 8) {
        uintptr_t ret = *(uintptr_t *)w;
        if (!in_code(ret, 7))
            continue;
        const unsigned char *c = (const unsigned char *)ret;
        if (!(c[-5] == 0xe8 || (c[-2] == 0xff && (c[-1] & 0x38) == 0x10) ||
              (c[-3] == 0xff && (c[-2] & 0x38) == 0x10) || (c[-6] == 0xff && (c[-5] & 0x38) == 0x10) ||
              (c[-7] == 0xff && (c[-6] & 0x38) == 0x10)))
            continue;
        if (is_own(ret) || (ret >= self_lo && ret < self_hi))
            chosen = ret;
        else if (!first)
            first = ret;
    }
    if (!chosen)
        chosen = first;
    if (chosen) {
        if (chosen >= self_lo && chosen < self_hi && real_main != NULL)
            put_frame(b, "m", (void *)real_main);  /* our main wrapper's call: main's own frame held it */
        else
            put_frame(b, "f", (void *)chosen);
    }
    put(b, "E\n");
    n_findings++;
    flush(b);
}

/* The scan runs on a stack of its own: any call made on the main stack at this point would
 * overwrite the very dead frames it looks at (a lazily bound PLT call alone saves about 1 KB of
 * registers there, which is why the harness runs with LD_BIND_NOW=1).  swapcontext only pushes
 * its return address. */
static ucontext_t scan_caller, scan_ctx;
static char scan_stack_mem[1 << 16] __attribute__((aligned(16)));
static volatile int stack_scanned;  /* 0: not yet; else how: 1 main returned, 2 exit(), 3 destructor */
static int scan_ready;

static void scan_stack(void)
{
    uintptr_t sp = (uintptr_t)scan_caller.uc_mcontext.gregs[REG_RSP];
    read_maps();
    if (stack_lo == 0 || sp < stack_lo || sp >= stack_hi)
        return;
    /* Up to where the process started: above it only argv, the environment and auxv. */
    uintptr_t top = (uintptr_t)__libc_stack_end;
    if (top <= sp || top > stack_hi)
        top = stack_hi;
    const unsigned char *p = (const unsigned char *)stack_lo;
    size_t size = top - stack_lo;
    for (int i = 0; i < nsecrets; i++) {
        size_t from = 0;
        while (from + secret_len[i] <= size) {
            const unsigned char *hit = memmem(p + from, size - from, secrets[i], secret_len[i]);
            if (!hit)
                break;
            report_stack((uintptr_t)hit, i, sp);
            from = (size_t)(hit - p) + secret_len[i];
        }
    }
}

/* Scans the main thread's stack once, from the scan stack; `how` says when. */
#define SCAN_STACK_NOW(how)                                                                  \
    do {                                                                                     \
        if (ready && scan_ready && !stack_scanned && gettid() == getpid()) {                 \
            stack_scanned = (how);                                                           \
            swapcontext(&scan_caller, &scan_ctx);                                            \
        }                                                                                    \
    } while (0)

static void scan_entry(void)
{
    int saved = in_hook;
    in_hook = 1;
    scan_stack();
    in_hook = saved;
}

static void prepare_scan(void)
{
    if (getcontext(&scan_ctx) != 0)
        return;
    scan_ctx.uc_stack.ss_sp = scan_stack_mem;
    scan_ctx.uc_stack.ss_size = sizeof scan_stack_mem;
    scan_ctx.uc_link = &scan_caller;
    makecontext(&scan_ctx, scan_entry, 0);
    scan_ready = 1;
}

/* main returns into __libc_start_call_main, which calls exit() inside libc (not through a
 * symbol we can interpose): so main is wrapped, and the stack is scanned the moment it returns. */
static int main_wrapper(int argc, char **argv, char **envp)
{
    int rc = real_main(argc, argv, envp);
    SCAN_STACK_NOW(1);
    return rc;
}

typedef int (*start_main_fn)(int (*)(int, char **, char **), int, char **, void (*)(void), void (*)(void),
                             void (*)(void), void *);

int __libc_start_main(int (*main)(int, char **, char **), int argc, char **argv, void (*init)(void),
                      void (*fini)(void), void (*rtld_fini)(void), void *stack_end)
{
    start_main_fn next = (start_main_fn)dlsym(RTLD_NEXT, "__libc_start_main");
    real_main = main;
    return next(main_wrapper, argc, argv, init, fini, rtld_fini, stack_end);
}

void exit(int status)
{
    SCAN_STACK_NOW(2);
    if (real_exit == NULL)
        real_exit = (void (*)(int))dlsym(RTLD_NEXT, "exit");
    real_exit(status);
    __builtin_unreachable();
}

static int ended;  /* the end line is written */

static void write_end(const char *how)
{
    struct buf b;
    if (ended || log_fd < 0)
        return;
    ended = 1;
    b.len = 0;
    put(&b, "LH-RESIDUE end pid=");
    put_u(&b, (unsigned long)getpid());
    put(&b, " frees=");
    put_u(&b, n_frees);
    put(&b, " reallocs=");
    put_u(&b, n_reallocs);
    put(&b, " scanned=");
    put_u(&b, scanned_bytes);
    put(&b, " findings=");
    put_u(&b, n_findings);
    put(&b, " live=");
    put_u(&b, (unsigned long)table_live);
    put(&b, " stacks=");
    put_u(&b, (unsigned long)depot_stacks);
    put(&b, " unwinds=");
    put_u(&b, n_unwinds);
    put(&b, " sites=");
    put_u(&b, n_sites);
    put(&b, " stack_scan=");
    put(&b, stack_scanned == 1 ? "main-returned" : stack_scanned == 2 ? "exit" : stack_scanned == 3 ? "destructor"
            : stack_scanned == 4 ? "_exit" : "none");
    put(&b, " by=");
    put(&b, how);
    put(&b, "\n");
    flush(&b);
}

/* _exit() (a shell, a forked child) skips the destructors: the stack is scanned and the log
 * closed here.  A raw exit_group system call (the Go runtime) or a signal cannot be seen: such a
 * process leaves no end line, and the harness does not call it checked. */
static void exit_now(int status) __attribute__((noreturn));
static void exit_now(int status)
{
    if (real__exit == NULL)
        real__exit = (void (*)(int))dlsym(RTLD_NEXT, "_exit");
    real__exit(status);
    __builtin_unreachable();
}

void _exit(int status)
{
    SCAN_STACK_NOW(4);
    if (ready && !in_hook) {
        in_hook = 1;
        write_end("_exit");
    }
    exit_now(status);
}

void _Exit(int status)
{
    SCAN_STACK_NOW(4);
    if (ready && !in_hook) {
        in_hook = 1;
        write_end("_exit");
    }
    exit_now(status);
}

__attribute__((destructor(101))) static void residue_fini(void)
{
    if (!ready || log_fd < 0)
        return;
    SCAN_STACK_NOW(3);  /* neither main returned nor exit() was called: exit frames may have overwritten secrets */
    in_hook = 1;
    write_end("exit");
    in_hook = 0;
    /* Frees after this point (other destructors, libc's own clean-up) are still checked: their
     * records come after the end line, and the harness reads them too. */
}
