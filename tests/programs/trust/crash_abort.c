/* Dies of SIGABRT: ASan does not report an abort() (handle_abort=0), so under asan there is no report. */
#include <stdlib.h>

int main(void)
{
    abort();
}
