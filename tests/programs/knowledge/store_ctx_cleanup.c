/* Verifies a self-signed certificate against a store that trusts it, and cleans the
 * verification context up with X509_STORE_CTX_cleanup alone, which does not free it. */
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <stdio.h>

static X509 *self_signed(EVP_PKEY *key)
{
    X509 *cert = X509_new();
    X509_NAME *name = X509_get_subject_name(cert);

    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 7);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"root.example", -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509_set_pubkey(cert, key);
    X509_sign(cert, key, EVP_sha256());
    return cert;
}

static int verify(X509_STORE *store, X509 *cert)
{
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok = 0;

    if (ctx != NULL && X509_STORE_CTX_init(ctx, store, cert, NULL) == 1)
        ok = X509_verify_cert(ctx);
    X509_STORE_CTX_cleanup(ctx);
    return ok;
}

int main(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = self_signed(key);
    X509_STORE *store = X509_STORE_new();

    X509_STORE_add_cert(store, cert);
    printf("verified: %d\n", verify(store, cert));
    X509_STORE_free(store);
    X509_free(cert);
    EVP_PKEY_free(key);
    return 0;
}
