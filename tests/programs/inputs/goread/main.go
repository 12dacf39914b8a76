// Reads "gosign.txt" the Go way (os.ReadFile: raw system calls, unseen by an LD_PRELOAD library)
// and "csign.txt" through cgo (fopen in libc: seen).
package main

/*
#include <stdio.h>
#include <stdlib.h>

static int c_reads(void)
{
    FILE *f = fopen("csign.txt", "r");
    if (f == NULL)
        return 0;
    fclose(f);
    return 1;
}
*/
import "C"

import (
	"fmt"
	"os"
)

func main() {
	_, err := os.ReadFile("gosign.txt")
	fmt.Println(err == nil, C.c_reads() == 1)
}
