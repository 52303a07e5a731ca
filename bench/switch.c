/* switch: round trips between two threads, run natively and under the shim by
 * scripts/bench.sh. Plain pthreads, no knowledge of libgreen.
 *
 *   switch yield N   two threads alternate with sched_yield, N round trips
 *   switch pipe N    two threads ping-pong one byte over two pipes, N round trips
 *
 * Prints: ns_per_round_trip=X */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long g_rounds;
static volatile int g_turn;
static int g_ping[2], g_pong[2];

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* Yield until it is `me`'s turn; hand the turn over after each step. */
static void* yielder(void* arg) {
    int me = (int)(long)arg;
    for (long i = 0; i < g_rounds; ++i) {
        while (__atomic_load_n(&g_turn, __ATOMIC_ACQUIRE) != me) sched_yield();
        __atomic_store_n(&g_turn, 1 - me, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void* ponger(void* arg) {
    (void)arg;
    char c;
    for (long i = 0; i < g_rounds; ++i) {
        if (read(g_ping[0], &c, 1) != 1 || write(g_pong[1], &c, 1) != 1) abort();
    }
    return NULL;
}

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s yield|pipe N\n", argv[0]);
        return 2;
    }
    g_rounds = atol(argv[2]);
    pthread_t t;
    double start = now_ns();
    if (!strcmp(argv[1], "yield")) {
        pthread_create(&t, NULL, yielder, (void*)1L);
        yielder((void*)0L);
    } else {
        if (pipe(g_ping) || pipe(g_pong)) return 1;
        pthread_create(&t, NULL, ponger, NULL);
        char c = 'x';
        for (long i = 0; i < g_rounds; ++i)
            if (write(g_ping[1], &c, 1) != 1 || read(g_pong[0], &c, 1) != 1) abort();
    }
    pthread_join(t, NULL);
    printf("ns_per_round_trip=%.0f\n", (now_ns() - start) / g_rounds);
    return 0;
}
