/* OpenSSL reads a fixed-name file with BIO_new_file (fopen inside libcrypto) and its own
 * configuration (OPENSSL_CONF, or the default openssl.cnf): leaks a BIO when the file's first
 * line says "leak". */
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <string.h>

int main(void)
{
    OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL);
    BIO *in = BIO_new_file("input.txt", "r");
    if (in == NULL)
        return 0;
    char buf[64] = "";
    BIO_gets(in, buf, sizeof buf);
    if (strncmp(buf, "leak", 4) == 0)
        BIO_new(BIO_s_mem());  /* lost */
    BIO_free(in);
    return 0;
}
