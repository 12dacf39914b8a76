/* digest.c: prints the SHA-256 of its argument; frees everything (the README's clean example). */
#include <stdio.h>
#include <string.h>
#include <openssl/evp.h>

int main(int argc, char **argv)
{
    const char *text = argc > 1 ? argv[1] : "";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0, i;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    if (ctx == NULL || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)
        || !EVP_DigestUpdate(ctx, text, strlen(text)) || !EVP_DigestFinal_ex(ctx, md, &len))
        return 1;
    EVP_MD_CTX_free(ctx);
    for (i = 0; i < len; i++)
        printf("%02x", md[i]);
    printf("\n");
    return 0;
}
