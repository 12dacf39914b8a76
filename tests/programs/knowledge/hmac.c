/* HMAC-SHA256 of a message with EVP_MAC. */
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <string.h>

static size_t hmac(const unsigned char *key, size_t keylen, const char *msg, unsigned char *out, size_t cap)
{
    size_t len = 0;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;

    if (ctx != NULL && EVP_MAC_init(ctx, key, keylen, params) == 1
        && EVP_MAC_update(ctx, (const unsigned char *)msg, strlen(msg)) == 1)
        EVP_MAC_final(ctx, out, &len, cap);
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac); /* CLEANUP */
    return len;
}

int main(void)
{
    unsigned char key[32] = {7}, out[64];

    printf("%zu bytes of MAC\n", hmac(key, sizeof(key), "the message", out, sizeof(out)));
    return 0;
}
