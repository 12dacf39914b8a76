/* subject.c: prints a certificate subject with X509_NAME_oneline and never frees the
 * string it returns (the README's leaky example). */
#include <stdio.h>
#include <openssl/x509.h>

__attribute__((noinline)) static void print_subject(X509_NAME *name)
{
    char *line = X509_NAME_oneline(name, NULL, 0);   /* allocates: caller must OPENSSL_free */
    puts(line);
}

int main(void)
{
    X509_NAME *name = X509_NAME_new();
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"example.org", -1, -1, 0);
    print_subject(name);
    X509_NAME_free(name);
    return 0;
}
