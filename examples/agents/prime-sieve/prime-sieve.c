/* prime-sieve: counts the primes below N with a sieve of Eratosthenes (odd numbers only).
 *
 * stdin:  {"n": N}        0 <= N <= 50000000
 * stdout: {"n":N,"primes":COUNT,"largest":P}   (largest prime below N, 0 when none)
 * tools:  none
 *
 * Compute-bound on purpose: the benchmark workload. Work grows as N log log N and memory
 * as N/2 bytes (25 MB at the maximum N).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_N 50000000u

static void fail(const char *why) {
    fprintf(stderr, "prime-sieve: %s\n", why);
    printf("{\"error\":\"%s\"}\n", why);
    exit(1);
}

/* Finds "n": <unsigned integer> in a flat JSON object. */
static uint32_t parse_n(const char *s) {
    const char *k = strstr(s, "\"n\"");
    if (!k) fail("input must be a JSON object like {\"n\": 1000000}");
    k += 3;
    while (*k == ' ' || *k == '\t' || *k == '\n' || *k == '\r') k++;
    if (*k++ != ':') fail("malformed JSON");
    while (*k == ' ' || *k == '\t' || *k == '\n' || *k == '\r') k++;
    if (*k < '0' || *k > '9') fail("n must be a non-negative integer");
    uint64_t n = 0;
    while (*k >= '0' && *k <= '9') {
        n = n * 10 + (uint64_t)(*k++ - '0');
        if (n > MAX_N) fail("n must be at most 50000000");
    }
    if (*k == '.' || *k == 'e' || *k == 'E') fail("n must be a non-negative integer");
    return (uint32_t)n;
}

int main(void) {
    static char input[4096];
    size_t len = fread(input, 1, sizeof input - 1, stdin);
    input[len] = 0;
    uint32_t n = parse_n(input);

    uint32_t count = 0, largest = 0;
    if (n > 2) {
        count = 1; /* the prime 2 */
        largest = 2;
        /* composite[i] describes the odd number 2i+1, for 2i+1 < n */
        uint32_t size = n / 2;
        unsigned char *composite = calloc(size, 1);
        if (!composite) fail("out of memory");
        for (uint32_t i = 1; i < size; i++) {
            if (composite[i]) continue;
            uint32_t p = 2 * i + 1;
            count++;
            largest = p;
            for (uint64_t j = (uint64_t)p * p / 2; j < size; j += p) composite[j] = 1;
        }
        free(composite);
    }
    printf("{\"n\":%u,\"primes\":%u,\"largest\":%u}\n", n, count, largest);
    return 0;
}
