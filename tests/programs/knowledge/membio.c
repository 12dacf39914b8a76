/* Writes a greeting into a memory BIO and reads it back. */
#include <openssl/bio.h>
#include <stdio.h>

static int round_trip(const char *text)
{
    char buf[64] = {0};
    BIO *mem = BIO_new(BIO_s_mem());
    int n = -1;

    if (mem == NULL)
        return -1;
    if (BIO_puts(mem, text) > 0)
        n = BIO_read(mem, buf, sizeof(buf) - 1);
    printf("read back: %s\n", buf);
    BIO_free(mem); /* CLEANUP */
    return n;
}

int main(void)
{
    return round_trip("hello, bio") > 0 ? 0 : 1;
}
