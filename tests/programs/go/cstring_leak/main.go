// A user's program: three names converted with C.CString for OpenSSL and never freed.
package main

/*
#cgo pkg-config: openssl
#include <stdlib.h>
#include <openssl/objects.h>
*/
import "C"

import "fmt"

//go:noinline
func lookup(name string) int {
	cs := C.CString(name) // never freed: 7 bytes each ("sha256" and its NUL)
	return int(C.OBJ_sn2nid(cs))
}

func main() {
	total := 0
	for i := 0; i < 3; i++ {
		total += lookup("sha256")
	}
	fmt.Println("nid sum", total)
}
