/* A library that reads a file in its constructor, which glibc runs before a preloaded library's
 * own constructor: the recorder must set itself up on that first call and record it. */
#include <stdio.h>

static int configured;

__attribute__((constructor)) static void read_config(void)
{
    FILE *f = fopen("ctor.conf", "r");
    configured = f != NULL;
    if (f)
        fclose(f);
}

int lh_ctor_configured(void) { return configured; }
