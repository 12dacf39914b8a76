// Holds C memory only through a Go object, then ends with os.Exit before main returns: no checker
// can tell whether that block was lost, so neither may call the run clean.
package main

/*
#include <stdlib.h>
*/
import "C"

import (
	"fmt"
	"os"
	"unsafe"
)

type buffer struct{ p unsafe.Pointer }

var held *buffer // a global: valgrind sees the block as still reachable through Go's heap

func main() {
	held = &buffer{p: C.malloc(48)}
	fmt.Println("allocated", held.p != nil)
	os.Exit(3)
}
