// An SSL error path that loses its SSL and SSL_CTX: built by plain `go build`, valgrind sees the
// blocks as still reachable (dead Go frames hold their addresses), so memcheck cannot check its leaks.
package main

/*
#cgo LDFLAGS: -lcrypto -lssl
#include <openssl/ssl.h>
*/
import "C"

import (
	"errors"
	"fmt"
)

func connect() error {
	ctx := C.SSL_CTX_new(C.TLS_client_method())
	if ctx == nil {
		return errors.New("ctx")
	}
	ssl := C.SSL_new(ctx)
	if C.SSL_set_fd(ssl, -1) == 1 || true {
		return errors.New("no connection") // BUG: ssl and ctx leak
	}
	C.SSL_free(ssl)
	C.SSL_CTX_free(ctx)
	return nil
}

func main() {
	fmt.Println(connect())
}
