/* echo_client: load for the echo benchmark. One epoll thread keeps N connections busy
 * with 64-byte request/response round trips for S seconds (after all are connected).
 *
 *   echo_client PORT N SECONDS [idle]   idle: connect N, hold them S seconds, send nothing
 *
 * Prints: connections=N round_trips_per_s=X p50_us=Y p99_us=Z errors=E */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MSG 64
#define MAX_US 1000000

struct conn {
    int fd;
    int got;
    double sent_at;
};

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static unsigned g_hist[MAX_US + 1];
static long g_samples, g_errors;

static long percentile(double p) {
    long want = (long)(g_samples * p), seen = 0;
    for (long us = 0; us <= MAX_US; ++us)
        if ((seen += g_hist[us]) > want) return us;
    return MAX_US;
}

static void send_request(struct conn* c) {
    static const char msg[MSG] = "0123456789012345678901234567890123456789012345678901234567890123";
    c->got = 0;
    c->sent_at = now_us();
    if (send(c->fd, msg, MSG, MSG_NOSIGNAL) != MSG) ++g_errors;
}

int main(int argc, char** argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s PORT N SECONDS [idle]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]), n = atoi(argv[2]);
    double seconds = atof(argv[3]);
    int idle = argc > 4 && !strcmp(argv[4], "idle");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct conn* conns = calloc((size_t)n, sizeof *conns);
    int ep = epoll_create1(0);
    for (int i = 0; i < n; ++i) {
        conns[i].fd = socket(AF_INET, SOCK_STREAM, 0);
        if (conns[i].fd < 0 || connect(conns[i].fd, (struct sockaddr*)&addr, sizeof addr) != 0) {
            fprintf(stderr, "connection %d: %s\n", i, strerror(errno));
            return 1;
        }
        int one = 1;
        setsockopt(conns[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    }
    if (idle) {
        usleep((useconds_t)(seconds * 1e6));
        printf("connections=%d idle\n", n);
        return 0;
    }
    for (int i = 0; i < n; ++i) send_request(&conns[i]);
    double start = now_us(), end = start + seconds * 1e6;
    struct epoll_event events[512];
    char buf[MSG];
    while (now_us() < end) {
        int k = epoll_wait(ep, events, 512, 100);
        for (int e = 0; e < k; ++e) {
            struct conn* c = events[e].data.ptr;
            ssize_t r = recv(c->fd, buf, (size_t)(MSG - c->got), MSG_DONTWAIT);
            if (r <= 0) {
                if (r == 0 || errno != EAGAIN) ++g_errors;
                continue;
            }
            c->got += (int)r;
            if (c->got < MSG) continue;
            double us = now_us() - c->sent_at;
            ++g_hist[us > MAX_US ? MAX_US : (long)us];
            ++g_samples;
            send_request(c);
        }
    }
    double elapsed = (now_us() - start) / 1e6;
    printf("connections=%d round_trips_per_s=%.0f p50_us=%ld p99_us=%ld errors=%ld\n", n,
           g_samples / elapsed, percentile(0.50), percentile(0.99), g_errors);
    return 0;
}
