/* A legacy thread-per-request HTTP server in the slow-upstream shape: each request's thread
 * waits (sleeps) as if on a slow backend, then answers "Hello World!". It knows nothing of
 * libgreen. Usage: legacy_http_server [port] [delay_ms] [hash_kib]
 * (defaults: any free port, 1000, 0). With hash_kib, each request first computes: FNV-1a over
 * hash_kib KiB (a 4 KiB block seeded by the request), and the answer is the hash; a fixed
 * amount of work, not of time, so a slower run shows as fewer requests per second
 * (scripts/bench.sh section 10).
 * Prints "listening on PORT" once ready (with hash_kib, also "hash_ms=X": one request's
 * hashing, timed before any thread exists). Connections close after one response. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long delay_ms = 1000;
static long hash_kib = 0;
static volatile uint64_t g_sink; /* keeps the timed probe from being optimised away */

/* FNV-1a over a 4 KiB block, hash_kib / 4 passes; each pass folds the previous hash into the
 * block so that no pass can be skipped. */
static uint64_t hash_work(const char* seed, size_t seed_len) {
    unsigned char block[4096];
    for (size_t i = 0; i < sizeof block; ++i) block[i] = (unsigned char)(seed[i % seed_len] + i);
    uint64_t h = 14695981039346656037ull;
    for (long pass = 0; pass < hash_kib / 4; ++pass) {
        for (size_t i = 0; i < sizeof block; ++i) h = (h ^ block[i]) * 1099511628211ull;
        block[pass % sizeof block] ^= (unsigned char)h;
    }
    return h;
}

static int send_all(int fd, const char* p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void* handle(void* arg) {
    int fd = (int)(long)arg;
    char req[8192];
    size_t got = 0;
    while (got < sizeof req - 1) {
        ssize_t n = recv(fd, req + got, sizeof req - 1 - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) goto out;
        got += (size_t)n;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n")) break;
    }
    char hash[17] = "";
    if (hash_kib > 0) snprintf(hash, sizeof hash, "%016llx", (unsigned long long)hash_work(req, got));
    struct timespec wait = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
    while (nanosleep(&wait, &wait) != 0 && errno == EINTR) {
    }
    const char* body = hash_kib > 0 ? hash : "Hello World!";
    char resp[256];
    int len = snprintf(resp, sizeof resp,
                       "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                       "Connection: close\r\n\r\n%s",
                       strlen(body), body);
    send_all(fd, resp, (size_t)len);
out:
    close(fd);
    return NULL;
}

int main(int argc, char** argv) {
    int port = argc > 1 ? atoi(argv[1]) : 0;
    if (argc > 2) delay_ms = atol(argv[2]);
    if (argc > 3) hash_kib = atol(argv[3]);
    signal(SIGPIPE, SIG_IGN);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (hash_kib > 0) g_sink = hash_work("GET / HTTP/1.0\r\n\r\n", 18);
    clock_gettime(CLOCK_MONOTONIC, &b);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr*)&addr, sizeof addr) != 0 || listen(lfd, 4096) != 0) {
        perror("legacy_http_server: bind/listen");
        return 1;
    }
    socklen_t len = sizeof addr;
    getsockname(lfd, (struct sockaddr*)&addr, &len);
    if (hash_kib > 0)
        printf("listening on %d hash_ms=%.2f\n", ntohs(addr.sin_port),
               (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6);
    else
        printf("listening on %d\n", ntohs(addr.sin_port));
    fflush(stdout);
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE) continue;
            perror("legacy_http_server: accept");
            return 1;
        }
        pthread_t t;
        if (pthread_create(&t, NULL, handle, (void*)(long)fd) != 0) {
            fprintf(stderr, "legacy_http_server: pthread_create failed\n");
            close(fd);
            continue;
        }
        pthread_detach(t);
    }
}
