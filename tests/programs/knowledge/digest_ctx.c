/* SHA-256 of one message with the built-in digest (no library context, nothing fetched). */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

static unsigned int digest_message(const char *msg, unsigned char *out)
{
    unsigned int len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    if (ctx == NULL)
        return 0;
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1
        || EVP_DigestUpdate(ctx, msg, strlen(msg)) != 1
        || EVP_DigestFinal_ex(ctx, out, &len) != 1)
        len = 0;
    EVP_MD_CTX_free(ctx); /* CLEANUP */
    return len;
}

int main(void)
{
    unsigned char out[EVP_MAX_MD_SIZE];

    printf("%u bytes of digest\n", digest_message("attack at dawn", out));
    return 0;
}
