/* Prints the SHA-256 of its arguments in hex.  Planted leak: the hex string OPENSSL_buf2hexstr
 * returns is never given back with OPENSSL_free. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

static void print_digest(const char *text)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;

    if (!EVP_Digest(text, strlen(text), md, &md_len, EVP_sha256(), NULL))
        return;
    char *hex = OPENSSL_buf2hexstr(md, md_len);
    printf("%s  %s\n", hex, text);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        print_digest(argv[i]);
    return 0;
}
