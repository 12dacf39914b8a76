/* A shared library built twice by the tests: plainly (foo_alloc frees its 1234 bytes) and
 * with -DFOO_LEAKS (it loses them).  Same name, same interface: only the loader picks one. */
#include <stdlib.h>
#include <string.h>

static void *volatile sink;

__attribute__((noinline)) void foo_alloc(void)
{
    char *p = malloc(1234);
    memset(p, 7, 1234);
    sink = p;
    sink = NULL;
#ifndef FOO_LEAKS
    free(p);
#endif
}
