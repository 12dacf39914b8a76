/* AES-128-CBC encryption of one message. */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

static int encrypt_message(const unsigned char *key, const unsigned char *iv, const char *msg,
                           unsigned char *out)
{
    int len = 0, total = -1;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();

    if (ctx == NULL)
        return -1;
    if (EVP_EncryptInit_ex(ctx, EVP_aes_128_cbc(), NULL, key, iv) == 1
        && EVP_EncryptUpdate(ctx, out, &len, (const unsigned char *)msg, (int)strlen(msg)) == 1) {
        total = len;
        if (EVP_EncryptFinal_ex(ctx, out + total, &len) == 1)
            total += len;
        else
            total = -1;
    }
    EVP_CIPHER_CTX_free(ctx); /* CLEANUP */
    return total;
}

int main(void)
{
    unsigned char key[16] = {1, 2, 3}, iv[16] = {4, 5, 6}, out[64];

    printf("%d bytes of ciphertext\n", encrypt_message(key, iv, "attack at dawn", out));
    return 0;
}
