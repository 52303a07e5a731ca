/* spawn: creates and joins N short threads, K at a time, natively or under the shim.
 *
 *   spawn N K
 *
 * Prints: seconds=X peak_rss_kb=Y */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static void* work(void* arg) { return arg; }

int main(int argc, char** argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    long k = argc > 2 ? atol(argv[2]) : 100;
    pthread_t* t = malloc(sizeof *t * (size_t)k);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long done = 0; done < n; done += k) {
        for (long i = 0; i < k; ++i)
            if (pthread_create(&t[i], NULL, work, NULL) != 0) return 1;
        for (long i = 0; i < k; ++i) pthread_join(t[i], NULL);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("seconds=%.3f peak_rss_kb=%ld\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9,
           ru.ru_maxrss);
    return 0;
}
