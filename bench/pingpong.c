/* pingpong: two threads, both made by main (which only joins them), hand a turn back and
 * forth N times through two pipes or through a mutex and a condition variable; each side
 * blocks until the other hands the turn over. Under the shim with two carriers the
 * least-loaded placement puts the two threads on different carriers, so every hand-off is a
 * cross-carrier wake-up; with GREEN_CARRIERS=1 both share one. Plain pthreads.
 *
 *   pingpong pipe|cond N
 *
 * Prints: ns_per_round_trip=X wake_p50_ns=A wake_p99_ns=B same_os_thread=0|1
 * wake_*: from just before the waker's write (or signal) to the woken thread's return from
 * its read (or wait), both sides' hand-offs counted. same_os_thread says whether the two
 * threads ran on one kernel thread (/proc/thread-self names the kernel's, not a fiber's). */
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long g_rounds;
static int g_use_pipe;
static int g_pipes[2][2]; /* g_pipes[i]: thread i reads g_pipes[i][0] */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_turned = PTHREAD_COND_INITIALIZER;
static int g_turn;          /* under g_lock: whose turn it is */
static int64_t g_signalled; /* under g_lock: when the turn was handed over */
static int64_t* g_wake_ns[2];
static char g_kernel_thread[2][64];

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Hands the turn to the other thread, then waits for it to come back: one half of a round
 * trip each way. Returns when the wait ended, noting how long the wake-up took. */
static void hand_over_and_wait(int me, long i) {
    int64_t sent_at = now_ns(), woken_at;
    if (g_use_pipe) {
        if (write(g_pipes[1 - me][1], &sent_at, sizeof sent_at) != sizeof sent_at) abort();
        if (read(g_pipes[me][0], &sent_at, sizeof sent_at) != sizeof sent_at) abort();
        woken_at = now_ns();
    } else {
        pthread_mutex_lock(&g_lock);
        g_turn = 1 - me;
        g_signalled = sent_at;
        pthread_cond_signal(&g_turned);
        while (g_turn != me) pthread_cond_wait(&g_turned, &g_lock);
        woken_at = now_ns();
        sent_at = g_signalled;
        pthread_mutex_unlock(&g_lock);
    }
    g_wake_ns[me][i] = woken_at - sent_at;
}

static void* player(void* arg) {
    int me = (int)(intptr_t)arg;
    ssize_t n = readlink("/proc/thread-self", g_kernel_thread[me], sizeof g_kernel_thread[me] - 1);
    if (n > 0) g_kernel_thread[me][n] = '\0';
    if (me == 1) { /* thread 1 starts by waiting for the first hand-over */
        int64_t sent_at;
        if (g_use_pipe) {
            if (read(g_pipes[1][0], &sent_at, sizeof sent_at) != sizeof sent_at) abort();
        } else {
            pthread_mutex_lock(&g_lock);
            while (g_turn != 1) pthread_cond_wait(&g_turned, &g_lock);
            pthread_mutex_unlock(&g_lock);
        }
    }
    /* Thread 0's last wait is answered by thread 1's last hand-over; thread 1's is not. */
    for (long i = 0; i < g_rounds - me; ++i) hand_over_and_wait(me, i);
    if (me == 1) {
        int64_t sent_at = now_ns();
        if (g_use_pipe) {
            if (write(g_pipes[0][1], &sent_at, sizeof sent_at) != sizeof sent_at) abort();
        } else {
            pthread_mutex_lock(&g_lock);
            g_turn = 0;
            g_signalled = sent_at;
            pthread_cond_signal(&g_turned);
            pthread_mutex_unlock(&g_lock);
        }
    }
    return NULL;
}

static int by_value(const void* a, const void* b) {
    int64_t x = *(const int64_t*)a, y = *(const int64_t*)b;
    return (x > y) - (x < y);
}

int main(int argc, char** argv) {
    if (argc != 3 || (strcmp(argv[1], "pipe") && strcmp(argv[1], "cond")) || atol(argv[2]) < 2) {
        fprintf(stderr, "usage: %s pipe|cond N (N >= 2)\n", argv[0]);
        return 2;
    }
    g_use_pipe = !strcmp(argv[1], "pipe");
    g_rounds = atol(argv[2]);
    if (g_use_pipe && (pipe(g_pipes[0]) || pipe(g_pipes[1]))) return 1;
    for (int i = 0; i < 2; ++i) g_wake_ns[i] = calloc((size_t)g_rounds, sizeof(int64_t));
    pthread_t t[2];
    int64_t start = now_ns();
    for (int i = 0; i < 2; ++i) pthread_create(&t[i], NULL, player, (void*)(intptr_t)i);
    for (int i = 0; i < 2; ++i) pthread_join(t[i], NULL);
    int64_t elapsed = now_ns() - start;
    /* Thread 0 noted g_rounds wake-ups, thread 1 one fewer (its first wait is not timed). */
    long count = 2 * g_rounds - 1;
    int64_t* all = malloc(sizeof *all * (size_t)count);
    memcpy(all, g_wake_ns[0], sizeof *all * (size_t)g_rounds);
    memcpy(all + g_rounds, g_wake_ns[1], sizeof *all * (size_t)(g_rounds - 1));
    qsort(all, (size_t)count, sizeof *all, by_value);
    printf("ns_per_round_trip=%.0f wake_p50_ns=%lld wake_p99_ns=%lld same_os_thread=%d\n",
           (double)elapsed / (double)g_rounds, (long long)all[count / 2],
           (long long)all[count * 99 / 100],
           g_kernel_thread[0][0] && !strcmp(g_kernel_thread[0], g_kernel_thread[1]));
    return 0;
}
