/* Writes "state.txt" and reads it back, and probes "made_later.txt" before creating it: what
 * the job read is the job's own doing, not a state of the file system before it ran. */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    FILE *f = fopen("state.txt", "a");
    if (f) {
        fputs("more\n", f);
        fclose(f);
    }
    if ((f = fopen("state.txt", "r")))
        fclose(f);
    if (access("made_later.txt", F_OK) != 0 && (f = fopen("made_later.txt", "w")))
        fclose(f);
    return 0;
}
