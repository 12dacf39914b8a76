// A user's program that crashes inside OpenSSL: a nil *C.SSL handed to SSL_get_state.
package main

/*
#cgo pkg-config: openssl
#include <openssl/ssl.h>
*/
import "C"

import "fmt"

//go:noinline
func connect() *C.SSL { return nil }

//go:noinline
func reportState(s *C.SSL) int {
	return int(C.SSL_get_state(s))
}

func main() {
	fmt.Println("state", reportState(connect()))
}
