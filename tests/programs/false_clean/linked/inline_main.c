/* Built with -isystem inc (tests/test_false_cleans.py): frees what dup_inline gives it. */
#include <stdio.h>
#include <stdlib.h>
#include <dup_inline.h>

int main(void) {
	char *p = dup_inline("hello");
	printf("%s\n", p);
	free(p);
	return 0;
}
