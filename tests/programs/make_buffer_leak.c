/* A 48-byte leak in make_buffer (malloc on line 8): tests/test_docker.py and test_packaging.py. */
#include <stdlib.h>
#include <string.h>

/* 48 bytes, never freed: a definite leak allocated in make_buffer. */
static void make_buffer(void)
{
    char *p = malloc(48);
    memset(p, 'x', 48);
}

int main(void)
{
    make_buffer();
    return 0;
}
