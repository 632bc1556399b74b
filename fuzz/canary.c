/* Planted faults that `make sanitize` triggers before the real run, built with the same
 * flags as the extension: each must end its process with a sanitizer report, proving that
 * the runtime is loaded, the instrumentation is in, and a report fails the run. */
#include <stdlib.h>
#include <string.h>

/* A heap buffer overflow (AddressSanitizer). */
int
canary_heap(int n)
{
    char *volatile p = malloc(8);  /* volatile: UBSan's object-size check does not see 8 */
    memset(p, 1, 8);
    int x = p[n];  /* n = 8: one past the end */
    free(p);
    return x;
}

/* A signed integer overflow (UndefinedBehaviorSanitizer). */
int
canary_int(int n)
{
    return n + 1;  /* n = INT_MAX */
}
