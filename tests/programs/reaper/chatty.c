/* Writes 1 MiB to stdout, then exits 0: with a smaller output cap (LEAKHARNESS_OUTPUT_CAP) the
 * write past the cap raises SIGXFSZ, and the job must say the output limit was reached. */
#include <string.h>
#include <unistd.h>

int main(void)
{
    static char block[65536];
    memset(block, 'x', sizeof block);
    for (int i = 0; i < 16; i++)
        if (write(1, block, sizeof block) < 0)
            return 1;
    return 0;
}
