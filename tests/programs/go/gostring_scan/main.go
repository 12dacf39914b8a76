// C.GoString of C strings of every length from 0 to 63: Go's word-wide length search reads past
// the end of the short ones' blocks (not a bug); with an argument, first one of a freed string (a
// bug; valgrind counts the later reads of the same stack in its record).
package main

/*
#include <stdlib.h>
#include <string.h>
static char *make_str(int n) {
	char *s = malloc(n + 1);
	memset(s, 'a', n);
	s[n] = 0;
	return s;
}
*/
import "C"

import (
	"fmt"
	"os"
	"unsafe"
)

func lengths() int {
	total := 0
	for n := 0; n < 64; n++ {
		s := C.make_str(C.int(n))
		total += len(C.GoString(s))
		C.free(unsafe.Pointer(s))
	}
	return total
}

func readFreed() int {
	s := C.make_str(5)
	C.free(unsafe.Pointer(s))
	return len(C.GoString(s)) // use after free
}

func main() {
	total := 0
	if len(os.Args) > 1 {
		total += readFreed()
	}
	total += lengths()
	fmt.Println(total)
}
