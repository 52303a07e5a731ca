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
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

/* Holds its thread inside a system call libgreen does not interpose (it blocks the carrier):
 * rt_sigtimedwait made with syscall(), which libgreen passes through (sigtimedwait() parks). */
void* wait_in_sigtimedwait(void* arg) {
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    struct timespec t = {0, 400 * 1000 * 1000};
    int r = (int)syscall(SYS_rt_sigtimedwait, &set, NULL, &t, _NSIG / 8);
    printf("sigtimedwait: %s\n", r < 0 && errno == EAGAIN ? "EAGAIN"
                                 : r < 0                  ? strerror(errno)
                                                          : "signal");
    return NULL;
}

/* Holds its thread in a system call newer than the watchdog's old table knew: epoll_pwait2
 * (441) on an idle epoll set, made with syscall() (only SYS_futex is libgreen's there). */
void* wait_in_epoll_pwait2(void* arg) {
    (void)arg;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event event;
    struct timespec t = {0, 400 * 1000 * 1000};
    long r = syscall(SYS_epoll_pwait2, ep, &event, 1, &t, NULL, 8);
    printf("epoll_pwait2: %ld\n", r);
    close(ep);
    return NULL;
}

/* Holds its thread inside libc for 500 ms: memset over a big buffer, again and again. An
 * unwinder started there could need a lock that libc code holds, so the watchdog must not. */
static char* volatile big_buffer;
void* memset_for_500ms(void* arg) {
    (void)arg;
    usleep(1000);
    const size_t size = 32u << 20;
    big_buffer = malloc(size);
    if (!big_buffer) abort();
    int fill = 0;
    double end = now_seconds() + 0.5;
    while (now_seconds() < end) memset(big_buffer, ++fill, size);
    if (big_buffer[size - 1] != (char)fill) abort();
    free(big_buffer);
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

/* Parks in read with values of 2^63 and above live in callee-saved registers across the call
 * (so that Boost.Context may save some of them in its context). */
static int high_pipe[2];
void* wait_with_high_registers(void* arg) {
    (void)arg;
    char c = 0;
    register unsigned long r12 __asm__("r12") = 0xfedcba9876543210ul;
    register unsigned long r13 __asm__("r13") = 0x8badf00d8badf00dul;
    register unsigned long r14 __asm__("r14") = 0xffffffffffffff00ul;
    register unsigned long r15 __asm__("r15") = 0xdeadbeefcafef00dul;
    __asm__ volatile("" : "+r"(r12), "+r"(r13), "+r"(r14), "+r"(r15));
    long n = read(high_pipe[0], &c, 1);
    __asm__ volatile("" : "+r"(r12), "+r"(r13), "+r"(r14), "+r"(r15));
    if (r12 != 0xfedcba9876543210ul || r13 != 0x8badf00d8badf00dul || r14 != 0xffffffffffffff00ul ||
        r15 != 0xdeadbeefcafef00dul)
        abort(); /* a register came back changed */
    return (void*)(n == 1 && c == 'y' ? 1l : 0l);
}

/* sigwaitinfo(set) as a raw system call made with values of 2^63 and above in every
 * callee-saved register but rbp, held for as long as it waits: what gdb sees in the carrier
 * thread when it attaches. Repeats on EINTR (an attach interrupts it). */
static long sigwait_with_high_registers(const sigset_t* set) {
    long ret;
    __asm__ volatile(
        "movabs $0x8000000000000012, %%rbx\n\t"
        "movabs $0xfedcba9876543210, %%r12\n\t"
        "movabs $0xffffffffffffff00, %%r13\n\t"
        "movabs $0x8badf00d8badf00d, %%r14\n\t"
        "movabs $0xdeadbeefcafef00d, %%r15\n\t"
        "1:\n\t"
        "mov %[nr], %%eax\n\t"
        "mov %[size], %%r10\n\t"
        "syscall\n\t"
        "cmp $-4, %%rax\n\t"
        "je 1b\n\t"
        : "=&a"(ret)
        : [nr] "i"(SYS_rt_sigtimedwait), "D"(set), "S"(0l), "d"(0l), [size] "i"(8)
        : "rbx", "rcx", "r10", "r11", "r12", "r13", "r14", "r15", "memory");
    return ret;
}

void* nap(void* arg) {
    (void)arg;
    usleep(1000);
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
    if (!strcmp(name, "new_syscall")) {
        pthread_t t;
        pthread_create(&t, NULL, wait_in_epoll_pwait2, NULL);
        pthread_join(t, NULL);
        return 0;
    }
    if (!strcmp(name, "in_libc")) {
        pthread_t t;
        pthread_create(&t, NULL, memset_for_500ms, NULL);
        pthread_join(t, NULL);
        printf("filled\n");
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
    if (!strcmp(name, "attach")) {
        /* Three threads parked, main waiting for SIGUSR1 in a raw system call: a debugger
         * attaches, looks, detaches; then SIGUSR1 lets everything finish. */
        prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0); /* Yama: any debugger may attach */
        if (pipe(pipe_fds) != 0 || pipe(high_pipe) != 0) return 1;
        sigset_t usr1;
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        pthread_sigmask(SIG_BLOCK, &usr1, NULL);
        pthread_mutex_lock(&lock_a);
        pthread_t r, m, h;
        pthread_create(&r, NULL, wait_in_read, NULL);
        pthread_create(&m, NULL, wait_on_lock_a, NULL);
        pthread_create(&h, NULL, wait_with_high_registers, NULL);
        usleep(100000); /* all block at once; this only gives them the time to get there */
        printf("ready %d\n", (int)getpid());
        long sig = sigwait_with_high_registers(&usr1);
        printf("woke by signal %ld\n", sig);
        pthread_mutex_unlock(&lock_a);
        if (write(pipe_fds[1], "x", 1) != 1 || write(high_pipe[1], "y", 1) != 1) return 1;
        void* high_result = NULL;
        pthread_join(r, NULL);
        pthread_join(m, NULL);
        pthread_join(h, &high_result);
        printf("done %ld\n", (long)high_result);
        return 0;
    }
    if (!strcmp(name, "fork")) {
        /* A parent and its forked child each run a thread and exit: each one's dump at exit
         * (GREEN_STATS) is of its own process and carrier. */
        pthread_t t;
        pthread_create(&t, NULL, nap, NULL);
        pthread_join(t, NULL);
        pid_t child = fork();
        if (child < 0) return 1;
        pthread_create(&t, NULL, nap, NULL);
        pthread_join(t, NULL);
        if (child > 0) {
            int status = 0;
            if (waitpid(child, &status, 0) != child || !WIFEXITED(status)) return 1;
            printf("child %d exited %d\n", (int)child, WEXITSTATUS(status));
        }
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
    fprintf(stderr,
            "usage: diagnostics spin|syscall|new_syscall|in_libc|deadlock|parked|attach|"
            "fork|blockers\n");
    return 2;
}
