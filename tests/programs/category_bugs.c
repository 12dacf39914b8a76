/* category_bugs.c: bugs whose category, place and signature must come out the same from
 * memcheck and from each sanitizer (issue 10): NULL-offset reads and writes, a free of an
 * address nobody allocated, a zero-byte leak, several UBSan reports in a row, a race on a heap
 * block, an uninitialised heap read, a leak reported after main left by pthread_exit, a read
 * past a stack array, a call through a NULL function pointer, and beside them the true
 * use-after-free and double free, and a free of an address inside an already freed block.
 * One mode per argv[1]; every bug sits in its own noinline function so that the function and
 * line the parsers report can be checked. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct record { long id; int value; };

__attribute__((noinline)) static int null_offset_read(struct record *volatile r)
{
    return r->value;                                    /* NULL_READ_LINE */
}

__attribute__((noinline)) static void null_offset_write(struct record *volatile r)
{
    r->value = 7;                                       /* NULL_WRITE_LINE */
}

static volatile uintptr_t nowhere = 0x87654321;

__attribute__((noinline)) static void wild_free(void)
{
    free((void *)nowhere);                              /* WILD_FREE_LINE */
}

__attribute__((noinline)) static void leak_zero(void)
{
    void *volatile p = malloc(0);                       /* LEAK_ZERO_LINE */
    p = NULL;
}

__attribute__((noinline)) static int ub_twice(int x, int shift)
{
    int a = x + 1;                                      /* UB_FIRST_LINE */
    int b = 1 << shift;                                 /* UB_SECOND_LINE */
    return a + b;
}

static int *heap_counter;

static void *heap_racer(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++)
        (*heap_counter)++;                              /* RACE_LINE */
    return NULL;
}

__attribute__((noinline)) static void heap_race(void)
{
    pthread_t t1, t2;
    heap_counter = malloc(sizeof *heap_counter);        /* RACE_ALLOC_LINE */
    *heap_counter = 0;
    pthread_create(&t1, NULL, heap_racer, NULL);
    pthread_create(&t2, NULL, heap_racer, NULL);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    free(heap_counter);
}

__attribute__((noinline)) static int uninit_heap(void)
{
    int *volatile p = malloc(4 * sizeof *p);            /* UNINIT_ALLOC_LINE */
    int r = 0;
    if (p[2] > 0)                                       /* UNINIT_USE_LINE */
        r = 1;
    free(p);
    return r;
}

__attribute__((noinline)) static void leak_before_thread_exit(void)
{
    void *volatile p = malloc(33);                      /* EXIT_LEAK_LINE */
    p = NULL;
}

__attribute__((noinline)) static int stack_overflow(int n)
{
    volatile char buf[8] = {0};
    return buf[n];                                      /* STACK_OVERFLOW_LINE */
}

__attribute__((noinline)) static int use_after_free(void)
{
    int *volatile p = malloc(4 * sizeof *p);
    free(p);
    return p[1];                                        /* UAF_LINE */
}

__attribute__((noinline)) static void double_free(void)
{
    char *volatile p = malloc(8);
    free(p);
    free(p);                                            /* DOUBLE_FREE_LINE */
}

__attribute__((noinline)) static void free_inside_freed(void)
{
    char *volatile p = malloc(16);
    free(p);
    free(p + 4);                                        /* FREE_INSIDE_FREED_LINE */
}

typedef int (*callback)(void);

__attribute__((noinline)) static int call_null(callback volatile f)
{
    return f();
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "null-read")) return null_offset_read(NULL);
    if (!strcmp(mode, "null-write")) { null_offset_write(NULL); return 0; }
    if (!strcmp(mode, "wild-free")) { wild_free(); return 0; }
    if (!strcmp(mode, "leak-zero")) { leak_zero(); return 0; }
    if (!strcmp(mode, "ub-twice")) return ub_twice(argc > 0 ? 2147483647 : 0, argc + 40) != 0;
    if (!strcmp(mode, "heap-race")) { heap_race(); return 0; }
    if (!strcmp(mode, "uninit")) return uninit_heap();
    if (!strcmp(mode, "pthread-exit")) { leak_before_thread_exit(); pthread_exit(NULL); }
    if (!strcmp(mode, "stack-overflow")) return stack_overflow(argc + 6);  /* index 8 of 8 */
    if (!strcmp(mode, "uaf")) return use_after_free();
    if (!strcmp(mode, "double-free")) { double_free(); return 0; }
    if (!strcmp(mode, "free-inside-freed")) { free_inside_freed(); return 0; }
    if (!strcmp(mode, "null-call")) return call_null(NULL);            /* NULL_CALL_LINE */
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
