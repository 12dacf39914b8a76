/* Leaks only when "flag" exists (access() alone: the file is never opened), and when the
 * folder "certs" lists more than one entry (opendir/readdir: its listing, not its files). */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *kept;

int main(void)
{
    if (access("flag", F_OK) == 0)
        kept = malloc(24), kept = NULL;  /* lost */
    DIR *d = opendir("certs");
    int n = 0;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                n++;
        closedir(d);
    }
    if (n > 1)
        malloc(40);  /* lost */
    return 0;
}
