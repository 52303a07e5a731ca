/* http_load: the client of the slow-upstream benchmark. One epoll thread keeps C connections
 * in flight against 127.0.0.1:PORT, each sending "GET / HTTP/1.0" and reading the answer
 * until the server closes, then opening the next, until N requests have been answered.
 * ab does the same job, but spends so much per request that at 10,000 clients it, not the
 * server, sets the pace on a two-core machine; this client does nothing else.
 *
 *   http_load PORT C N
 *
 * Prints: requests=N seconds=T mean_ms=M failed=F */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd;
    int sent;
    int answered; /* saw the start of a 200 response */
    double started;
};

static struct sockaddr_in g_addr;
static int g_epoll;
static long g_started, g_total, g_done, g_failed;
static double g_latency_sum;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Opens the next request's connection in `c`, or marks it unused when all have started. */
static void start(struct conn* c) {
    c->fd = -1;
    if (g_started == g_total) return;
    ++g_started;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->sent = c->answered = 0;
    c->started = now_s();
    if (c->fd < 0 ||
        (connect(c->fd, (struct sockaddr*)&g_addr, sizeof g_addr) != 0 && errno != EINPROGRESS)) {
        perror("connect");
        exit(1);
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    epoll_ctl(g_epoll, EPOLL_CTL_ADD, c->fd, &ev);
}

static void finish(struct conn* c, int ok) {
    ++g_done;
    if (ok)
        g_latency_sum += now_s() - c->started;
    else
        ++g_failed;
    close(c->fd);
    start(c);
}

int main(int argc, char** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT C N\n", argv[0]);
        return 2;
    }
    long concurrency = atol(argv[2]);
    g_total = atol(argv[3]);
    g_addr.sin_family = AF_INET;
    g_addr.sin_port = htons((unsigned short)atoi(argv[1]));
    g_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    g_epoll = epoll_create1(EPOLL_CLOEXEC);
    struct conn* conns = calloc((size_t)concurrency, sizeof *conns);
    static const char request[] = "GET / HTTP/1.0\r\n\r\n";
    double begin = now_s();
    for (long i = 0; i < concurrency; ++i) start(&conns[i]);
    struct epoll_event events[1024];
    char buf[4096];
    while (g_done < g_total) {
        int n = epoll_wait(g_epoll, events, 1024, 30000);
        if (n <= 0) break;
        for (int i = 0; i < n; ++i) {
            struct conn* c = events[i].data.ptr;
            if (c->fd < 0) continue;
            if (!c->sent && (events[i].events & EPOLLOUT)) {
                if (send(c->fd, request, sizeof request - 1, MSG_NOSIGNAL) !=
                    (ssize_t)sizeof request - 1) {
                    finish(c, 0);
                    continue;
                }
                c->sent = 1;
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(g_epoll, EPOLL_CTL_MOD, c->fd, &ev);
                continue;
            }
            if (!(events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            ssize_t r;
            while ((r = recv(c->fd, buf, sizeof buf, 0)) > 0)
                if (!c->answered) c->answered = r >= 12 && !memcmp(buf + 9, "200", 3);
            if (r == 0)
                finish(c, c->answered);
            else if (errno != EAGAIN)
                finish(c, 0);
        }
    }
    double seconds = now_s() - begin;
    long ok = g_done - g_failed;
    printf("requests=%ld seconds=%.2f mean_ms=%.0f failed=%ld\n", g_done, seconds,
           ok ? g_latency_sum / (double)ok * 1e3 : 0.0, g_failed + (g_total - g_done));
    return 0;
}
