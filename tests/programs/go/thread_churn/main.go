// The Go runtime starting threads as main returns, beside one real 40-byte leak in C. A goroutine
// that exits with its thread locked takes the thread with it, so each next one needs a new thread
// (runtime/cgo's x_cgo_thread_start mallocs its start arguments, which the new thread frees): the
// leak check at main's return nearly always meets a thread still starting.
package main

/*
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *lost;
static void nap(void) { usleep(100); }
static void lose_session_id(void) {
	lost = malloc(40);
	memset(lost, 'k', 40);
	lost = NULL; // BUG: the 40 bytes are never freed
}
*/
import "C"

import (
	"fmt"
	"runtime"
)

func main() {
	for w := 0; w < 4; w++ {
		go func() {
			for {
				done := make(chan bool)
				go func() { runtime.LockOSThread(); C.nap(); done <- true }()
				<-done
			}
		}()
	}
	C.lose_session_id()
	C.usleep(50000)
	fmt.Println("done")
}
