/* uv_echo_server: the event-loop reference for the echo benchmark, written directly on
 * libuv as a program rewritten for an event loop would be. One thread.
 *
 *   uv_echo_server PORT     (0: the kernel picks; prints "listening on PORT") */
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

typedef struct {
    uv_write_t req;
    uv_buf_t buf;
} write_req_t;

static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf) {
    (void)handle;
    buf->base = malloc(suggested);
    buf->len = suggested;
}

static void on_close(uv_handle_t* handle) { free(handle); }

static void on_written(uv_write_t* req, int status) {
    (void)status;
    write_req_t* w = (write_req_t*)req;
    free(w->buf.base);
    free(w);
}

static void on_read(uv_stream_t* client, ssize_t nread, const uv_buf_t* buf) {
    if (nread > 0) {
        write_req_t* w = malloc(sizeof *w);
        w->buf = uv_buf_init(buf->base, (unsigned)nread);
        uv_write(&w->req, client, &w->buf, 1, on_written);
        return;
    }
    free(buf->base);
    if (nread < 0) uv_close((uv_handle_t*)client, on_close);
}

static void on_connection(uv_stream_t* server, int status) {
    if (status < 0) return;
    uv_tcp_t* client = malloc(sizeof *client);
    uv_tcp_init(server->loop, client);
    if (uv_accept(server, (uv_stream_t*)client) == 0)
        uv_read_start((uv_stream_t*)client, on_alloc, on_read);
    else
        uv_close((uv_handle_t*)client, on_close);
}

int main(int argc, char** argv) {
    uv_loop_t* loop = uv_default_loop();
    uv_tcp_t server;
    uv_tcp_init(loop, &server);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", argc > 1 ? atoi(argv[1]) : 0, &addr);
    uv_tcp_bind(&server, (const struct sockaddr*)&addr, 0);
    if (uv_listen((uv_stream_t*)&server, 4096, on_connection) != 0) return 1;
    int len = sizeof addr;
    uv_tcp_getsockname(&server, (struct sockaddr*)&addr, &len);
    printf("listening on %d\n", ntohs(addr.sin_port));
    fflush(stdout);
    return uv_run(loop, UV_RUN_DEFAULT);
}
