// A Go program whose C comes from outside its module: a header (../include, by #cgo CFLAGS) and a
// static library the test builds (../lib/libextra.a, by #cgo LDFLAGS).  Nothing leaks until a
// test edits one of them.
package main

/*
#cgo CFLAGS: -I${SRCDIR}/../include
#cgo LDFLAGS: -L${SRCDIR}/../lib -lextra
#include <stdlib.h>
#include "extra.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

func main() {
	s := C.CString("hello")
	copied := C.extra_copy(s)
	duplicated := C.extra_dup(s)
	fmt.Println(C.GoString(copied), C.GoString(duplicated))
	C.free(unsafe.Pointer(duplicated))
	C.free(unsafe.Pointer(copied))
	C.free(unsafe.Pointer(s))
}
