/* X25519 key agreement between two fresh keys. */
#include <openssl/evp.h>
#include <stdio.h>

static EVP_PKEY *make_key(void)
{
    EVP_PKEY *key = NULL;
    EVP_PKEY_CTX *gen = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL);

    if (gen != NULL && EVP_PKEY_keygen_init(gen) == 1)
        EVP_PKEY_keygen(gen, &key);
    EVP_PKEY_CTX_free(gen);
    return key;
}

static size_t shared_secret(EVP_PKEY *mine, EVP_PKEY *theirs, unsigned char *out, size_t cap)
{
    size_t len = cap;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(mine, NULL);

    if (ctx == NULL || EVP_PKEY_derive_init(ctx) != 1 || EVP_PKEY_derive_set_peer(ctx, theirs) != 1
        || EVP_PKEY_derive(ctx, out, &len) != 1)
        len = 0;
    EVP_PKEY_CTX_free(ctx); /* CLEANUP */
    return len;
}

int main(void)
{
    unsigned char secret[64];
    EVP_PKEY *a = make_key(), *b = make_key();

    printf("%zu bytes shared\n", shared_secret(a, b, secret, sizeof(secret)));
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
    return 0;
}
