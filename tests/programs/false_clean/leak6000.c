/* Issue 16 items 3 and 4: loses one block of 6000 bytes (in make_leak).  The tests build it
 * with -static, where malloc is linked into the binary: valgrind cannot replace it and sees no
 * heap block at all, and an LD_PRELOAD interposer cannot load; and dynamically, as a setuid
 * child that valgrind refuses to run. */
#include <stdlib.h>
#include <string.h>

static char *volatile keep;

__attribute__((noinline)) static void make_leak(void)
{
    char *p = malloc(6000);
    memset(p, 1, 6000);
    keep = p;
    keep = NULL;
}

int main(void)
{
    make_leak();
    return 0;
}
