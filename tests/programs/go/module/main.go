// A Go module with cgo over two files: main here, the OpenSSL wrapper in digest.go.
package main

import "fmt"

func main() {
	for i := 0; i < 4; i++ {
		d := NewDigest()
		d.Write([]byte("hello"))
		fmt.Printf("%x\n", d.Sum())
	}
}
