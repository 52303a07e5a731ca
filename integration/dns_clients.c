/* dns_clients: COUNT threads resolve a name each with getaddrinfo, all at once; a ticker
 * thread counts 10 ms sleeps meanwhile (it stalls if a lookup blocks the process). Plain C
 * with pthreads, no knowledge of libgreen.
 *
 *   dns_clients COUNT FORMAT     FORMAT has one %d, the thread's index (host%d.test)
 *
 * Prints one line: resolved=N failed=N error=<first gai_strerror> elapsed_ms=N ticks=N */
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char* g_format;
static atomic_int g_resolved, g_failed, g_first_error;
static atomic_int g_done;
static atomic_int g_ticks;

static void* resolve(void* arg) {
    char name[256];
    snprintf(name, sizeof name, g_format, (int)(long)arg);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(name, "80", &hints, &res);
    if (rc == 0) {
        atomic_fetch_add(&g_resolved, 1);
        freeaddrinfo(res);
    } else {
        int none = 0;
        atomic_compare_exchange_strong(&g_first_error, &none, rc);
        atomic_fetch_add(&g_failed, 1);
    }
    return NULL;
}

static void* tick(void* arg) {
    (void)arg;
    struct timespec ten_ms = {0, 10 * 1000 * 1000};
    while (!atomic_load(&g_done)) {
        nanosleep(&ten_ms, NULL);
        atomic_fetch_add(&g_ticks, 1);
    }
    return NULL;
}

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s COUNT FORMAT\n", argv[0]);
        return 2;
    }
    int count = atoi(argv[1]);
    g_format = argv[2];
    pthread_t ticker;
    pthread_create(&ticker, NULL, tick, NULL);
    pthread_t* threads = calloc((size_t)count, sizeof *threads);
    long start = now_ms();
    for (int i = 0; i < count; ++i) {
        if (pthread_create(&threads[i], NULL, resolve, (void*)(long)i) != 0) {
            perror("pthread_create");
            return 1;
        }
    }
    for (int i = 0; i < count; ++i) pthread_join(threads[i], NULL);
    long elapsed = now_ms() - start;
    atomic_store(&g_done, 1);
    pthread_join(ticker, NULL);
    int error = atomic_load(&g_first_error);
    printf("resolved=%d failed=%d error=%s elapsed_ms=%ld ticks=%d\n", atomic_load(&g_resolved),
           atomic_load(&g_failed), error ? gai_strerror(error) : "none", elapsed,
           atomic_load(&g_ticks));
    free(threads);
    return 0;
}
