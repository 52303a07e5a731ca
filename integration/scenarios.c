/* Named scenarios run under the shim by the integration tests, each a small plain pthreads
 * program that knows nothing of libgreen. Usage: scenarios NAME [args] */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int g_accepted;

static int os_threads(void) {
    char line[256];
    int n = -1;
    FILE* f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1) break;
    if (f) fclose(f);
    return n;
}

static pthread_mutex_t g_gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_gate = PTHREAD_COND_INITIALIZER;
static int g_waiting, g_gate_open;

/* Sleeps a little (a real park), then waits at the gate until main opens it. */
static void* wait_at_gate(void* arg) {
    (void)arg;
    usleep(1000);
    pthread_mutex_lock(&g_gate_lock);
    ++g_waiting;
    while (!g_gate_open) pthread_cond_wait(&g_gate, &g_gate_lock);
    pthread_mutex_unlock(&g_gate_lock);
    return NULL;
}

static int mappings(void) {
    char line[512];
    int n = 0;
    FILE* f = fopen("/proc/self/maps", "r");
    while (f && fgets(line, sizeof line, f)) ++n;
    if (f) fclose(f);
    return n;
}

static void* block_on_fd(void* arg) {
    char c;
    ssize_t n = read((int)(long)arg, &c, 1);
    (void)n;
    return NULL;
}

static void* nap(void* arg) {
    usleep((useconds_t)(long)arg);
    printf("worker done\n");
    fflush(stdout);
    return NULL;
}

static void* snooze(void* arg) {
    usleep((useconds_t)(long)arg);
    return NULL;
}

static void* accept_one(void* arg) {
    return (void*)(long)accept((int)(long)arg, NULL, NULL);
}

static void* write_later(void* arg) {
    usleep(20000);
    ssize_t n = write((int)(long)arg, "w", 1);
    (void)n;
    return NULL;
}

static void say_atexit(void) { printf("atexit ran\n"); }

/* read(2) as an inline system call, which no interposed function sees (as in a static
 * library or a language runtime): it holds whatever OS thread runs it. */
static long raw_read(int fd, void* buf, size_t n) {
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "0"(0L /* SYS_read */), "D"((long)fd), "S"(buf), "d"(n)
                     : "rcx", "r11", "memory");
    return ret;
}

static void* raw_read_thread(void* arg) {
    char c;
    return (void*)raw_read((int)(long)arg, &c, 1);
}

/* fork() from a thread (on a pool carrier under the shim): the child has that one thread,
 * then makes four of its own and joins them. Prints what the child saw. */
static void* forker(void* arg) {
    (void)arg;
    pid_t pid = fork();
    if (pid == 0) {
        int before = os_threads();
        pthread_t t[4];
        for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, snooze, (void*)20000L);
        usleep(5000);
        int during = os_threads();
        for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
        printf("child threads before %d during %d\n", before, during);
        fflush(stdout);
        _exit(0);
    }
    int status = -1;
    waitpid(pid, &status, 0);
    return (void*)(long)status;
}

/* One client and its server thread: `rounds` request/reply pairs over a socket pair. */
struct Conversation {
    int fd;
    int rounds;
    int done;
};

static void* serve_conversation(void* arg) {
    struct Conversation* c = arg;
    char buf[8];
    for (int i = 0; i < c->rounds; i++) {
        if (read(c->fd, buf, sizeof buf) != 4 || write(c->fd, buf, 4) != 4) return NULL;
    }
    return NULL;
}

static void* talk(void* arg) {
    struct Conversation* c = arg;
    char buf[8];
    for (int i = 0; i < c->rounds; i++) {
        if (write(c->fd, "ping", 4) != 4 || read(c->fd, buf, sizeof buf) != 4) return NULL;
        usleep(1000);
    }
    c->done = 1;
    return NULL;
}

