/* Issue 16 item 1: two threads bump one counter with no lock, a data race helgrind reports
 * (in bump(), reached from main and from the second thread). */
#include <pthread.h>
#include <stdio.h>

static int counter;

__attribute__((noinline)) static void bump(void)
{
    counter++; /* BUG: no lock */
}

static void *worker(void *arg)
{
    (void)arg;
    bump();
    return NULL;
}

int main(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0)
        return 2;
    bump();
    pthread_join(t, NULL);
    printf("%d\n", counter);
    return 0;
}
