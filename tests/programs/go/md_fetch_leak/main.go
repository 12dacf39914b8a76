// A user's program: a digest helper that fetches SHA-256 from OpenSSL 3's default library
// context on every call and never hands the reference back (no EVP_MD_free).  Each fetch only
// raises the method's reference count; once OpenSSL's cleanup drops the store's own reference,
// the five extra ones keep the method allocated and nothing points at it: lost.
package main

/*
#cgo pkg-config: openssl
#include <stdlib.h>
#include <openssl/evp.h>
*/
import "C"

import (
	"encoding/hex"
	"errors"
	"fmt"
	"unsafe"
)

//go:noinline
func digest(data []byte) ([]byte, error) {
	name := C.CString("SHA256")
	defer C.free(unsafe.Pointer(name))
	md := C.EVP_MD_fetch(nil, name, nil) // BUG: never EVP_MD_free'd
	if md == nil {
		return nil, errors.New("EVP_MD_fetch failed")
	}
	ctx := C.EVP_MD_CTX_new()
	if ctx == nil {
		return nil, errors.New("EVP_MD_CTX_new failed")
	}
	defer C.EVP_MD_CTX_free(ctx)
	out := make([]byte, C.EVP_MAX_MD_SIZE)
	var n C.uint
	if C.EVP_DigestInit_ex(ctx, md, nil) != 1 ||
		C.EVP_DigestUpdate(ctx, unsafe.Pointer(&data[0]), C.size_t(len(data))) != 1 ||
		C.EVP_DigestFinal_ex(ctx, (*C.uchar)(unsafe.Pointer(&out[0])), &n) != 1 {
		return nil, errors.New("digest failed")
	}
	return out[:n], nil
}

func main() {
	for _, word := range []string{"alpha", "beta", "gamma", "delta", "epsilon"} {
		sum, err := digest([]byte(word))
		if err != nil {
			panic(err)
		}
		fmt.Println(word, hex.EncodeToString(sum[:8]))
	}
}
