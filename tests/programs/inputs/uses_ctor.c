/* Linked with ctor_lib.c (libctor.so), whose constructor reads "ctor.conf". */
#include <stdio.h>

int lh_ctor_configured(void);

int main(void)
{
    printf("%d\n", lh_ctor_configured());
    return 0;
}
