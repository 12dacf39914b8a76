/* A program that does everything it can to outlive its job: it ignores SIGTERM, and forks a
 * child that leaves the job's session (setsid) and forks a grandchild there; all three sleep
 * for ever.  The grandchild is in the child's new session, not the job's process group, so
 * only a subreaper that outlives them can find it once the others are gone. */
#include <signal.h>
#include <unistd.h>

int main(void)
{
    signal(SIGTERM, SIG_IGN);
    if (fork() == 0) {
        setsid();
        fork(); /* the child and the grandchild both go on below */
    }
    for (;;)
        pause();
}
