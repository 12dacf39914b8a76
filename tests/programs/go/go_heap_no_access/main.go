// Go memory that valgrind has marked no-access, as it does now and then to a goroutine stack's
// memory that another goroutine's stack used before (the memcheck checker's go_heap_access says
// why).  Here the marking is done on purpose, on a Go slice, so that it happens on every run.
// With the argument "c-overflow" the C side also writes one byte past a malloc'd block: that is
// the program's bug and must still be reported.
package main

/*
#include <stdlib.h>
#include <string.h>
#include <valgrind/memcheck.h>

static void lose_track_of(void *p, unsigned long n) { VALGRIND_MAKE_MEM_NOACCESS(p, n); }

static void overflow(void) {
	char *p = malloc(16);
	memset(p, 'x', 17);
	free(p);
}
*/
import "C"

import (
	"fmt"
	"os"
	"unsafe"
)

func main() {
	b := make([]byte, 64)
	C.lose_track_of(unsafe.Pointer(&b[0]), C.ulong(len(b)))
	b[3] = 7 // a write valgrind now calls invalid: inside Go's heap, never the program's bug
	if len(os.Args) > 1 && os.Args[1] == "c-overflow" {
		C.overflow()
	}
	fmt.Println(b[3])
}
