/* dlopen by path, by a bare name already loaded (libc.so.6; the vDSO, which has no file), and
 * by a bare name found only through this program's RUNPATH: the recorder's hook must leave the
 * program as dlopen's caller, or that search fails.  argv[1]: the library's path; argv[2]: its
 * bare name, or "" for none (then every dlopen is of a path or of what is loaded already). */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    void *bare = argv[2][0] ? dlopen(argv[2], RTLD_NOW) : NULL; /* first: not loaded yet, found by RUNPATH */
    void *by_path = dlopen(argv[1], RTLD_NOW);
    void *loaded = dlopen("libc.so.6", RTLD_NOW);
    void *vdso = dlopen("linux-vdso.so.1", RTLD_NOW); /* as the sanitizers' runtimes do */
    printf("%d %d %d %d\n", by_path != NULL, loaded != NULL, bare != NULL, vdso != NULL);
    return argv[2][0] && bare == NULL ? 1 : 0;
}
