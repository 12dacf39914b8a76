/* Loses 4321 bytes, then leaves through _exit(): LeakSanitizer's exit-time check never runs. */
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
    make_leak();
    _exit(0);
}
