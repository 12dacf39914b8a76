/* Issue 16 item 2: opens ./sign.txt, a file no argument names, with OpenSSL's BIO API and never
 * frees the BIO it got; it also loses one block (in lose_block) of as many bytes as the file's
 * first line says.  Without the file it allocates nothing and is clean.  So what a checker finds
 * depends on a file the command line does not show. */
#include <stdlib.h>
#include <string.h>
#include <openssl/bio.h>

static BIO *volatile keep_bio;
static char *volatile keep;

__attribute__((noinline)) static void lose_block(size_t size)
{
    char *p = malloc(size);
    memset(p, 1, size);
    keep = p;
    keep = NULL;
}

int main(void)
{
    char line[64] = "";
    BIO *in = BIO_new_file("sign.txt", "r");
    if (in == NULL)
        return 0; /* no file: nothing allocated, nothing lost */
    if (BIO_gets(in, line, sizeof line) > 0) {
        unsigned long size = strtoul(line, NULL, 10);
        if (size > 0 && size < (1UL << 20))
            lose_block(size);
    }
    keep_bio = in; /* BUG: never BIO_free'd */
    keep_bio = NULL;
    return 0;
}
