/* Built into libextra.a by tests/test_go.py, outside the Go module (which edits it). */
#include <stdlib.h>
#include <string.h>

char *extra_dup(const char *s) {
	return strdup(s);
}
