/* Calls foo_alloc() from libfoo.so, found by the loader (LD_LIBRARY_PATH): no rpath.  With an
 * argument it then dies of SIGSEGV: a process that ends so writes no list of its libraries. */
void foo_alloc(void);

int main(int argc, char **argv)
{
    (void)argv;
    foo_alloc();
    if (argc > 1)
        *(volatile int *)0 = 0;
    return 0;
}
