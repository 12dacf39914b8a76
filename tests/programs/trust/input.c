/* Reads the file named by its argument: loses 4321 bytes when it starts with "leak", else none. */
#include <stdio.h>
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

int main(int argc, char **argv)
{
    char head[8] = "";
    FILE *fh = argc > 1 ? fopen(argv[1], "r") : NULL;
    if (!fh)
        return 2;
    if (!fgets(head, sizeof head, fh))
        head[0] = '\0';
    fclose(fh);
    if (strncmp(head, "leak", 4) == 0)
        make_leak();
    return 0;
}
