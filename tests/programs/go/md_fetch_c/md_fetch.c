/* The C twin of ../md_fetch_leak/main.go: the same five SHA-256 fetches from the default library
 * context, never freed.  C's exit() runs OpenSSL's atexit cleanup before the leak checks, so the
 * references the program kept are lost; a Go program must be checked the same way. */
#include <stdio.h>
#include <string.h>
#include <openssl/evp.h>

static __attribute__((noinline)) int digest(const char *data, unsigned char *out)
{
    unsigned int n = 0;
    EVP_MD *md = EVP_MD_fetch(NULL, "SHA256", NULL); /* BUG: never EVP_MD_free'd */
    EVP_MD_CTX *ctx;

    if (md == NULL)
        return -1;
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || !EVP_DigestInit_ex(ctx, md, NULL) || !EVP_DigestUpdate(ctx, data, strlen(data))
        || !EVP_DigestFinal_ex(ctx, out, &n))
        n = 0;
    EVP_MD_CTX_free(ctx);
    return (int)n;
}

int main(void)
{
    static const char *const words[] = {"alpha", "beta", "gamma", "delta", "epsilon"};
    unsigned char out[EVP_MAX_MD_SIZE];
    int i, n;

    for (i = 0; i < 5; i++) {
        n = digest(words[i], out);
        printf("%s %d %02x\n", words[i], n, n > 0 ? out[0] : 0);
    }
    return 0;
}
