// The carrier's resolver: a c-ares channel created on the first lookup, driven by the
// carrier's libuv loop (a uv_poll_t per c-ares socket, one uv_timer_t for its timeouts).
// c-ares calls socket(), recvfrom() and close() on its own sockets; they pass straight
// through our hooks because they run inside a hook or on the scheduler (DESIGN.md, 1 and 13).
// A 1.18 channel is not thread-safe: it is only ever touched on its carrier's thread.
#include "runtime/resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "runtime/carrier.h"
#include "runtime/log.h"
#include "runtime/runtime_fds.h"

namespace green {

namespace {

const char* g_servers = nullptr;

LookupStatus status_of(int ares_status) {
    switch (ares_status) {
        case ARES_SUCCESS:
            return LookupStatus::kOk;
        case ARES_ENOTFOUND:
        case ARES_EBADNAME:
            return LookupStatus::kNotFound;
        case ARES_ENODATA:
            return LookupStatus::kNoData;
        case ARES_ENOMEM:
            return LookupStatus::kNoMemory;
        case ARES_ETIMEOUT:
        case ARES_ESERVFAIL:
        case ARES_EREFUSED:
        case ARES_ECONNREFUSED:
        case ARES_ECANCELLED:
        case ARES_EDESTRUCTION:
            return LookupStatus::kTryAgain;
        default:
            return LookupStatus::kNoRecovery;
    }
}

void copy_address(int family, const void* bytes, ResolvedAddress* out) {
    out->family = family;
    memcpy(out->bytes, bytes, family == AF_INET6 ? 16 : 4);
}

// glibc's limits for resolv.conf's options (resolv/resolv.h: RES_MAXRETRANS, RES_MAXRETRY).
void apply_options(const char* options, ResolverTiming* timing) {
    for (const char* p = options; *p;) {
        while (*p == ' ' || *p == '\t') ++p;
        if (!strncmp(p, "timeout:", 8)) {
            int n = atoi(p + 8);
            timing->timeout_ms = (n < 1 ? 1 : n > 30 ? 30 : n) * 1000;
        } else if (!strncmp(p, "attempts:", 9)) {
            int n = atoi(p + 9);
            timing->tries = n < 1 ? 1 : n > 5 ? 5 : n;
        }
        while (*p && *p != ' ' && *p != '\t') ++p;
    }
}

}  // namespace

ResolverTiming resolver_timing() {
    ResolverTiming timing;
    if (FILE* conf = fopen("/etc/resolv.conf", "re")) {
        char line[512];
        while (fgets(line, sizeof line, conf)) {
            line[strcspn(line, "\n")] = '\0';
            if (!strncmp(line, "options", 7) && (line[7] == ' ' || line[7] == '\t'))
                apply_options(line + 7, &timing);
        }
        fclose(conf);
    }
    if (const char* env = getenv("RES_OPTIONS")) apply_options(env, &timing);
    return timing;
}

// c-ares's sockets are the runtime's own fds: placed out of the program's way
// (runtime_fds.h), so that a program closing every fd above 2 cannot take them.
ares_socket_t open_socket(int domain, int type, int protocol, void*) {
    int fd = socket(domain, type, protocol);
    return fd < 0 ? ARES_SOCKET_BAD : adopt_runtime_fd(fd);
}
int close_socket(ares_socket_t fd, void*) {
    close_runtime_fd(fd);
    return 0;
}
int connect_socket(ares_socket_t fd, const sockaddr* addr, ares_socklen_t len, void*) {
    return connect(fd, addr, len);
}
ares_ssize_t receive_from(ares_socket_t fd, void* buf, size_t len, int flags, sockaddr* from,
                          ares_socklen_t* from_len, void*) {
    return recvfrom(fd, buf, len, flags, from, from_len);
}
ares_ssize_t send_vector(ares_socket_t fd, const iovec* iov, int count, void*) {
    return writev(fd, iov, count);
}
const ares_socket_functions kSocketFunctions = {open_socket, close_socket, connect_socket,
                                                receive_from, send_vector};

class Resolver {
  public:
    explicit Resolver(Carrier* carrier) : carrier_(carrier) {}

