// A Go program whose OpenSSL calls are in other packages: one of its own module
// (internal/hashing) and one of a module beside it (../digest, by a replace directive).
package main

import (
	"fmt"

	"example.com/app/internal/hashing"
	"example.com/digest"
)

func main() {
	fmt.Println(len(hashing.Sum([]byte("hello"))), digest.Size())
}
