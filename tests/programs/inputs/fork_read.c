/* A forked child reads "child.txt" (leaking its first line when it exists) and ends by exit or,
 * with the argument "_exit", by _exit; the parent reads nothing and waits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = fopen("child.txt", "r");
        if (f) {
            char *line = malloc(32);
            if (!fgets(line, 32, f))
                line[0] = '\0';
            fclose(f);
        }
        if (argc > 1 && strcmp(argv[1], "_exit") == 0)
            _exit(0);
        exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    return 0;
}
