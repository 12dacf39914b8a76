/* Starts argv[2] the way argv[1] says: "spawn" (posix_spawn), "system", "exec" (execv, in place),
 * "vfork" (vfork + execv), "fork-spawn" (a forked child that ends at once, then posix_spawn: the
 * forked child must not pass for the spawned one); then reads "after.txt".  The started program
 * is the test's choice: a static one never loads the recorder. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    char *args[] = {argv[2], NULL};
    if (strcmp(argv[1], "fork-spawn") == 0) {
        pid_t pid = fork();
        if (pid == 0)
            exit(0);
        waitpid(pid, NULL, 0);
    }
    if (strcmp(argv[1], "spawn") == 0 || strcmp(argv[1], "fork-spawn") == 0) {
        pid_t pid;
        if (posix_spawn(&pid, argv[2], NULL, NULL, args, environ) != 0)
            return 3;
        waitpid(pid, NULL, 0);
    } else if (strcmp(argv[1], "system") == 0) {
        if (system(argv[2]) == -1)
            return 3;
    } else if (strcmp(argv[1], "exec") == 0) {
        execv(argv[2], args);
        return 3;
    } else if (strcmp(argv[1], "vfork") == 0) {
        pid_t pid = vfork();
        if (pid == 0) {
            execv(argv[2], args);
            _exit(127);
        }
        waitpid(pid, NULL, 0);
    }
    FILE *f = fopen("after.txt", "r");
    if (f)
        fclose(f);
    return 0;
}
