/* Loses one block whose size it reads from ./size.txt (a file no argument names: the result
 * cache knows of it only through the recorder of what a program reads). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *volatile keep;

__attribute__((noinline)) static void make_leak(size_t size)
{
    char *p = malloc(size);
    memset(p, 1, size);
    keep = p;
    keep = NULL;
}

int main(void)
{
    unsigned long size = 4321;
    FILE *fh = fopen("size.txt", "r");
    if (fh) {
        if (fscanf(fh, "%lu", &size) != 1)
            size = 4321;
        fclose(fh);
    }
    make_leak(size);
    return 0;
}
