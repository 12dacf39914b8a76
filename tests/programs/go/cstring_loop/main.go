// A user's program: 1,000 C strings never freed, from two Go lines in a loop. valgrind splits
// them into several loss records by the stale words it unwinds past cgo's stack switch.
package main

/*
#include <stdlib.h>
#include <string.h>
*/
import "C"

import "fmt"

//go:noinline
func keep(name string) int {
	cs := C.CString(name) // never freed: 7 bytes ("sha256" and its NUL)
	return int(C.strlen(cs))
}

//go:noinline
func other(name string) int {
	cs := C.CString(name + "x") // never freed: 8 bytes
	return int(C.strlen(cs))
}

func main() {
	total := 0
	for i := 0; i < 500; i++ {
		total += keep("sha256")
		total += other("sha256")
	}
	fmt.Println("total", total)
}
