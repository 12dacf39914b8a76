// C.malloc with another integer type, and the text "C.malloc(" in a string: the go-asan build's
// recording wrappers must neither break the build nor change what the program prints.
package main

/*
#include <stdlib.h>
*/
import "C"

import "fmt"

func main() {
	var n C.int = 8
	p := C.malloc(C.ulong(n))       // 8 B, never freed
	q := C.malloc(C.size_t(n) * 2) // 16 B, never freed
	fmt.Println(p != nil, q != nil, "C.malloc(", `C.free(`)
}
