/* Eight threads open, stat, probe and list files at once, with no shared data of their own:
 * any race helgrind or TSan reports in a run of this program is the recorder's.  With the
 * argument "race" two threads also increment one counter unlocked: the race that must still
 * be reported, the same with and without the recorder. */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define THREADS 8
#define ROUNDS 100

static int racy;
static int with_race;

static void *work(void *arg)
{
    long id = (long)arg;
    char name[32];
    for (int i = 0; i < ROUNDS; i++) {
        snprintf(name, sizeof name, "file%ld-%d.txt", id, i % 7);
        FILE *f = fopen("shared.txt", "r");
        if (f)
            fclose(f);
        struct stat st;
        stat(name, &st);
        access("shared.txt", R_OK);
        DIR *d = opendir(".");
        if (d) {
            while (readdir(d) != NULL)
                ;
            closedir(d);
        }
        if (with_race && id < 2)
            racy++;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t t[THREADS];
    with_race = argc > 1 && strcmp(argv[1], "race") == 0;
    for (long i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, work, (void *)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    printf("%d\n", racy);
    return 0;
}
