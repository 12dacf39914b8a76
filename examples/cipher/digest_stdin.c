/* Prints the SHA-256 of its standard input.  Planted leak: keep_copy keeps a copy of the input
 * that nothing frees (as many bytes as the input holds). */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned char *read_all(FILE *in, size_t *len)
{
    size_t cap = 4096;
    unsigned char *buf = malloc(cap);
    size_t n;

    *len = 0;
    while (buf && (n = fread(buf + *len, 1, cap - *len, in)) > 0) {
        *len += n;
        if (*len == cap) {
            unsigned char *bigger = realloc(buf, cap * 2);
            if (!bigger)
                break;
            buf = bigger;
            cap *= 2;
        }
    }
    return buf;
}

static unsigned char *keep_copy(const unsigned char *data, size_t len)
{
    unsigned char *copy = malloc(len);
    memcpy(copy, data, len);
    return copy;
}

int main(void)
{
    size_t len = 0;
    unsigned char *data = read_all(stdin, &len);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;

    if (!data || !EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL))
        return 1;
    for (unsigned int i = 0; i < md_len; i++)
        printf("%02x", md[i]);
    printf("  %zu bytes\n", len);
    unsigned char *saved = keep_copy(data, len);
    printf("kept %p\n", (void *)saved);
    free(data);
    return 0;
}
