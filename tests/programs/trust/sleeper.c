/* Sleeps a minute: long enough for a test to interrupt whoever runs it. */
#include <unistd.h>

int main(void)
{
    sleep(60);
    return 0;
}
