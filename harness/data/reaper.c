/* lh-reaper: run one job's command and make sure nothing it started outlives it.
 *
 * usage: lh-reaper PIDFILE FSIZE COMMAND [ARGS...]
 *
 * The harness starts every job through this small program, in a new session (so a timeout or
 * Ctrl-C reaches the whole process group).  A process group is not enough: a child that calls
 * setsid() leaves it, and would keep running after the job.  So the reaper marks itself a
 * child subreaper (PR_SET_CHILD_SUBREAPER): every orphan of the job is re-parented to it, not to
 * init, and once the command has ended the reaper kills and reaps whatever it has inherited.
 *
 * Core dumps are turned off and every file the job writes is capped at FSIZE bytes (set here,
 * before the fork, so that no process of the job ever runs without the limits).
 * It writes the command's pid to PIDFILE (the checker's logs are named by it), ignores SIGTERM
 * and SIGINT itself (the group receives them: valgrind must get its SIGTERM to finish its XML),
 * and ends the way the command ended: the same exit code, or the same signal.  If the command
 * cannot be started it prints "lh-reaper: cannot run ..." and exits 127 (126 when not executable).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* Every living process whose parent is us (read from /proc, since orphans arrive at any time):
 * killed when do_kill; returns whether there was any. */
static int living_children(int do_kill)
{
    char path[64], buf[512];
    int found = 0;
    pid_t self = getpid();
    DIR *proc = opendir("/proc");
    if (!proc)
        return 0;
    struct dirent *entry;
    while ((entry = readdir(proc)) != NULL) {
        char *end;
        long pid = strtol(entry->d_name, &end, 10);
        if (*end != '\0' || pid <= 0)
            continue;
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        FILE *fh = fopen(path, "r");
        if (!fh)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, fh);
        fclose(fh);
        buf[n] = '\0';
        /* "pid (comm) state ppid ...": comm may hold spaces and parentheses; take the last ')'. */
        char *close = strrchr(buf, ')');
        long ppid;
        char state;
        if (close && sscanf(close + 1, " %c %ld", &state, &ppid) == 2 && ppid == self && state != 'Z') {
            if (do_kill)
                kill((pid_t)pid, SIGKILL);
            found = 1;
        }
    }
    closedir(proc);
    return found;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: lh-reaper PIDFILE FSIZE COMMAND [ARGS...]\n");
        return 2;
    }
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    rlim_t cap = (rlim_t)strtoull(argv[2], NULL, 10);
    if (cap > 0) {
        struct rlimit fsize = {cap, cap};
        setrlimit(RLIMIT_FSIZE, &fsize);
    }
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    /* Orphans of the job become our children; a failed exec reports its errno through a pipe. */
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        perror("lh-reaper: pipe");
        return 127;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("lh-reaper: fork");
        return 127;
    }
    if (child == 0) {
        close(fds[0]);
        execvp(argv[3], argv + 3);
        int err = errno;
        if (write(fds[1], &err, sizeof err) < 0) { /* nothing more to do */ }
        _exit(127);
    }
    close(fds[1]);
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    FILE *pidfile = fopen(argv[1], "w");
    if (pidfile) {
        fprintf(pidfile, "%ld\n", (long)child);
        fclose(pidfile);
    }
    int exec_errno = 0;
    ssize_t got;
    do {
        got = read(fds[0], &exec_errno, sizeof exec_errno);
    } while (got < 0 && errno == EINTR);
    close(fds[0]);

    int status = 0;
    while (waitpid(child, &status, 0) < 0) {
        if (errno != EINTR) {
            perror("lh-reaper: waitpid");
            return 127;
        }
    }
    if (got == (ssize_t)sizeof exec_errno) {
        fprintf(stderr, "lh-reaper: cannot run %s: %s\n", argv[3], strerror(exec_errno));
        return exec_errno == EACCES || exec_errno == ENOEXEC ? 126 : 127;
    }
    /* The command has ended: kill and reap everything it left behind, including what escaped
     * its process group with setsid(), until nothing is left. */
    /* A helper about to end on its own (a sanitizer's llvm-symbolizer reading EOF) gets half a
     * second; what still runs after that was left running, and ran unchecked. */
    int left_running = 0;
    for (int wait = 0; wait < 50; wait++) {
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        left_running = living_children(0);
        if (!left_running)
            break;
        usleep(10000);
    }
    for (int round = 0; round < 1000; round++) {
        living_children(1);
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        if (waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD)
            break; /* no child left, living or dead */
        usleep(10000);
    }
    if (left_running) /* the harness reads this line: such a job is incomplete */
        fprintf(stderr, "lh-reaper: killed processes the program left running when it ended\n");
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        signal(sig, SIG_DFL);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, sig);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        raise(sig);
        return 128 + sig;
    }
    return WEXITSTATUS(status);
}
