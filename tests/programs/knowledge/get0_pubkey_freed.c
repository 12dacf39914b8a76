/* Reads the public key of a certificate with X509_get0_pubkey, then frees that borrowed key
 * as if it were the caller's, before the certificate frees it again. */
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>

static X509 *cert_with(EVP_PKEY *key)
{
    X509 *cert = X509_new();

    X509_set_pubkey(cert, key);
    return cert;
}

static int key_size(X509 *cert)
{
    EVP_PKEY *pub = X509_get0_pubkey(cert);
    int bits = pub ? EVP_PKEY_get_bits(pub) : -1;

    EVP_PKEY_free(pub);
    return bits;
}

int main(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = cert_with(key);

    EVP_PKEY_free(key);
    printf("%d bits\n", key_size(cert));
    X509_free(cert);
    return 0;
}
