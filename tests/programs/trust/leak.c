/* Loses one block of 4321 bytes, allocated in make_leak(): a definite leak every checker must report. */
#include <stdlib.h>
#include <string.h>

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
    make_leak();
    return 0;
}
