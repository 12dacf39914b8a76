package main

/*
#cgo pkg-config: openssl
#include <openssl/evp.h>
*/
import "C"

import "unsafe"

// Digest wraps an EVP_MD_CTX that nobody frees (no Free method): one context lost per digest.
type Digest struct{ ctx *C.EVP_MD_CTX }

func NewDigest() *Digest {
	d := &Digest{ctx: C.EVP_MD_CTX_new()}
	C.EVP_DigestInit_ex(d.ctx, C.EVP_sha256(), nil)
	return d
}

func (d *Digest) Write(b []byte) {
	C.EVP_DigestUpdate(d.ctx, unsafe.Pointer(&b[0]), C.size_t(len(b)))
}

func (d *Digest) Sum() []byte {
	out := make([]byte, 32)
	var n C.uint
	C.EVP_DigestFinal_ex(d.ctx, (*C.uchar)(&out[0]), &n)
	return out[:n]
}
