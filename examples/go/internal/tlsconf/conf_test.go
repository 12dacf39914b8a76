package tlsconf

import "testing"

func TestFingerprint(t *testing.T) {
	if got := Fingerprint([]byte{0xde, 0xad, 0xbe, 0xef}); got != "DE:AD:BE:EF" {
		t.Fatalf("Fingerprint = %q", got)
	}
}
