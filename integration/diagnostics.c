/* Scenarios for libgreen's debugging aids (GREEN_MONITOR_MS, GREEN_DEADLOCK, GREEN_STATS and
 * the gdb helper), each a plain pthreads program. Linked with -rdynamic so that its functions
 * have names in a backtrace. Usage: diagnostics NAME */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Holds its thread for 500 ms without one blocking call: the watchdog's case. */
void* spin_for_500ms(void* arg) {
    (void)arg;
    usleep(1000); /* parks once: "last parked on sleep" */
    volatile unsigned long spins = 0;
    double end = now_seconds() + 0.5;
    while (now_seconds() < end) ++spins;
    return NULL;
}

/* Holds its thread inside a system call libgreen does not interpose (it blocks the carrier). */
void* wait_in_sigtimedwait(void* arg) {
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    struct timespec t = {0, 400 * 1000 * 1000};
    int r = sigtimedwait(&set, NULL, &t);
    printf("sigtimedwait: %s\n", r < 0 && errno == EAGAIN ? "EAGAIN"
                                 : r < 0                  ? strerror(errno)
                                                          : "signal");
    return NULL;
}

pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t lock_b = PTHREAD_MUTEX_INITIALIZER;

void* take_a_then_b(void* arg) {
    (void)arg;
    pthread_mutex_lock(&lock_a);
    usleep(50000);
    pthread_mutex_lock(&lock_b);
    return NULL;
}

void* take_b_then_a(void* arg) {
    (void)arg;
    pthread_mutex_lock(&lock_b);
    usleep(50000);
    pthread_mutex_lock(&lock_a);
    return NULL;
}

static int pipe_fds[2];

void* wait_in_read(void* arg) {
    (void)arg;
    char c;
    return (void*)(long)read(pipe_fds[0], &c, 1);
}

void* wait_on_lock_a(void* arg) {
    (void)arg;
    pthread_mutex_lock(&lock_a);
    return NULL;
}

static volatile int timer_ran;

static void on_timer(union sigval value) {
    (void)value;
    /* glibc runs this on a helper thread of its own: not a fiber, so the calls pass through. */
    if (write(1, "timer thread wrote\n", 19) != 19) abort();
    timer_ran = 1;
}

int main(int argc, char** argv) {
    const char* name = argc > 1 ? argv[1] : "";
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!strcmp(name, "spin")) {
        /* Another thread keeps ticking: under the shim it cannot run during the spin. */
        pthread_t t;
        pthread_create(&t, NULL, spin_for_500ms, NULL);
        pthread_join(t, NULL);
        printf("spun\n");
        return 0;
    }
    if (!strcmp(name, "syscall")) {
        pthread_t t;
        pthread_create(&t, NULL, wait_in_sigtimedwait, NULL);
        pthread_join(t, NULL);
        return 0;
    }
    if (!strcmp(name, "deadlock")) {
        /* The classic: two threads take two mutexes in opposite orders; main joins one. */
        pthread_t a, b;
        pthread_create(&a, NULL, take_a_then_b, NULL);
        pthread_create(&b, NULL, take_b_then_a, NULL);
        printf("started\n");
        pthread_join(a, NULL);
        printf("unreachable\n");
        return 0;
    }
    if (!strcmp(name, "parked")) {
        /* Two threads parked in known places, then main stops at a breakpoint (SIGTRAP). */
        if (pipe(pipe_fds) != 0) return 1;
        pthread_mutex_lock(&lock_a);
        pthread_t r, m;
        pthread_create(&r, NULL, wait_in_read, NULL);
        pthread_create(&m, NULL, wait_on_lock_a, NULL);
        pthread_setname_np(m, "lock-waiter");
        usleep(100000); /* both block at once; this only gives them the time to get there */
        raise(SIGTRAP);
        pthread_mutex_unlock(&lock_a);
        if (write(pipe_fds[1], "x", 1) != 1) return 1;
        pthread_join(r, NULL);
        pthread_join(m, NULL);
        printf("done\n");
        return 0;
    }
    if (!strcmp(name, "blockers")) {
        /* A call that holds the carrier, and calls from a thread the shim does not manage (a
         * SIGEV_THREAD timer's). */
        char buf[4096];
        int fd = open(argv[0], O_RDONLY); /* cached: read at once, holds nothing */
        if (fd < 0 || read(fd, buf, sizeof buf) <= 0) return 1;
        close(fd);
        /* A sleep on the process's CPU clock cannot park (parking stops the clock): it holds
         * the carrier. An absolute time already past returns at once. */
        struct timespec past = {0, 0};
        if (clock_nanosleep(CLOCK_PROCESS_CPUTIME_ID, TIMER_ABSTIME, &past, NULL) != 0) return 1;
        struct sigevent ev;
        memset(&ev, 0, sizeof ev);
        ev.sigev_notify = SIGEV_THREAD;
        ev.sigev_notify_function = on_timer;
        timer_t timer;
        struct itimerspec in_1ms = {{0, 0}, {0, 1000000}};
        if (timer_create(CLOCK_MONOTONIC, &ev, &timer) != 0 ||
            timer_settime(timer, 0, &in_1ms, NULL))
            return 1;
        while (!timer_ran) usleep(1000);
        return 0;
    }
    fprintf(stderr, "usage: diagnostics spin|syscall|deadlock|parked|blockers\n");
    return 2;
}
