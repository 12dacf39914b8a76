// Package digest: the size of a SHA-256 digest, from OpenSSL (nothing leaks; a test adds a leak).
package digest

/*
#cgo LDFLAGS: -lcrypto
#include <openssl/evp.h>
*/
import "C"

// Size is the size in bytes of a SHA-256 digest.
func Size() int {
	ctx := C.EVP_MD_CTX_new()
	C.EVP_DigestInit_ex(ctx, C.EVP_sha256(), nil)
	size := int(C.EVP_MD_get_size(C.EVP_MD_CTX_get0_md(ctx)))
	C.EVP_MD_CTX_free(ctx)
	return size
}
