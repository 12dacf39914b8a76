// Package hashing: SHA-256 through OpenSSL.  Its digest context is never freed (a test frees it).
package hashing

/*
#cgo LDFLAGS: -lcrypto
#include <openssl/evp.h>
*/
import "C"

import "unsafe"

func newContext() *C.EVP_MD_CTX {
	return C.EVP_MD_CTX_new()
}

// Sum is the SHA-256 of message.
func Sum(message []byte) []byte {
	ctx := newContext()
	out := make([]byte, C.EVP_MAX_MD_SIZE)
	var n C.uint
	C.EVP_DigestInit_ex(ctx, C.EVP_sha256(), nil)
	C.EVP_DigestUpdate(ctx, unsafe.Pointer(&message[0]), C.size_t(len(message)))
	C.EVP_DigestFinal_ex(ctx, (*C.uchar)(unsafe.Pointer(&out[0])), &n)
	return out[:n]
}
