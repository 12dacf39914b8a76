// A user's program with a leak accepted as known (keep's C string), and a line that frees what it
// converted (other's): a test makes that line leak too, which no `known` entry may accept.
package main

/*
#include <stdlib.h>
#include <string.h>
*/
import "C"

import (
	"fmt"
	"unsafe"
)

//go:noinline
func keep(name string) int {
	cs := C.CString(name) // never freed: the known leak
	return int(C.strlen(cs))
}

//go:noinline
func other(name string) int {
	cs := C.CString(name)
	n := int(C.strlen(cs))
	C.free(unsafe.Pointer(cs)) // FREED
	return n
}

func main() {
	fmt.Println(keep("sha256"), other("sha512"))
}
