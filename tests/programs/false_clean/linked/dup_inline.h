/* Included from an -isystem folder (tests/test_false_cleans.py): a test adds a leak to it. */
#include <stdlib.h>
#include <string.h>

/* A copy of s, for the caller to free. */
static inline char *dup_inline(const char *s) {
	char *p = malloc(strlen(s) + 1);
	strcpy(p, s);
	return p;
}
