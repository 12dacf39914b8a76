/* Calls foo_alloc() from libfoo.so, found by the loader (LD_LIBRARY_PATH): no rpath. */
void foo_alloc(void);

int main(void)
{
    foo_alloc();
    return 0;
}
