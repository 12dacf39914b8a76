/* A real bug inside a hooked call: the path given to fopen was freed (ASan: heap-use-after-free
 * in the fopen interceptor; memcheck: the open system call's argument points to freed memory),
 * and stat writes into a buffer too small for its struct (ASan: heap-buffer-overflow).  The
 * recorder reads the path first and ends in a tail call: the reports must be the same with it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int main(int argc, char **argv)
{
    char *path = malloc(16);
    strcpy(path, "sign.txt");
    free(path);
    if (argc > 1 && strcmp(argv[1], "stat") == 0) {
        struct stat *st = malloc(sizeof *st / 2);
        stat("/etc/hostname", st);  /* writes past the block */
        free(st);
        return 0;
    }
    FILE *f = fopen(path, "r");  /* use after free */
    if (f)
        fclose(f);
    return 0;
}
