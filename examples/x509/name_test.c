/* A CTest test: builds a certificate subject and prints it.  Planted leak: X509_NAME_oneline
 * allocates the line when given no buffer, and print_subject never frees it (unless --fixed). */
#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

static int print_subject(const X509_NAME *name, int fixed)
{
    char *line = X509_NAME_oneline(name, NULL, 0);
    if (!line)
        return 1;
    printf("subject: %s\n", line);
    if (fixed)
        OPENSSL_free(line);
    return 0;
}

int main(int argc, char **argv)
{
    int fixed = argc > 1 && strcmp(argv[1], "--fixed") == 0;
    X509_NAME *name = X509_NAME_new();

    if (!name || !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"example.org",
                                             -1, -1, 0))
        return 1;
    int rc = print_subject(name, fixed);
    X509_NAME_free(name);
    return rc;
}
