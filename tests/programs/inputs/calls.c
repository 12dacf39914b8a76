/* Each way a program learns about a file by name, one after the other, so that one run shows
 * what the recorder writes for each (the test knows the expected line for every step). */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void closing(int fd)
{
    if (fd >= 0)
        close(fd);
}

int main(int argc, char **argv)
{
    struct stat st;
    char buf[PATH_MAX];
    closing(open("o_rdonly.txt", O_RDONLY));
    closing(open("o_rdwr.txt", O_RDWR));
    closing(open("o_wronly.txt", O_WRONLY | O_CREAT, 0644));          /* written only: not an input */
    closing(open("o_trunc.txt", O_RDWR | O_CREAT | O_TRUNC, 0644));   /* emptied: not an input */
    closing(open("o_excl.txt", O_WRONLY | O_CREAT | O_EXCL, 0644));   /* fails if present: a probe */
    closing(open("o_path", O_PATH));
    int dir = open("sub", O_RDONLY | O_DIRECTORY);
    closing(openat(dir, "in_sub.txt", O_RDONLY));                     /* relative to a descriptor */
    fstatat(dir, "link", &st, AT_SYMLINK_NOFOLLOW);
    closing(dir);
    FILE *f;
    if ((f = fopen("fopen_r.txt", "r")))
        fclose(f);
    if ((f = fopen("fopen_w.txt", "w")))                              /* written only */
        fclose(f);
    if ((f = fopen("fopen_a_plus.txt", "a+")))                        /* appended and read */
        fclose(f);
    stat("stat.txt", &st);
    lstat("lstat_link", &st);
    access("access.txt", R_OK);
    faccessat(AT_FDCWD, "faccessat.txt", R_OK, 0);
    statx(AT_FDCWD, "statx.txt", 0, STATX_SIZE, &(struct statx){0});
    if (readlink("readlink_link", buf, sizeof buf) < 0)
        buf[0] = '\0';
    char *real = realpath("realpath.txt", NULL);
    free(real);
    DIR *d = opendir("listed");
    if (d)
        closedir(d);
    struct dirent **names;
    int n = scandir("scanned", &names, NULL, alphasort);
    for (int i = 0; i < n; i++)
        free(names[i]);
    if (n >= 0)
        free(names);
    if (chdir("sub") == 0) {                                          /* relative to the new folder */
        closing(open("after_chdir.txt", O_RDONLY));
        if (chdir("..") != 0)
            return 1;
    }
    closing(open("./dot//slashes.txt", O_RDONLY));
    if (argc > 1 && strcmp(argv[1], "glob") == 0) {
        glob_t g;
        if (glob(argc > 2 ? argv[2] : "*.pem", 0, NULL, &g) == 0)
            globfree(&g);
    }
    if (argc > 1 && strcmp(argv[1], "emfile") == 0) {
        /* No descriptor left: the recorder cannot open its log to write this probe down. */
        struct rlimit none = {3, 3};
        setrlimit(RLIMIT_NOFILE, &none);
        access("no_descriptor_left.txt", F_OK);
    }
    if (argc > 1 && strcmp(argv[1], "execvp") == 0) {
        pid_t pid = fork();
        if (pid == 0) {
            execlp("lh-no-such-program", "lh-no-such-program", (char *)NULL);
            _exit(127);
        }
        waitpid(pid, NULL, 0);
    }
    return 0;
}
