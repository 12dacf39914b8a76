/* Waits while a file named "hold" exists in its working folder (up to a minute), then loses
 * 4321 bytes in make_leak().  A test kills it while it waits, removes "hold" and runs it again
 * with the very same inputs: the second run must really run. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *volatile keep;

__attribute__((noinline)) static void make_leak(void)
{
    char *p = malloc(4321);
    memset(p, 1, 4321);
    keep = p;
    keep = NULL;
}

int main(void)
{
    for (int i = 0; i < 600 && access("hold", F_OK) == 0; i++)
        usleep(100000);
    make_leak();
    return 0;
}
