/* lh-reaper: run one job's command and make sure nothing it started outlives it.
 *
 * usage: lh-reaper PIDFILE FSIZE COMMAND [ARGS...]
 *
 * The harness starts every job through this small program, in a session of its own.  The
 * reaper marks itself a child subreaper (PR_SET_CHILD_SUBREAPER): every orphan of the job,
 * including a process that left the job's group and session with setsid(), is re-parented to
 * the reaper, not to init; once the command has ended the reaper kills and reaps every process
 * still under it, then exits.  So the reaper must be the last of the job to die: nothing but the
 * reaper signals the command.  The command runs in a process group of its own (its pgid is its
 * pid, set in the child before exec and by the parent after fork, so that the group exists
 * before anyone can signal it), never in the reaper's group, and the harness stops a job by
 * signalling the reaper, which passes it on:
 *   SIGTERM          the command's group gets SIGTERM (valgrind then finishes its XML);
 *   SIGINT, SIGHUP   the command's group gets SIGKILL, and the reaper kills what is left at once;
 *   parent's death   as SIGHUP (PR_SET_PDEATHSIG): a leakharness killed outright leaves nothing.
 * A stop that arrives before the command is started is kept and acted on as soon as it is.
 *
 * Core dumps are turned off and every file the job writes is capped at FSIZE bytes (set here,
 * before the fork, so that no process of the job ever runs without the limits).  It writes the
 * command's pid (also its process group) to PIDFILE: the checker's logs are named by it.  It ends
 * the way the command ended: the same exit code, or the same signal.  If the command cannot be
 * started it prints "lh-reaper: cannot run ..." and exits 127 (126 when not executable).  If it
 * had to kill processes the command left running it says so (the harness reads both lines).
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

enum { NO_STOP = 0, STOP_GENTLY = 1, STOP_NOW = 2 };

/* What the harness asked for (the strongest request wins), and the command's pid while its
 * group may be signalled: 0 before the fork and again once the command is reaped. */
static volatile sig_atomic_t stop_request = NO_STOP;
static volatile sig_atomic_t command_pid = 0;

static void on_stop(int sig)
{
    int saved = errno;
    int want = sig == SIGTERM ? STOP_GENTLY : STOP_NOW;
    if (want > stop_request)
        stop_request = want;
    pid_t group = command_pid;
    if (group > 0)
        kill(-group, stop_request == STOP_NOW ? SIGKILL : SIGTERM);
    errno = saved;
}

struct proc_entry {
    pid_t pid, ppid;
    char state;
    int parent; /* index of the parent in the table, or -1 */
    int mine;   /* a descendant of the reaper */
};

static int by_pid(const void *a, const void *b)
{
    pid_t x = ((const struct proc_entry *)a)->pid, y = ((const struct proc_entry *)b)->pid;
    return (x > y) - (x < y);
}

/* Every living process descending from us, read from /proc (orphans arrive at any time, and a
 * child of a child is killed now rather than after its parent's death makes it ours): killed
 * when do_kill.  Returns whether there was any (1 too when /proc cannot be read in full: we
 * cannot tell that nothing is left). */
static int living_descendants(int do_kill)
{
    char path[64], buf[512];
    pid_t self = getpid();
    size_t count = 0, room = 256;
    struct proc_entry *all = malloc(room * sizeof *all);
    DIR *proc = opendir("/proc");
    if (!all || !proc) {
        free(all);
        if (proc)
            closedir(proc);
        return 1;
    }
    struct dirent *entry;
    while ((entry = readdir(proc)) != NULL) {
        char *end;
        long pid = strtol(entry->d_name, &end, 10);
        if (*end != '\0' || pid <= 0)
            continue;
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        FILE *fh = fopen(path, "r");
        if (!fh)
            continue; /* ended since readdir */
        size_t n = fread(buf, 1, sizeof buf - 1, fh);
        fclose(fh);
        buf[n] = '\0';
        /* "pid (comm) state ppid ...": comm may hold spaces and parentheses; take the last ')'. */
        char *close = strrchr(buf, ')');
        long ppid;
        char state;
        if (!close || sscanf(close + 1, " %c %ld", &state, &ppid) != 2)
            continue;
        if (count == room) {
            struct proc_entry *more = realloc(all, 2 * room * sizeof *all);
            if (!more) {
                free(all);
                closedir(proc);
                return 1;
            }
            all = more;
            room *= 2;
        }
        all[count++] = (struct proc_entry){(pid_t)pid, (pid_t)ppid, state, -1, ppid == self};
    }
    closedir(proc);
    qsort(all, count, sizeof *all, by_pid);
    for (size_t i = 0; i < count; i++) {
        struct proc_entry key = {.pid = all[i].ppid};
        struct proc_entry *parent = bsearch(&key, all, count, sizeof *all, by_pid);
        all[i].parent = parent ? (int)(parent - all) : -1;
    }
    for (int changed = 1; changed;) { /* one pass per generation */
        changed = 0;
        for (size_t i = 0; i < count; i++)
            if (!all[i].mine && all[i].parent >= 0 && all[all[i].parent].mine) {
                all[i].mine = 1;
                changed = 1;
            }
    }
    int found = 0;
    for (size_t i = 0; i < count; i++) {
        if (!all[i].mine || all[i].state == 'Z' || all[i].state == 'X')
            continue;
        if (do_kill)
            kill(all[i].pid, SIGKILL);
        found = 1;
    }
    free(all);
    return found;
}

