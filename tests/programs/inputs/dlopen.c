/* dlopen by path, by a bare name already loaded (libc.so.6), and by a bare name found only
 * through this program's RUNPATH: the recorder's hook must leave the program as dlopen's caller,
 * or that search fails.  argv[1]: the library's path; argv[2]: its bare name. */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    void *bare = dlopen(argv[2], RTLD_NOW);       /* first: not loaded yet, found by RUNPATH */
    void *by_path = dlopen(argv[1], RTLD_NOW);
    void *loaded = dlopen("libc.so.6", RTLD_NOW);
    printf("%d %d %d\n", by_path != NULL, loaded != NULL, bare != NULL);
    return bare == NULL ? 1 : 0;
}
