/* Issue 16 item 5: writes N bytes (argv[1], default 8 MiB) to stdout in 64 KiB chunks, ignoring
 * SIGXFSZ and every write error, as a program that logs without checking does.  Past a file-size
 * limit (RLIMIT_FSIZE) each write then fails with EFBIG instead of killing the program, which
 * exits 0 as if all was well: only the file's size shows that its output was cut. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    static char chunk[65536];
    unsigned long long total = argc > 1 ? strtoull(argv[1], NULL, 10) : 8ULL << 20;
    unsigned long long attempted = 0, failed = 0;
    signal(SIGXFSZ, SIG_IGN);
    memset(chunk, 'x', sizeof chunk);
    chunk[sizeof chunk - 1] = '\n';
    while (attempted < total) {
        size_t n = total - attempted < sizeof chunk ? (size_t)(total - attempted) : sizeof chunk;
        if (write(STDOUT_FILENO, chunk, n) < 0)
            failed++; /* EFBIG past the limit: counted, never reported */
        attempted += n;
    }
    (void)failed;
    return 0;
}
