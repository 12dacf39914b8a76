// A Go program using OpenSSL through cgo: prints the SHA-256 of a message.  Planted leak: the
// digest context EVP_MD_CTX_new allocates is never given back with EVP_MD_CTX_free.
package main

/*
#cgo LDFLAGS: -lcrypto
#include <openssl/evp.h>
*/
import "C"

import (
	"fmt"
	"unsafe"
)

func sha256(message []byte) []byte {
	ctx := C.EVP_MD_CTX_new()
	out := make([]byte, C.EVP_MAX_MD_SIZE)
	var n C.uint
	C.EVP_DigestInit_ex(ctx, C.EVP_sha256(), nil)
	if len(message) > 0 {
		C.EVP_DigestUpdate(ctx, unsafe.Pointer(&message[0]), C.size_t(len(message)))
	}
	C.EVP_DigestFinal_ex(ctx, (*C.uchar)(unsafe.Pointer(&out[0])), &n)
	return out[:n]
}

func main() {
	fmt.Printf("%x\n", sha256([]byte("hello from the service")))
}
