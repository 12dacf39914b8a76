/* memory_bugs.c: one small program, one memory bug per mode (argv[1]), for the parser tests.
 * Every mode also leaks the same three ways, so leak parsing is tested beside each error. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

struct node { struct node *next; char pad[24]; };

__attribute__((noinline)) static void *leak_direct(void) { return malloc(100); }

__attribute__((noinline)) static void leak_cycle(void)
{
    struct node *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    a->next = b;
    b->next = a;
}

__attribute__((noinline)) static void leak_tree(void)
{
    struct node *a = malloc(sizeof *a);
    a->next = malloc(sizeof *a);
    a->next->next = NULL;
}

__attribute__((noinline)) static int use_after_free(void)
{
    int *volatile p = malloc(16);
    p[0] = 1;
    free(p);
    return p[1];
}

__attribute__((noinline)) static void double_free(void)
{
    char *volatile p = malloc(8);
    free(p);
    free(p);
}

__attribute__((noinline)) static int heap_overflow(int n)
{
    char *volatile p = malloc(10);
    int r = p[n];
    free(p);
    return r;
}

__attribute__((noinline)) static void bad_free(void)
{
    char *volatile p = malloc(16);
    free(p + 4);
}

__attribute__((noinline)) static int null_deref(int *volatile p) { return *p; }

__attribute__((noinline)) static int overflow_int(int x) { return x + 1; }

static int shared_counter;
static void *racer(void *arg) { (void)arg; for (int i = 0; i < 1000; i++) shared_counter++; return NULL; }

__attribute__((noinline)) static void data_race(void)
{
    pthread_t t1, t2;
    pthread_create(&t1, NULL, racer, NULL);
    pthread_create(&t2, NULL, racer, NULL);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
}

__attribute__((noinline)) static void child_leaks_then_exits(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        void *volatile p = malloc(77);
        p = NULL;
        _exit(0);
    }
    waitpid(pid, NULL, 0);
}

static void *thread_leaks(void *arg)
{
    void *volatile p = malloc(55);
    (void)arg;
    p = NULL;
    return NULL;
}

__attribute__((noinline)) static void leak_in_thread(void)
{
    pthread_t t;
    pthread_create(&t, NULL, thread_leaks, NULL);
    pthread_join(t, NULL);
}

__attribute__((noinline)) static long read_all_stdin(void)
{
    char buf[256];
    long total = 0;
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0)
        total += (long)n;
    return total;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "leaks";
    void *volatile keep = leak_direct();
    keep = NULL;
    leak_cycle();
    leak_tree();
    if (!strcmp(mode, "uaf")) return use_after_free();
    if (!strcmp(mode, "double-free")) double_free();
    if (!strcmp(mode, "overflow")) return heap_overflow(argc + 8);   /* index 10 of 10 bytes */
    if (!strcmp(mode, "bad-free")) bad_free();
    if (!strcmp(mode, "segv")) return null_deref(NULL);
    if (!strcmp(mode, "ubsan")) return overflow_int(argc > 0 ? 2147483647 : 0) < 0;
    if (!strcmp(mode, "race")) data_race();
    if (!strcmp(mode, "fork")) child_leaks_then_exits();
    if (!strcmp(mode, "hang")) { use_after_free(); fflush(stdout); sleep(60); }
    if (!strcmp(mode, "sleep")) sleep(60);
    if (!strcmp(mode, "thread-leak")) leak_in_thread();
    if (!strcmp(mode, "stdin")) printf("read %ld bytes\n", read_all_stdin());
    return 0;
}