    bool start() {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pthread_once(&once, [] { ares_library_init(ARES_LIB_INIT_ALL); });
        ResolverTiming timing = resolver_timing();
        ares_options options{};
        options.sock_state_cb = on_socket_state;
        options.sock_state_cb_data = this;
        options.timeout = timing.timeout_ms;
        options.tries = timing.tries;
        // One socket carries the answers of every fiber on the carrier (a thread has its
        // own): room for a burst of ~1,000, so that none is dropped and retried seconds later.
        options.socket_receive_buffer_size = 1 << 20;
        int status = ares_init_options(
            &channel_, &options,
            ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_RCVBUF);
        if (status != ARES_SUCCESS) {
            log::warn("cannot start the c-ares resolver (%s); name lookups block the carrier",
                      ares_strerror(status));
            return false;
        }
        if (g_servers) {
            status = ares_set_servers_ports_csv(channel_, g_servers);
            if (status != ARES_SUCCESS)
                log::warn("GREEN_DNS_SERVERS='%s' refused by c-ares (%s); using resolv.conf",
                          g_servers, ares_strerror(status));
        }
        ares_set_socket_functions(channel_, &kSocketFunctions, nullptr);
        timer_ = new uv_timer_t;
        uv_timer_init(carrier_->loop(), timer_);
        timer_->data = this;
        return true;
    }

    ares_channel channel() const { return channel_; }

    // Re-arms the timeout timer for what the last ares call sent.
    void sent() { rearm_timer(); }

    // Closes the loop's handles and the channel. Pending queries end with kTryAgain; after a
    // fork their fibers do not exist in the child, and Carrier::unpark ignores them.
    void shut_down() {
        shutting_down_ = true;
        for (Watch* watch : watches_) close_watch(watch);
        watches_.clear();
        uv_close(reinterpret_cast<uv_handle_t*>(timer_),
                 [](uv_handle_t* handle) { delete reinterpret_cast<uv_timer_t*>(handle); });
        ares_destroy(channel_);
    }

  private:
    struct Watch {
        uv_poll_t handle;
        Resolver* owner;
        ares_socket_t fd;
    };

    static void close_watch(Watch* watch) {
        uv_poll_stop(&watch->handle);  // leaves the backend now: c-ares closes the fd next
        uv_close(reinterpret_cast<uv_handle_t*>(&watch->handle),
                 [](uv_handle_t* handle) { delete static_cast<Watch*>(handle->data); });
    }

    // c-ares tells which of its sockets it wants to read or write; (0, 0) comes just before
    // it closes one.
    static void on_socket_state(void* data, ares_socket_t fd, int readable, int writable) {
        auto* self = static_cast<Resolver*>(data);
        if (self->shutting_down_) return;
        Watch* watch = nullptr;
        size_t index = 0;
        for (; index < self->watches_.size(); ++index)
            if (self->watches_[index]->fd == fd) {
                watch = self->watches_[index];
                break;
            }
        if (!readable && !writable) {
            if (!watch) return;
            close_watch(watch);
            self->watches_[index] = self->watches_.back();
            self->watches_.pop_back();
            return;
        }
        if (!watch) {
            watch = new Watch;
            watch->owner = self;
            watch->fd = fd;
            watch->handle.data = watch;
            if (uv_poll_init_socket(self->carrier_->loop(), &watch->handle, fd) != 0) {
                log::fatal("cannot watch a c-ares socket on the carrier's loop");
            }
            self->watches_.push_back(watch);
        }
        uv_poll_start(&watch->handle, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0),
                      on_socket_ready);
    }

