/* lh_common.h: helpers shared by every leakharness fixture.
 *
 * Everything here is leak-free and error-checked, so that whatever a checker
 * reports comes from the pattern's own code.  Certificates and keys are made
 * in memory at run time (EC P-256: fast even under valgrind); no private key
 * is ever committed.
 */
#ifndef LH_COMMON_H
#define LH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* Leaky work goes into functions the optimiser may not fold into main, so
 * that -O2 builds keep the bug and the stack keeps a frame to blame. */
#if defined(__clang__)
#define LH_NOINLINE __attribute__((noinline))
#else
/* noclone too: gcc's -O2 clones (foo.constprop.0) would rename the frame to blame. */
#define LH_NOINLINE __attribute__((noinline, noclone))
#endif
/* Not every fixture uses every helper: no -Wunused-function for the ones it does not. */
#define LH_HELPER static __attribute__((unused))

/* An opaque copy of an integer: the compiler cannot fold loops or branches
 * that depend on it, whatever the optimisation level. */
static volatile int lh_opaque_store;
static inline int lh_opaque(int v) { lh_opaque_store = v; return lh_opaque_store; }

LH_HELPER void lh_die(const char *what)
{
    fprintf(stderr, "fixture set-up failed: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(3);
}

/* Load the configuration once at start: without it OpenSSL 3 keeps ~2 KB of
 * one-time state that valgrind reports as still reachable in BIO-only programs. */
LH_HELPER void lh_init(void)
{
    if (!OPENSSL_init_ssl(OPENSSL_INIT_LOAD_CONFIG, NULL))
        lh_die("OPENSSL_init_ssl");
}

LH_HELPER EVP_PKEY *lh_new_key(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    if (key == NULL)
        lh_die("EVP_EC_gen");
    return key;
}

/* A certificate for `cn` holding `key`'s public half, signed by issuer_key
 * (self-signed when issuer is NULL).  ca != 0 marks it as a CA. */
LH_HELPER X509 *lh_new_cert(const char *cn, EVP_PKEY *key, X509 *issuer,
                         EVP_PKEY *issuer_key, int ca)
{
    static long serial = 1;
    X509 *x = X509_new();
    X509_NAME *name;
    X509V3_CTX v3;
    X509_EXTENSION *ext;

    if (x == NULL)
        lh_die("X509_new");
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24 * 365);
    X509_set_pubkey(x, key);
    name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
                              ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    if (ext == NULL || !X509_add_ext(x, ext, -1))
        lh_die("basicConstraints");
    X509_EXTENSION_free(ext);
    if (!X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()))
        lh_die("X509_sign");
    return x;
}

/* A chain of `length` certificates: chain[0] the self-signed root, each
 * next one signed by the one before, chain[length-1] the leaf.  keys[i]
 * holds each certificate's key.  Free with lh_free_chain. */
LH_HELPER void lh_new_chain(int length, X509 **chain, EVP_PKEY **keys)
{
    int i;
    char cn[32];
    for (i = 0; i < length; i++) {
        snprintf(cn, sizeof cn, i == length - 1 ? "leaf %d" : "ca %d", i);
        keys[i] = lh_new_key();
        chain[i] = lh_new_cert(cn, keys[i], i ? chain[i - 1] : NULL,
                               i ? keys[i - 1] : NULL, i < length - 1);
    }
}

LH_HELPER void lh_free_chain(int length, X509 **chain, EVP_PKEY **keys)
{
    int i;
    for (i = 0; i < length; i++) {
        X509_free(chain[i]);
        EVP_PKEY_free(keys[i]);
    }
}

/* A PEM encoding of `x` in a fresh memory BIO (caller frees with BIO_free). */
LH_HELPER BIO *lh_pem_bio(X509 *const *certs, int n)
{
    int i;
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL)
        lh_die("BIO_new");
    for (i = 0; i < n; i++)
        if (!PEM_write_bio_X509(bio, certs[i]))
            lh_die("PEM_write_bio_X509");
    return bio;
}

/* Server and client contexts for an in-memory TLS handshake: the server
 * presents a self-signed certificate; the client does not verify it. */
LH_HELPER void lh_new_tls_contexts(SSL_CTX **server_ctx, SSL_CTX **client_ctx)
{
    EVP_PKEY *key = lh_new_key();
    X509 *cert = lh_new_cert("localhost", key, NULL, NULL, 0);

    *server_ctx = SSL_CTX_new(TLS_server_method());
    *client_ctx = SSL_CTX_new(TLS_client_method());
    if (*server_ctx == NULL || *client_ctx == NULL)
        lh_die("SSL_CTX_new");
    if (SSL_CTX_use_certificate(*server_ctx, cert) != 1
        || SSL_CTX_use_PrivateKey(*server_ctx, key) != 1)
        lh_die("SSL_CTX_use_certificate");
    SSL_CTX_set_verify(*client_ctx, SSL_VERIFY_NONE, NULL);
    X509_free(cert);
    EVP_PKEY_free(key);
}

/* Connects `client` to `server` through a BIO pair (both SSL objects take
 * ownership of their end).  Returns 1 when the handshake completed. */
LH_HELPER int lh_handshake(SSL *client, SSL *server)
{
    BIO *client_end = NULL, *server_end = NULL;
    int i, client_done = 0, server_done = 0;

    if (!BIO_new_bio_pair(&client_end, 0, &server_end, 0))
        lh_die("BIO_new_bio_pair");
    SSL_set_bio(client, client_end, client_end);
    SSL_set_bio(server, server_end, server_end);
    SSL_set_connect_state(client);
    SSL_set_accept_state(server);
    for (i = 0; i < 100 && !(client_done && server_done); i++) {
        if (!client_done) {
            int r = SSL_do_handshake(client);
            if (r == 1)
                client_done = 1;
            else if (SSL_get_error(client, r) != SSL_ERROR_WANT_READ
                     && SSL_get_error(client, r) != SSL_ERROR_WANT_WRITE)
                return 0;
        }
        if (!server_done) {
            int r = SSL_do_handshake(server);
            if (r == 1)
                server_done = 1;
            else if (SSL_get_error(server, r) != SSL_ERROR_WANT_READ
                     && SSL_get_error(server, r) != SSL_ERROR_WANT_WRITE)
                return 0;
        }
    }
    return client_done && server_done;
}

#endif /* LH_COMMON_H */
