/* SHA-256 of one message, the digest fetched from a library context of its own. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    const char *msg = "attack at dawn";
    OSSL_LIB_CTX *libctx = OSSL_LIB_CTX_new();
    EVP_MD *md = libctx ? EVP_MD_fetch(libctx, "SHA256", NULL) : NULL;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    if (md != NULL && ctx != NULL && EVP_DigestInit_ex(ctx, md, NULL) == 1
        && EVP_DigestUpdate(ctx, msg, strlen(msg)) == 1)
        EVP_DigestFinal_ex(ctx, out, &len);
    printf("%u bytes of digest\n", len);
    EVP_MD_CTX_free(ctx); /* CLEANUP */
    EVP_MD_free(md);
    OSSL_LIB_CTX_free(libctx);
    return 0;
}