/* prefork: a thread accepting on the listener shared with the other processes. */
static void* accept_forever(void* arg) {
    int listener = (int)(long)arg;
    for (;;) {
        int c = accept(listener, NULL, NULL);
        if (c < 0) continue;
        write(c, "x", 1);
        close(c);
        __atomic_add_fetch(&g_accepted, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

/* getaddrinfo(name, "80") for IPv4: 0 or the EAI_* code. */
static int resolve(const char* name) {
    struct addrinfo hints, *res;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    int rc = getaddrinfo(name, "80", &hints, &res);
    if (rc == 0) freeaddrinfo(res);
    return rc;
}

static int recurse(int depth) {
    volatile char pad[1024];
    pad[0] = (char)depth;
    return depth > 1000000 ? pad[0] : recurse(depth + 1) + pad[0];
}

static void* overflow(void* arg) {
    (void)arg;
    return (void*)(long)recurse(0);
}

int main(int argc, char** argv) {
    const char* name = argc > 1 ? argv[1] : "";
    if (!strcmp(name, "exit_with_parked")) {
        /* main returns 7 while ten threads are blocked in read(): status 7, atexit once. */
        atexit(say_atexit);
        int p[2];
        if (pipe(p) != 0) return 1;
        pthread_t t;
        for (int i = 0; i < 10; i++) pthread_create(&t, NULL, block_on_fd, (void*)(long)p[0]);
        usleep(50000);
        return 7;
    }
    if (!strcmp(name, "pthread_exit_main")) {
        /* main leaves with pthread_exit; the process lives until the last thread ends. */
        atexit(say_atexit);
        pthread_t t;
        pthread_create(&t, NULL, nap, (void*)100000L);
        pthread_exit(NULL);
    }
    if (!strcmp(name, "stack_overflow")) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 64 * 1024);
        pthread_t t;
        pthread_create(&t, &attr, overflow, NULL);
        pthread_join(t, NULL);
        return 0;
    }
    if (!strcmp(name, "many_waiting")) {
        /* argv[2] threads alive at once, each waiting: how many were made, the mappings and
         * OS threads meanwhile, then whether all were joined. */
        int n = argc > 2 ? atoi(argv[2]) : 100000, made = 0;
        pthread_t* t = malloc(sizeof(pthread_t) * (size_t)n);
        while (made < n && pthread_create(&t[made], NULL, wait_at_gate, NULL) == 0) ++made;
        for (int waiting = 0; waiting < made; usleep(1000)) {
            pthread_mutex_lock(&g_gate_lock);
            waiting = g_waiting;
            pthread_mutex_unlock(&g_gate_lock);
        }
        printf("waiting %d\nmappings %d\nthreads %d\n", made, mappings(), os_threads());
        pthread_mutex_lock(&g_gate_lock);
        g_gate_open = 1;
        pthread_cond_broadcast(&g_gate);
        pthread_mutex_unlock(&g_gate_lock);
        for (int i = 0; i < made; i++) pthread_join(t[i], NULL);
        printf("joined %d\n", made);
        free(t);
        return 0;
    }
    if (!strcmp(name, "serve_beside_raw_read")) {
        /* One thread blocks in a raw read of an idle pipe; then 20 conversations of 50 rounds
         * must end within 5 s while it still blocks. Prints how many did, and the read's
         * result once the pipe is written. */
        int p[2];
        if (pipe(p) != 0) return 1;
        pthread_t blocker;
        pthread_create(&blocker, NULL, raw_read_thread, (void*)(long)p[0]);
        usleep(100000);
        enum { kPairs = 20 };
        struct Conversation server[kPairs], client[kPairs];
        pthread_t threads[2 * kPairs];
        for (int i = 0; i < kPairs; i++) {
            int sv[2];
            if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 1;
            server[i] = (struct Conversation){sv[0], 50, 0};
            client[i] = (struct Conversation){sv[1], 50, 0};
            pthread_create(&threads[2 * i], NULL, serve_conversation, &server[i]);
            pthread_create(&threads[2 * i + 1], NULL, talk, &client[i]);
        }
        struct timespec start, now;
        clock_gettime(CLOCK_MONOTONIC, &start);
        int done = 0;
        for (;;) {
            done = 0;
            for (int i = 0; i < kPairs; i++) done += __atomic_load_n(&client[i].done, __ATOMIC_ACQUIRE);
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (done == kPairs || now.tv_sec - start.tv_sec >= 5) break;
            usleep(10000);
        }
        printf("conversations %d of %d\n", done, kPairs);
        fflush(stdout);
        if (write(p[1], "x", 1) != 1) return 1;
        void* got = NULL;
        pthread_join(blocker, &got);
        printf("raw read %ld\n", (long)got);
        if (done != kPairs) _exit(3);  /* the others may never end: do not join them */
        for (int i = 0; i < 2 * kPairs; i++) pthread_join(threads[i], NULL);
        return 0;
    }
    if (!strcmp(name, "fork_from_thread")) {
        pthread_t t;
        void* status = NULL;
        pthread_create(&t, NULL, forker, NULL);
        pthread_join(t, &status);
        printf("child status %ld\n", (long)status);
        return 0;
    }
    if (!strcmp(name, "thread_count")) {
        /* Ten sleeping threads: prints the OS thread count seen meanwhile. */
        pthread_t t[10];
        for (int i = 0; i < 10; i++) pthread_create(&t[i], NULL, snooze, (void*)200000L);
        usleep(50000);
        printf("threads %d\n", os_threads());
        for (int i = 0; i < 10; i++) pthread_join(t[i], NULL);
        return 0;
    }
    if (!strcmp(name, "report_flags")) {
        /* Prints whether fd argv[2] is non-blocking, as this (exec'd) process sees it. */
        int fl = fcntl(atoi(argv[2]), F_GETFL);
        printf("nonblock %d\n", fl >= 0 && (fl & O_NONBLOCK) ? 1 : 0);
        return 0;
    }
    if (!strcmp(name, "fork_exec_inherits")) {
        /* A thread blocks in read() on one end of a socketpair while main forks and execs a
         * child that inherits that end and reports its flags. */
        int sv[2];
        socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
        pthread_t t;
        pthread_create(&t, NULL, block_on_fd, (void*)(long)sv[0]);
        usleep(20000);
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            char fd[16];
            snprintf(fd, sizeof fd, "%d", sv[0]);
            execl(argv[0], argv[0], "report_flags", fd, (char*)NULL);
            _exit(127);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (write(sv[1], "x", 1) != 1) return 1;
        pthread_join(t, NULL);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    }
    if (!strcmp(name, "fork_child_closes_listener")) {
        /* A thread waits in accept() while main forks a child that closes its copy of the
         * listener and exits, as fork-per-connection servers do; then a client connects.
         * The parent's accept must still complete, and a child that blocks works too. */
        int lfd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (bind(lfd, (struct sockaddr*)&a, sizeof a) != 0 || listen(lfd, 8) != 0) return 1;
        getsockname(lfd, (struct sockaddr*)&a, &len);
        pthread_t t;
        pthread_create(&t, NULL, accept_one, (void*)(long)lfd);
        usleep(20000);
        pid_t pid = fork();
        if (pid == 0) {
            close(lfd);
            int p[2];
            if (pipe(p) != 0) _exit(3);
            pthread_t w;
            pthread_create(&w, NULL, write_later, (void*)(long)p[1]);
            char c;
            ssize_t n = read(p[0], &c, 1); /* parks: the child's runtime must work */
            _exit(n == 1 && c == 'w' ? 0 : 4);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c, (struct sockaddr*)&a, sizeof a) != 0) return 5;
        void* accepted = NULL;
        pthread_join(t, &accepted);
        printf("child %d accepted %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
               (int)(long)accepted >= 0);
        return 0;
    }
    if (!strcmp(name, "prefork")) {
        /* Two processes share one blocking listener, each with a thread in accept and its main
         * thread sleeping 150 x 10 ms; each prints its accepts and how long the sleeps took
         * (a carrier held by accept would stretch them). */
        int lfd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t alen = sizeof a;
        if (bind(lfd, (struct sockaddr*)&a, sizeof a) != 0 || listen(lfd, 128) != 0) return 3;
        getsockname(lfd, (struct sockaddr*)&a, &alen);
        printf("listening on %d\n", ntohs(a.sin_port));
        fflush(stdout);
        pid_t children[2];
        for (int i = 0; i < 2; ++i) {
            children[i] = fork();
            if (children[i] == 0) {
                alarm(20); /* never outlive a failed test */
                pthread_t t;
                pthread_create(&t, NULL, accept_forever, (void*)(long)lfd);
                struct timespec start, end;
                clock_gettime(CLOCK_MONOTONIC, &start);
                for (int n = 0; n < 150; ++n) usleep(10000);
                clock_gettime(CLOCK_MONOTONIC, &end);
                long ms = (end.tv_sec - start.tv_sec) * 1000 + (end.tv_nsec - start.tv_nsec) / 1000000;
                printf("child accepted=%d ms=%ld\n", __atomic_load_n(&g_accepted, __ATOMIC_RELAXED),
                       ms);
                fflush(stdout);
                _exit(0);
            }
        }
        for (int i = 0; i < 2; ++i) waitpid(children[i], NULL, 0);
        return 0;
    }
    if (!strcmp(name, "fork_resolve")) {
        /* Names resolved before a fork, in the child, and in the parent afterwards. */
        printf("parent %d\n", resolve("before.test"));
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            printf("child %d\n", resolve("child.test"));
            fflush(stdout);
            _exit(0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        printf("parent %d\n", resolve("after.test"));
        return 0;
    }
    if (!strcmp(name, "read_stdin")) {
        /* A thread reads stdin (a terminal in the test) until EOF or a line. */
        pthread_t t;
        pthread_create(&t, NULL, block_on_fd, (void*)0L);
        pthread_join(t, NULL);
        printf("read done\n");
        return 0;
    }
    fprintf(stderr, "scenarios: unknown scenario '%s'\n", name);
    return 2;
}
