/* cpu_threads: T threads each computing a fixed amount (never blocking), natively or under
 * the shim: the overhead on a program that does not block.
 *
 *   cpu_threads T ITERATIONS
 *
 * Prints: seconds=X checksum=Y */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long g_iterations;

static void* crunch(void* arg) {
    uint64_t x = (uint64_t)(uintptr_t)arg + 1;
    for (long i = 0; i < g_iterations; ++i) x = x * 6364136223846793005ull + 1442695040888963407ull;
    return (void*)(uintptr_t)(x >> 32);
}

int main(int argc, char** argv) {
    int n = argc > 1 ? atoi(argv[1]) : 4;
    g_iterations = argc > 2 ? atol(argv[2]) : 200000000;
    pthread_t t[256];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; ++i) pthread_create(&t[i], NULL, crunch, (void*)(uintptr_t)i);
    uint64_t sum = 0;
    for (int i = 0; i < n; ++i) {
        void* r;
        pthread_join(t[i], &r);
        sum += (uintptr_t)r;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("seconds=%.3f checksum=%llu\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9,
           (unsigned long long)sum);
    return 0;
}
