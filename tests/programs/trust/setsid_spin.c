/* A child that leaves the job's process group (setsid) and spins for ever; the parent waits
 * for ever too, or with the argument "exit" returns at once, leaving the child behind. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        volatile unsigned long n = 0;
        for (;;)
            n++;
    }
    if (argc > 1 && strcmp(argv[1], "exit") == 0)
        return 0;
    for (;;)
        pause();
}