    static void on_socket_ready(uv_poll_t* handle, int status, int events) {
        auto* watch = static_cast<Watch*>(handle->data);
        Resolver* self = watch->owner;
        ares_socket_t fd = watch->fd;  // the watch may be closed inside ares_process_fd
        bool readable = status < 0 || (events & UV_READABLE);
        bool writable = status < 0 || (events & UV_WRITABLE);
        ares_process_fd(self->channel_, readable ? fd : ARES_SOCKET_BAD,
                        writable ? fd : ARES_SOCKET_BAD);
        self->rearm_timer();
    }

    static void on_timeout(uv_timer_t* timer) {
        auto* self = static_cast<Resolver*>(timer->data);
        ares_process_fd(self->channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
        self->rearm_timer();
    }

    void rearm_timer() {
        timeval tv;
        timeval* next = ares_timeout(channel_, nullptr, &tv);
        if (!next) {
            uv_timer_stop(timer_);
            return;
        }
        uint64_t ms = static_cast<uint64_t>(next->tv_sec) * 1000 + (next->tv_usec + 999) / 1000;
        uv_update_time(carrier_->loop());
        uv_timer_start(timer_, on_timeout, ms, 0);
    }

    Carrier* carrier_;
    ares_channel channel_ = nullptr;
    uv_timer_t* timer_ = nullptr;
    std::vector<Watch*> watches_;
    bool shutting_down_ = false;
};

namespace {

// The carrier's resolver, made on first use; null if c-ares cannot start (remembered, so
// that the warning is printed once).
Resolver* resolver() {
    Carrier* carrier = Carrier::current();
    // First the loop: in a forked child, remaking it also drops the parent's resolver.
    if (!carrier->ensure_loop()) return nullptr;
    if (!carrier->resolver_ && !carrier->resolver_failed_) {
        auto* r = new Resolver(carrier);
        if (r->start())
            carrier->resolver_ = r;
        else {
            delete r;
            carrier->resolver_failed_ = true;
        }
    }
    return carrier->resolver_;
}

void copy_host(const hostent* host, HostLookup* out) {
    out->name = host->h_name ? host->h_name : "";
    for (char** alias = host->h_aliases; alias && *alias; ++alias)
        out->aliases.emplace_back(*alias);
    out->family = host->h_addrtype;
    for (char** addr = host->h_addr_list; addr && *addr; ++addr) {
        out->addresses.emplace_back();
        copy_address(host->h_addrtype, *addr, &out->addresses.back());
    }
}

// The queries of one query_dns() call, on the waiting fiber's stack.
struct Batch {
    Fiber* fiber;
    size_t remaining;
};
struct Sent {
    DnsQuery* query;
    Batch* batch;
};

// A successful answer has records (c-ares reports NOERROR without any as ENODATA); none of
// them of the type asked for (a CNAME alone) is glibc's NO_RECOVERY.
LookupStatus parse(DnsQuery* query, const unsigned char* answer, int length) {
    hostent* host = nullptr;
    int rc;
    switch (query->type) {
        case DnsType::kA:
            rc = ares_parse_a_reply(answer, length, &host, nullptr, nullptr);
            break;
        case DnsType::kAAAA:
            rc = ares_parse_aaaa_reply(answer, length, &host, nullptr, nullptr);
            break;
        default:
            rc = ares_parse_ptr_reply(answer, length, query->address.bytes,
                                      query->address.family == AF_INET6 ? 16 : 4,
                                      query->address.family, &host);
            break;
    }
    if (rc != ARES_SUCCESS)
        return rc == ARES_ENOMEM ? LookupStatus::kNoMemory : LookupStatus::kNoRecovery;
    if (query->type != DnsType::kPTR && !host->h_addr_list[0]) {
        ares_free_hostent(host);  // CNAMEs only
        return LookupStatus::kNoRecovery;
    }
    if (query->type == DnsType::kPTR) {
        query->answer.name = host->h_name ? host->h_name : "";
        query->answer.family = query->address.family;
        query->answer.addresses.push_back(query->address);
    } else {
        copy_host(host, &query->answer);
    }
    ares_free_hostent(host);
    return LookupStatus::kOk;
}

void on_answer(void* arg, int status, int /*timeouts*/, unsigned char* answer, int length) {
    auto* sent = static_cast<Sent*>(arg);
    sent->query->status =
        status == ARES_SUCCESS ? parse(sent->query, answer, length) : status_of(status);
    Fiber* fiber = sent->batch->fiber;
    if (--sent->batch->remaining == 0 && fiber->carrier) fiber->carrier->unpark(fiber);
}

// The in-addr.arpa or ip6.arpa name of an address.
std::string pointer_name(const ResolvedAddress& address) {
    char name[80];
    const unsigned char* b = address.bytes;
    if (address.family == AF_INET) {
        snprintf(name, sizeof name, "%u.%u.%u.%u.in-addr.arpa", b[3], b[2], b[1], b[0]);
        return name;
    }
    static const char kHex[] = "0123456789abcdef";
    std::string out;
    for (int i = 15; i >= 0; --i) {
        out += kHex[b[i] & 0xf];
        out += '.';
        out += kHex[b[i] >> 4];
        out += '.';
    }
    return out + "ip6.arpa";
}

}  // namespace

void configure_resolver(const char* servers) {
    g_servers = servers;
}

bool resolver_available() {
    return resolver() != nullptr;
}

void query_dns(DnsQuery* queries, size_t count) {
    Resolver* r = resolver();
    if (!r) {
        for (size_t i = 0; i < count; ++i) queries[i].status = LookupStatus::kTryAgain;
        return;
    }
    Batch batch{current_fiber(), count};
    std::vector<Sent> sent(count);
    for (size_t i = 0; i < count; ++i) {
        sent[i] = Sent{&queries[i], &batch};
        DnsQuery& q = queries[i];
        if (q.type == DnsType::kPTR)
            ares_query(r->channel(), pointer_name(q.address).c_str(), ns_c_in, ns_t_ptr, on_answer,
                       &sent[i]);
        else
            ares_search(r->channel(), q.name, ns_c_in, q.type == DnsType::kA ? ns_t_a : ns_t_aaaa,
                        on_answer, &sent[i]);
    }
    r->sent();
    while (batch.remaining != 0) Carrier::current()->park(ParkReason::kDns);
}

void shut_down_resolver(Carrier* carrier) {
    if (!carrier->resolver_) return;
    carrier->resolver_->shut_down();
    delete carrier->resolver_;
    carrier->resolver_ = nullptr;
}

// ---------------------------------------------------------------------------------------
// run_blocking

namespace {

struct BlockingJob {
    uv_work_t request;
    void (*fn)(void*);
    void* arg;
    Fiber* fiber;
    bool done;
};

}  // namespace

void run_blocking(void (*fn)(void*), void* arg, ParkReason reason) {
    Carrier* carrier = Carrier::current();
    if (!carrier->ensure_loop()) {
        fn(arg);  // no loop to wait on: the call holds the carrier
        return;
    }
    BlockingJob job{{}, fn, arg, current_fiber(), false};
    job.request.data = &job;
    // libuv starts its pool inside the first uv_queue_work, and a new thread inherits its
    // creator's signal mask: block every signal meanwhile, so that no process signal is
    // ever handled on a pool thread, where no fiber would learn of it (a SIGCHLD that should
    // end a sigsuspend, say). glibc keeps its own internal signals unblocked.
    sigset_t all, saved;
    const bool first = note_thread_pool_starting();
    if (first) {
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &saved);
    }
    int rc = uv_queue_work(
        carrier->loop(), &job.request,
        [](uv_work_t* request) {
            auto* j = static_cast<BlockingJob*>(request->data);
            j->fn(j->arg);
        },
        [](uv_work_t* request, int /*status*/) {
            auto* j = static_cast<BlockingJob*>(request->data);
            j->done = true;
            j->fiber->carrier->unpark(j->fiber);
        });
    if (first) pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    if (rc != 0) {
        fn(arg);
        return;
    }
    while (!job.done) carrier->park(reason);
}

}  // namespace green
