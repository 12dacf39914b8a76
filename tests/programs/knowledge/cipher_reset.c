/* Encrypts two records, resetting the cipher context after each with EVP_CIPHER_CTX_reset and
 * never freeing it. */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

static int seal(const unsigned char *key, const char *record, unsigned char *out)
{
    unsigned char iv[12] = {9};
    int len = 0, total = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();

    if (ctx == NULL || EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), NULL, key, iv) != 1)
        return -1;
    if (EVP_EncryptUpdate(ctx, out, &len, (const unsigned char *)record, (int)strlen(record)) == 1) {
        total = len;
        if (EVP_EncryptFinal_ex(ctx, out + total, &len) == 1)
            total += len;
    }
    EVP_CIPHER_CTX_reset(ctx);
    return total;
}

int main(void)
{
    unsigned char key[16] = {3}, out[64];

    printf("%d %d\n", seal(key, "first record", out), seal(key, "second record", out));
    return 0;
}
