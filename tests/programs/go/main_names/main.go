// The program's main and its closures, as findings name them (leakharness's Go builds rename main
// to run the exit-time check after it; the findings must show main.main again):
//   main closure: a goroutine's closure loses 3 x 20 B (Go caller main.main.func1)
//   main read:    main reads a freed C block (use after free in main.main)
package main

/*
#include <stdlib.h>
#include <string.h>
*/
import "C"

import (
	"fmt"
	"os"
	"unsafe"
)

var sink *C.char

func main() {
	if os.Args[1] == "read" {
		p := C.malloc(64)
		C.memset(p, 7, 64)
		C.free(p)
		fmt.Println((*[64]byte)(unsafe.Pointer(p))[10]) // BUG: use after free, read in Go
		return
	}
	done := make(chan bool)
	go func() {
		for i := 0; i < 3; i++ {
			sink = C.CString("leaked in goroutine") // BUG: 3 x 20 B
		}
		sink = nil
		done <- true
	}()
	<-done
}
