// Two Go functions make the same C call, EVP_MD_CTX_new: one frees what it gets, one never does.
// LeakSanitizer's stack ends at the cgo stub, the same for both; the go-asan build's record of
// what each C call returned names the Go line that leaked.  Around them, the shapes of C call the
// rewrite must leave compiling: a void call as a statement, a dropped result, cgo's errno form, a
// conversion in a constant, a call in an argument and in a return.
package main

/*
#cgo pkg-config: openssl
#include <errno.h>
#include <stdlib.h>
#include <openssl/evp.h>
static int ready(void) { errno = 0; return 1; }
static void nothing(void) {}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

const (
	size = C.int(32)
	half = size / 2
)

func hashed(data []byte) int {
	ctx := C.EVP_MD_CTX_new()
	defer C.EVP_MD_CTX_free(ctx)
	if C.EVP_DigestInit_ex(ctx, C.EVP_sha256(), nil) != 1 {
		return -1
	}
	C.EVP_DigestUpdate(ctx, unsafe.Pointer(&data[0]), C.size_t(len(data)))
	return int(C.EVP_MD_get_size(C.EVP_MD_CTX_get0_md(ctx)))
}

func newContext() *C.EVP_MD_CTX {
	return C.EVP_MD_CTX_new()
}

func forgotten(data []byte) int {
	ctx := newContext() // BUG: never EVP_MD_CTX_free'd
	C.EVP_DigestInit_ex(ctx, C.EVP_sha256(), nil)
	return int(C.EVP_MD_get_size(C.EVP_MD_CTX_get0_md(ctx)))
}

func main() {
	C.nothing()
	ok, err := C.ready()
	name := C.CString("sha256")
	defer C.free(unsafe.Pointer(name))
	for i := 0; i < 3; i++ {
		fmt.Println(hashed([]byte("kept")), forgotten([]byte("lost")))
	}
	fmt.Println(ok, err == nil, int(half), C.GoString(name))
	C.EVP_MD_CTX_free(held().ctx)
}

type holder struct {
	ctx  *C.EVP_MD_CTX
	size int
}

// A C call in a composite literal (recorded), and void calls after `case ...:` (left alone).
func held() *holder {
	h := &holder{ctx: C.EVP_MD_CTX_new(), size: 32}
	switch {
	case h.ctx == nil:
		C.nothing()
	default:
		C.nothing()
	}
	return h
}
