/* A legacy thread-per-request HTTP server in the slow-upstream shape: each request's thread
 * waits (sleeps) as if on a slow backend, then answers "Hello World!". It knows nothing of
 * libgreen. Usage: legacy_http_server [port] [delay_ms]   (defaults: any free port, 1000)
 * Prints "listening on PORT" once ready. Connections close after one response. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long delay_ms = 1000;

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
    struct timespec wait = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
    while (nanosleep(&wait, &wait) != 0 && errno == EINTR) {
    }
    static const char body[] = "Hello World!";
    char resp[256];
    int len = snprintf(resp, sizeof resp,
                       "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                       "Connection: close\r\n\r\n%s",
                       sizeof body - 1, body);
    send_all(fd, resp, (size_t)len);
out:
    close(fd);
    return NULL;
}

int main(int argc, char** argv) {
    int port = argc > 1 ? atoi(argv[1]) : 0;
    if (argc > 2) delay_ms = atol(argv[2]);
    signal(SIGPIPE, SIG_IGN);
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
