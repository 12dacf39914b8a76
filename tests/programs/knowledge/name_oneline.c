/* Prints a certificate's subject. */
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>

static X509 *make_cert(void)
{
    X509 *cert = X509_new();
    X509_NAME *name = X509_get_subject_name(cert);

    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"knowledge.example", -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"leakharness", -1, -1, 0);
    return cert;
}

static void print_subject(X509 *cert)
{
    char *subject = X509_NAME_oneline(X509_get_subject_name(cert), NULL, 0);

    printf("subject: %s\n", subject ? subject : "?");
    OPENSSL_free(subject); /* CLEANUP */
}

int main(void)
{
    X509 *cert = make_cert();

    print_subject(cert);
    X509_free(cert);
    return 0;
}
