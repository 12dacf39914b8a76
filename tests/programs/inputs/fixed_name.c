/* Leaks only when "sign.txt" exists in the working folder: a file no argument names, the result
 * cache's blind spot.  The leaked block holds the file's first line. */
#include <stdio.h>
#include <stdlib.h>

static char *first_line(FILE *f)
{
    char *line = malloc(64);
    if (line && !fgets(line, 64, f))
        line[0] = '\0';
    return line;
}

int main(void)
{
    FILE *f = fopen("sign.txt", "r");
    if (f == NULL)
        return 0;
    char *line = first_line(f);  /* never freed */
    fclose(f);
    printf("first line: %s", line ? line : "");
    return 0;
}
