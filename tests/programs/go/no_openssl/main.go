// A user's cgo program that does not link OpenSSL at all: it must build and check clean with
// leakharness's helpers, which look OpenSSL's cleanup up at run time instead of linking it.
package main

/*
#include <stdlib.h>
#include <string.h>
static size_t twice_len(const char *s) {
	char *copy = strdup(s);
	size_t n = strlen(copy) * 2;
	free(copy);
	return n;
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

func main() {
	s := C.CString("no openssl here")
	defer C.free(unsafe.Pointer(s))
	fmt.Println(C.twice_len(s))
}