/* Reaps every dead child; returns whether none is left at all, living or dead. */
static int reap_dead(void)
{
    pid_t got;
    while ((got = waitpid(-1, NULL, WNOHANG)) > 0)
        ;
    return got < 0 && errno == ECHILD;
}

int main(int argc, char **argv)
{
    /* First of all, before there is a command to stop: the stop signals are ours to handle, and
     * held back until the command's group exists (a stop that comes earlier waits, then acts). */
    sigset_t stops, before;
    sigemptyset(&stops);
    sigaddset(&stops, SIGTERM);
    sigaddset(&stops, SIGINT);
    sigaddset(&stops, SIGHUP);
    sigprocmask(SIG_BLOCK, &stops, &before);
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_handler = on_stop;
    act.sa_mask = stops; /* one handler at a time */
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    sigaction(SIGHUP, &act, NULL);
    if (argc < 4) {
        fprintf(stderr, "usage: lh-reaper PIDFILE FSIZE COMMAND [ARGS...]\n");
        return 2;
    }
    /* If leakharness dies (even by SIGKILL), stop the job at once.  Checked again after setting
     * it, since the parent may have died just before. */
    pid_t parent = getppid();
    prctl(PR_SET_PDEATHSIG, SIGHUP, 0, 0, 0);
    if (getppid() != parent)
        return 128 + SIGHUP;
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
        setpgid(0, 0);
        /* The command gets the signal mask we were given (the handlers are reset by exec). */
        sigprocmask(SIG_SETMASK, &before, NULL);
        execvp(argv[3], argv + 3);
        int err = errno;
        if (write(fds[1], &err, sizeof err) < 0) { /* nothing more to do */ }
        _exit(127);
    }
    /* Both sides set the group, whichever runs first: from here on it exists (unless the child
     * has already exec'd, when the call fails and the child's own setpgid has done it). */
    setpgid(child, child);
    close(fds[1]);
    FILE *pidfile = fopen(argv[1], "w");
    if (pidfile) {
        fprintf(pidfile, "%ld\n", (long)child);
        fclose(pidfile);
    }
    command_pid = child;
    sigprocmask(SIG_UNBLOCK, &stops, NULL); /* a stop that came meanwhile is acted on now */

    int exec_errno = 0;
    ssize_t got;
    do {
        got = read(fds[0], &exec_errno, sizeof exec_errno);
    } while (got < 0 && errno == EINTR);
    close(fds[0]);

    /* Wait for the command's end without reaping it, so that its pid (and so its group's id)
     * cannot be reused while a stop signal may still be sent to the group; then stop sending. */
    siginfo_t info;
    for (;;) {
        memset(&info, 0, sizeof info);
        if (waitid(P_PID, (id_t)child, &info, WEXITED | WNOWAIT) == 0)
            break;
        if (errno != EINTR) {
            perror("lh-reaper: waitid");
            return 127;
        }
    }
    sigprocmask(SIG_BLOCK, &stops, NULL);
    command_pid = 0;
    sigprocmask(SIG_UNBLOCK, &stops, NULL);
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
     * its process group with setsid(), until nothing is left.
     * A helper about to end on its own (a sanitizer's llvm-symbolizer reading EOF) gets half a
     * second, unless the job is being stopped now; what still runs after that was left running,
     * and ran unchecked. */
    int left_running = 0;
    /* No child at all means nothing of the job is left: a living descendant is either our child
     * (an orphan is re-parented to us as its parent dies) or under a living child of ours.  The
     * usual end, so it skips the two reads of all of /proc (milliseconds on a busy machine). */
    int nothing_left = reap_dead();
    for (int wait = 0; !nothing_left; wait++) {
        reap_dead();
        left_running = living_descendants(0);
        if (!left_running || wait >= 50 || stop_request == STOP_NOW)
            break;
        usleep(10000);
    }
    for (int round = 0; round < 1000 && !nothing_left; round++) {
        living_descendants(1);
        if (reap_dead())
            break; /* no child left, living or dead */
        usleep(10000);
    }
    if (left_running) /* the harness reads this line: such a job is incomplete */
        fprintf(stderr, "lh-reaper: killed processes the program left running when it ended\n");
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigaction(sig, &dfl, NULL);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, sig);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        raise(sig);
        return 128 + sig;
    }
    return WEXITSTATUS(status);
}
