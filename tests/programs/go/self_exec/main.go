// A program that runs itself as a child, as Go's helper-process idiom does.  Each process's
// exit-time leak check vouches for that process only:
//   main parent-exits: the parent loses 18 B and leaves by os.Exit (its check never runs); the
//                      child's main returns (its check runs and says so)
//   main child-exits:  the child loses 17 B and leaves by os.Exit; the parent's main returns
package main

/*
#include <stdlib.h>
*/
import "C"

import (
	"fmt"
	"os"
	"os/exec"
)

var sink *C.char

func main() {
	if os.Getenv("LH_SELF_EXEC_CHILD") == "1" {
		if os.Args[1] == "child-exits" {
			sink = C.CString("child leaks this")
			sink = nil
			os.Exit(0)
		}
		fmt.Println("child: done")
		return
	}
	if os.Args[1] == "parent-exits" {
		sink = C.CString("parent leaks this")
		sink = nil
	}
	cmd := exec.Command(os.Args[0], os.Args[1])
	cmd.Env = append(os.Environ(), "LH_SELF_EXEC_CHILD=1")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Println("child:", err)
	}
	if os.Args[1] == "parent-exits" {
		os.Exit(0)
	}
}
