/* Linked with libdup.a (tests/test_false_cleans.py): frees what dup_string gives it. */
#include <stdio.h>
#include <stdlib.h>

char *dup_string(const char *s);

int main(void) {
	char *p = dup_string("hello");
	printf("%s\n", p);
	free(p);
	return 0;
}
