// Leaks C memory, then ends with os.Exit before main returns: no exit-time leak check can run.
package main

/*
#include <stdlib.h>
*/
import "C"

import (
	"fmt"
	"os"
)

func main() {
	p := C.malloc(32)
	fmt.Println("allocated", p != nil)
	os.Exit(0)
}
