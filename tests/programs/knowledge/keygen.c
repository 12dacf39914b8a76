/* Generates an EC key and prints its size. */
#include <openssl/evp.h>
#include <stdio.h>

static int key_bits(void)
{
    EVP_PKEY *key = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    int bits = -1;

    if (ctx != NULL && EVP_PKEY_keygen_init(ctx) == 1
        && EVP_PKEY_CTX_set_group_name(ctx, "P-256") == 1 && EVP_PKEY_keygen(ctx, &key) == 1)
        bits = EVP_PKEY_get_bits(key);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(key); /* CLEANUP */
    return bits;
}

int main(void)
{
    printf("a %d-bit key\n", key_bits());
    return 0;
}
