/* Outside the Go module, included through #cgo CFLAGS: -I (tests/test_go.py edits it). */
#include <stdlib.h>
#include <string.h>

char *extra_dup(const char *s);

static inline char *extra_copy(const char *s) {
	return strdup(s);
}
