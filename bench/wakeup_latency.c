/* wakeup_latency: how late a sleeping thread wakes while T others compute without ever
 * blocking, and how long a thread spinning on a flag waits for a thread that sets it after a
 * sleep. Natively the kernel pre-empts; under the shim, time slices do (GREEN_TIMESLICE_US).
 *
 *   wakeup_latency T SECONDS
 *
 * Prints: mean_us=A p50_us=B p99_us=C max_us=D wakeups=N spin_wait_ms=S */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static atomic_int g_stop;
static atomic_int g_flag;

static long now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000L + t.tv_nsec / 1000;
}

static void* compute(void* arg) {
    (void)arg;
    volatile unsigned long x = 1;
    while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) x = x * 6364136223846793005ul + 1;
    return NULL;
}

static void* set_after_50ms(void* arg) {
    (void)arg;
    usleep(50000);
    atomic_store(&g_flag, 1);
    return NULL;
}

static int by_value(const void* a, const void* b) {
    long x = *(const long*)a, y = *(const long*)b;
    return (x > y) - (x < y);
}

int main(int argc, char** argv) {
    int n = argc > 1 ? atoi(argv[1]) : 2;
    double seconds = argc > 2 ? atof(argv[2]) : 2.0;
    if (n < 0 || n > 64 || seconds <= 0) {
        fprintf(stderr, "usage: wakeup_latency THREADS(0-64) SECONDS\n");
        return 2;
    }
    pthread_t t[64];
    for (int i = 0; i < n; ++i) pthread_create(&t[i], NULL, compute, NULL);
    /* Sleeps of 1 ms: each one's lateness is how long the wake-up waited for a CPU. */
    static long late[200000];
    int count = 0;
    long end = now_us() + (long)(seconds * 1e6);
    while (now_us() < end && count < 200000) {
        long start = now_us();
        usleep(1000);
        late[count++] = now_us() - start - 1000;
    }
    /* A spin-wait on a thread that sleeps first, while the others still compute. */
    pthread_t setter;
    long spin_start = now_us();
    pthread_create(&setter, NULL, set_after_50ms, NULL);
    while (!atomic_load(&g_flag)) {
    }
    long spin_us = now_us() - spin_start;
    pthread_join(setter, NULL);
    atomic_store(&g_stop, 1);
    for (int i = 0; i < n; ++i) pthread_join(t[i], NULL);
    qsort(late, (size_t)count, sizeof late[0], by_value);
    long sum = 0;
    for (int i = 0; i < count; ++i) sum += late[i];
    printf("mean_us=%ld p50_us=%ld p99_us=%ld max_us=%ld wakeups=%d spin_wait_ms=%.1f\n",
           count ? sum / count : 0, count ? late[count / 2] : 0,
           count ? late[count * 99 / 100] : 0, count ? late[count - 1] : 0, count,
           spin_us / 1000.0);
    return 0;
}
