/* For the residue checker beside the recorder: the key read from "key.txt" (fopen) is left in
 * a freed block and in a dead stack frame; both must be found the same with the recorder loaded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void load(char *out, size_t size)
{
    char stack_copy[64] = "";
    FILE *f = fopen("key.txt", "r");
    if (f) {
        if (!fgets(stack_copy, sizeof stack_copy, f))
            stack_copy[0] = '\0';
        fclose(f);
    }
    stack_copy[strcspn(stack_copy, "\n")] = '\0';
    strncpy(out, stack_copy, size - 1);  /* the stack copy is not cleansed */
}

int main(void)
{
    char *key = calloc(1, 64);
    load(key, 64);
    printf("%zu\n", strlen(key));
    free(key);  /* freed still holding the key */
    return 0;
}
