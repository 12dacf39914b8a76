package hashing

import (
	"testing"

	"example.com/digest"
)

func TestSum(t *testing.T) {
	if got := len(Sum([]byte("hello"))); got != digest.Size() {
		t.Fatalf("%d bytes", got)
	}
}
