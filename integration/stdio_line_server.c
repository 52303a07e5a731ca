/* The oldest legacy-server shape: a thread per connection that wraps its socket in FILEs with
 * fdopen and speaks a line protocol with fgets, fprintf and fflush. Each line "WORDS" is
 * answered "N: WORDS" (N counts the connection's lines). Prints "listening on PORT" and serves
 * until killed. A plain pthreads program that knows nothing of libgreen.
 * Usage: stdio_line_server [PORT] */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void* serve(void* arg) {
    int fd = (int)(long)arg;
    FILE* in = fdopen(fd, "r");
    FILE* out = fdopen(dup(fd), "w");
    if (!in || !out) {
        perror("fdopen");
        exit(1);
    }
    char line[512];
    for (int n = 1; fgets(line, sizeof line, in); ++n) {
        fprintf(out, "%d: %s", n, line);
        if (fflush(out) != 0) break;
    }
    fclose(out);
    fclose(in);
    return NULL;
}

int main(int argc, char** argv) {
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(argc > 1 ? (unsigned short)atoi(argv[1]) : 0);
    socklen_t len = sizeof addr;
    if (bind(listener, (struct sockaddr*)&addr, sizeof addr) != 0 || listen(listener, 512) != 0 ||
        getsockname(listener, (struct sockaddr*)&addr, &len) != 0) {
        perror("listen");
        return 1;
    }
    printf("listening on %d\n", ntohs(addr.sin_port));
    fflush(stdout);
    for (;;) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0) continue;
        pthread_t thread;
        if (pthread_create(&thread, NULL, serve, (void*)(long)fd) != 0) {
            close(fd);
            continue;
        }
        pthread_detach(thread);
    }
}
