// Package tlsconf formats key fingerprints with OpenSSL through cgo.  Planted leak: Fingerprint
// never frees the string OPENSSL_buf2hexstr returns.
package tlsconf

/*
#cgo LDFLAGS: -lcrypto
#include <openssl/crypto.h>
*/
import "C"

import "unsafe"

// Fingerprint is the hex form of key, colon-separated, as OpenSSL prints it.
func Fingerprint(key []byte) string {
	if len(key) == 0 {
		return ""
	}
	hex := C.OPENSSL_buf2hexstr((*C.uchar)(unsafe.Pointer(&key[0])), C.long(len(key)))
	return C.GoString(hex)
}
