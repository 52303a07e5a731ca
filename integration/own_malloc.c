/* A program that brings its own malloc, as redis links jemalloc: a bump allocator whose
 * critical section is a pthread mutex. One thread allocates with long stretches inside the
 * lock; a C11 thread (an OS thread libgreen does not manage) signals a condition variable
 * every 2 ms that another thread waits on. Under the shim the allocating fiber is pre-empted
 * inside the lock; a scheduler that freed the C11 thread's wake-up nodes through this malloc
 * would then wait for that fiber on its own carrier, for ever. Prints "done" when it ends. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <threads.h>
#include <unistd.h>

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static _Alignas(64) char g_arena[256 << 20];
static size_t g_used;
static __thread int t_slow;  /* this allocation spins inside the lock */

static void* bump(size_t align, size_t n) {
    pthread_mutex_lock(&g_lock);
    if (t_slow)
        for (volatile unsigned long i = 0; i < 12000000; i++) {
        }
    size_t at = (g_used + sizeof(size_t) + align - 1) & ~(align - 1);
    void* p = NULL;
    if (at + n <= sizeof g_arena) {
        ((size_t*)(g_arena + at))[-1] = n;
        p = g_arena + at;
        g_used = at + n;
    }
    pthread_mutex_unlock(&g_lock);
    if (!p) errno = ENOMEM;
    return p;
}

void* malloc(size_t n) { return bump(16, n); }
void free(void* p) {
    if (!p) return;
    pthread_mutex_lock(&g_lock);  /* a real allocator gives the block back under its lock */
    pthread_mutex_unlock(&g_lock);
}
void* calloc(size_t a, size_t b) {
    void* p = bump(16, a * b);
    if (p) memset(p, 0, a * b);
    return p;
}
void* realloc(void* old, size_t n) {
    void* p = bump(16, n);
    if (p && old) {
        size_t had = ((size_t*)old)[-1];
        memcpy(p, old, had < n ? had : n);
    }
    return p;
}
void* memalign(size_t a, size_t n) { return bump(a < 16 ? 16 : a, n); }
void* aligned_alloc(size_t a, size_t n) { return memalign(a, n); }
int posix_memalign(void** out, size_t a, size_t n) {
    *out = memalign(a, n);
    return *out ? 0 : ENOMEM;
}
void* valloc(size_t n) { return memalign(4096, n); }
void* pvalloc(size_t n) { return memalign(4096, (n + 4095) & ~4095ul); }
size_t malloc_usable_size(void* p) { return p ? ((size_t*)p)[-1] : 0; }

static atomic_int g_stop;
static pthread_mutex_t g_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_c = PTHREAD_COND_INITIALIZER;

static void* allocating(void* arg) {
    (void)arg;
    for (int i = 0; i < 40; i++) {
        t_slow = 1;
        void* p = malloc(64);
        t_slow = 0;
        free(p);
        for (volatile unsigned long j = 0; j < 1500000; j++) {
        }
    }
    atomic_store(&g_stop, 1);
    return NULL;
}

static void* waiter(void* arg) {
    (void)arg;
    pthread_mutex_lock(&g_m);
    while (!atomic_load(&g_stop)) pthread_cond_wait(&g_c, &g_m);
    pthread_mutex_unlock(&g_m);
    return NULL;
}

static int waker(void* arg) {
    (void)arg;
    while (!atomic_load(&g_stop)) {
        usleep(2000);
        pthread_mutex_lock(&g_m);
        pthread_cond_signal(&g_c);
        pthread_mutex_unlock(&g_m);
    }
    pthread_mutex_lock(&g_m);
    pthread_cond_broadcast(&g_c);
    pthread_mutex_unlock(&g_m);
    return 0;
}

int main(void) {
    pthread_t a, w;
    thrd_t k;
    pthread_create(&w, NULL, waiter, NULL);
    pthread_create(&a, NULL, allocating, NULL);
    thrd_create(&k, waker, NULL);
    pthread_join(a, NULL);
    pthread_join(w, NULL);
    thrd_join(k, NULL);
    printf("done\n");
    return 0;
}
