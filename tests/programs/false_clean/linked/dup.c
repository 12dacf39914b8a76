/* Built into libdup.a by tests/test_false_cleans.py; a test adds a leak to it and builds it again. */
#include <stdlib.h>
#include <string.h>

/* A copy of s, for the caller to free. */
char *dup_string(const char *s) {
	char *p = malloc(strlen(s) + 1);
	strcpy(p, s);
	return p;
}
