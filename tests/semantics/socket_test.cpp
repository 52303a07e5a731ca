// accept, connect, recv/send families on real TCP, UDP and Unix sockets on 127.0.0.1.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <vector>

#include "common.h"

using namespace sem;

static IgnoreSigpipe ignore_sigpipe;

namespace {

struct Listener {
    int fd = -1;
    sockaddr_in addr{};
    explicit Listener(int type_flags = 0) {
        fd = socket(AF_INET, SOCK_STREAM | type_flags, 0);
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 64) != 0)
            abort();
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    }
    ~Listener() { close(fd); }
    const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&addr); }
};

int tcp_client(const Listener& l) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, l.sa(), sizeof l.addr) != 0) abort();
    return fd;
}

// A one-byte message with room for one passed file descriptor.
struct FdMessage {
    iovec iov;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    explicit FdMessage(char* byte) : iov{byte, 1} {
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
    }
    FdMessage(const FdMessage&) = delete;
};

// A port on 127.0.0.1 with nothing listening.
sockaddr_in closed_port() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    close(fd);
    return a;
}

}  // namespace

TEST(Accept, BlocksUntilAClientConnects) {
    Listener l;
    auto start = Clock::now();
    int client = -1;
    After connector(50, [&] { client = tcp_client(l); });
    int fd = accept(l.fd, nullptr, nullptr);
    EXPECT_GE(fd, 0);
    EXPECT_GE(ms_since(start), 45);
    close(fd);
    (void)client;
}

TEST(Accept, ReturnsThePeerAddress) {
    Listener l;
    After connector(10, [&] { close(tcp_client(l)); });
    sockaddr_in peer{};
    socklen_t len = sizeof peer;
    int fd = accept(l.fd, reinterpret_cast<sockaddr*>(&peer), &len);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(len, sizeof peer);
    EXPECT_EQ(peer.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    close(fd);
}

TEST(Accept, NonblockingListenerGivesEagain) {
    Listener l(SOCK_NONBLOCK);
    EXPECT_EQ(accept(l.fd, nullptr, nullptr), -1);
    EXPECT_EQ(errno, EAGAIN);
}

TEST(Accept, SoRcvtimeoGivesEagainAfterTheTimeout) {
    Listener l;
    timeval tv{0, 100000};
    ASSERT_EQ(setsockopt(l.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    auto start = Clock::now();
    EXPECT_EQ(accept(l.fd, nullptr, nullptr), -1);
    EXPECT_EQ(errno, EAGAIN);
    EXPECT_GE(ms_since(start), 95);
}

TEST(Accept, NonListeningSocketGivesEinval) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(accept(fd, nullptr, nullptr), -1);
    EXPECT_EQ(errno, EINVAL);
    close(fd);
}

TEST(Accept, UdpSocketGivesEopnotsupp) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    EXPECT_EQ(accept(fd, nullptr, nullptr), -1);
    EXPECT_EQ(errno, EOPNOTSUPP);
    close(fd);
}

TEST(Accept, NotASocketGivesEnotsock) {
    Pair p = pipe_pair();
    EXPECT_EQ(accept(p.a, nullptr, nullptr), -1);
    EXPECT_EQ(errno, ENOTSOCK);
}

TEST(Accept, BadFdGivesEbadf) {
    EXPECT_EQ(accept(closed_fd(), nullptr, nullptr), -1);
    EXPECT_EQ(errno, EBADF);
}

TEST(Accept4, SetsTheRequestedFlagsOnTheNewSocket) {
    Listener l;
    After connector(10, [&] { close(tcp_client(l)); });
    int fd = accept4(l.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    ASSERT_GE(fd, 0);
    EXPECT_TRUE(nonblocking(fd));
    EXPECT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    close(fd);
}

TEST(Accept4, InvalidFlagsGiveEinval) {
    Listener l;
    EXPECT_EQ(accept4(l.fd, nullptr, nullptr, 0x40000000), -1);
    EXPECT_EQ(errno, EINVAL);
}

TEST(Connect, SucceedsAndLeavesTheSocketBlocking) {
    Listener l;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(connect(fd, l.sa(), sizeof l.addr), 0);
    EXPECT_FALSE(nonblocking(fd));
    int again = connect(fd, l.sa(), sizeof l.addr);
    EXPECT_EQ(again, -1);
    EXPECT_EQ(errno, EISCONN);
    close(fd);
}

TEST(Connect, RefusedPortGivesEconnrefused) {
    sockaddr_in a = closed_port();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), -1);
    EXPECT_EQ(errno, ECONNREFUSED);
    EXPECT_FALSE(nonblocking(fd));
    close(fd);
}

TEST(Connect, NonblockingSocketGivesEinprogressOrSuccess) {
    Listener l;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int r = connect(fd, l.sa(), sizeof l.addr);
    EXPECT_TRUE(r == 0 || errno == EINPROGRESS);
    EXPECT_TRUE(nonblocking(fd));
    close(fd);
}

TEST(Connect, UnixSocketToMissingPathGivesEnoent) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    strcpy(a.sun_path, "/nonexistent/green-socket");
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), -1);
    EXPECT_EQ(errno, ENOENT);
    close(fd);
}

TEST(Connect, BadFdGivesEbadf) {
    Listener l;
    EXPECT_EQ(connect(closed_fd(), l.sa(), sizeof l.addr), -1);
    EXPECT_EQ(errno, EBADF);
}

TEST(Connect, BadAddressLengthGivesEinval) {
    Listener l;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(connect(fd, l.sa(), 3), -1);
    EXPECT_EQ(errno, EINVAL);
    close(fd);
}

TEST(Recv, WaitallWaitsForEveryByte) {
    Pair p = socket_pair();
    std::thread writer([&] {
        for (int i = 0; i < 4; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
            ASSERT_EQ(write(p.b, "ab", 2), 2);
        }
    });
    char buf[8];
    EXPECT_EQ(recv(p.a, buf, 8, MSG_WAITALL), 8);
    EXPECT_EQ(std::string(buf, 8), "abababab");
    writer.join();
}

TEST(Recv, WaitallReturnsShortAtEof) {
    Pair p = socket_pair();
    ASSERT_EQ(write(p.b, "abc", 3), 3);
    After closer(20, [&] { shutdown(p.b, SHUT_WR); });
    char buf[8];
    EXPECT_EQ(recv(p.a, buf, 8, MSG_WAITALL), 3);
}

TEST(Recv, PeekLeavesTheData) {
    Pair p = socket_pair();
    After writer(10, [&] { ASSERT_EQ(write(p.b, "xyz", 3), 3); });
    char buf[8];
    EXPECT_EQ(recv(p.a, buf, 8, MSG_PEEK), 3);
    EXPECT_EQ(recv(p.a, buf, 8, 0), 3);
}

TEST(Recv, DontwaitGivesEagain) {
    Pair p = socket_pair();
    char c;
    EXPECT_EQ(recv(p.a, &c, 1, MSG_DONTWAIT), -1);
    EXPECT_EQ(errno, EAGAIN);
}

TEST(Recv, NotASocketGivesEnotsock) {
    Pair p = pipe_pair();
    char c;
    EXPECT_EQ(recv(p.a, &c, 1, 0), -1);
    EXPECT_EQ(errno, ENOTSOCK);
}

TEST(Recv, SoRcvtimeoGivesEagain) {
    Pair p = socket_pair();
    timeval tv{0, 50000};
    setsockopt(p.a, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char c;
    EXPECT_EQ(recv(p.a, &c, 1, 0), -1);
    EXPECT_EQ(errno, EAGAIN);
}

TEST(Recvfrom, UdpDatagramKeepsItsBoundaryAndSource) {
    int rx = socket(AF_INET, SOCK_DGRAM, 0), tx = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    bind(rx, reinterpret_cast<sockaddr*>(&a), sizeof a);
    getsockname(rx, reinterpret_cast<sockaddr*>(&a), &len);
    After sender(20, [&] {
        sendto(tx, "one", 3, 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
        sendto(tx, "two!", 4, 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
    });
    char buf[16];
    sockaddr_in from{};
    socklen_t flen = sizeof from;
    EXPECT_EQ(recvfrom(rx, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &flen), 3);
    EXPECT_EQ(from.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    EXPECT_EQ(recvfrom(rx, buf, 2, 0, nullptr, nullptr), 2);  // truncated datagram
    close(rx);
    close(tx);
}

TEST(Recvmsg, ReceivesAPassedFileDescriptor) {
    Pair p = socket_pair();
    Pair data = pipe_pair();
    std::thread sender([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        char c = 'f';
        FdMessage out(&c);
        cmsghdr* cm = CMSG_FIRSTHDR(&out.msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &data.b, sizeof(int));
        ASSERT_EQ(sendmsg(p.b, &out.msg, 0), 1);
    });
    char c = 0;
    FdMessage in(&c);
    ASSERT_EQ(recvmsg(p.a, &in.msg, 0), 1);
    sender.join();
    cmsghdr* cm = CMSG_FIRSTHDR(&in.msg);
    ASSERT_NE(cm, nullptr);
    int passed;
    memcpy(&passed, CMSG_DATA(cm), sizeof passed);
    ASSERT_EQ(write(passed, "k", 1), 1);
    char k;
    EXPECT_EQ(read(data.a, &k, 1), 1);
    close(passed);
}

TEST(Send, LargeSendOverTcpArrivesWhole) {
    Listener l;
    int client = tcp_client(l);
    int server = accept(l.fd, nullptr, nullptr);
    const size_t n = 16 << 20;
    std::vector<char> out(n);
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<char>(i % 251);
    std::vector<char> in(n);
    std::thread reader([&] {
        size_t got = 0;
        while (got < n) {
            ssize_t r = recv(server, in.data() + got, n - got, 0);
            ASSERT_GT(r, 0);
            got += static_cast<size_t>(r);
        }
    });
    EXPECT_EQ(send(client, out.data(), n, 0), static_cast<ssize_t>(n));
    reader.join();
    EXPECT_TRUE(in == out);
    close(client);
    close(server);
}

TEST(Send, NosignalToClosedPeerGivesEpipe) {
    Pair p = socket_pair();
    close(p.a);
    p.a = -1;
    EXPECT_EQ(send(p.b, "x", 1, MSG_NOSIGNAL), -1);
    EXPECT_EQ(errno, EPIPE);
}

TEST(Send, DontwaitOnFullSocketGivesEagainOrPartial) {
    Pair p = socket_pair();
    std::vector<char> big(1 << 20);
    ssize_t r;
    while ((r = send(p.b, big.data(), big.size(), MSG_DONTWAIT)) > 0) {
    }
    EXPECT_EQ(r, -1);
    EXPECT_EQ(errno, EAGAIN);
}

TEST(Sendmsg, GathersAndDeliversInOrder) {
    Pair p = socket_pair();
    char a[] = "hello ", b[] = "world";
    iovec iov[2] = {{a, 6}, {b, 5}};
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    EXPECT_EQ(sendmsg(p.b, &msg, 0), 11);
    char buf[16];
    EXPECT_EQ(recv(p.a, buf, sizeof buf, 0), 11);
    EXPECT_EQ(std::string(buf, 11), "hello world");
}

TEST(Sendto, UnconnectedUdpWithoutAddressGivesEdestaddrreq) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    EXPECT_EQ(sendto(fd, "x", 1, 0, nullptr, 0), -1);
    EXPECT_EQ(errno, EDESTADDRREQ);
    close(fd);
}

TEST(Recv, ErrqueueNeverWaitsWhenTheQueueIsEmpty) {
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    ASSERT_GE(udp, 0);
    Listener l;
    int tcp = tcp_client(l);
    for (int fd : {udp, tcp}) {
        char buf[64];
        auto start = Clock::now();
        EXPECT_EQ(recv(fd, buf, sizeof buf, MSG_ERRQUEUE), -1);
        EXPECT_EQ(errno, EAGAIN);
        EXPECT_EQ(recvfrom(fd, buf, sizeof buf, MSG_ERRQUEUE, nullptr, nullptr), -1);
        EXPECT_EQ(errno, EAGAIN);
        iovec iov{buf, sizeof buf};
        char control[64];
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        EXPECT_EQ(recvmsg(fd, &msg, MSG_ERRQUEUE), -1);
        EXPECT_EQ(errno, EAGAIN);
        EXPECT_LT(ms_since(start), 1000);
    }
    close(udp);
    close(tcp);
}

// The kernel reads SO_RCVTIMEO once per call (tcp_recvmsg, unix_stream_read_generic): a
// peer that sends a byte now and then does not stretch a MSG_WAITALL receive past it.
TEST(Recv, WaitallTimeoutBoundsTheWholeCallAndReturnsThePart) {
    for (bool tcp : {false, true}) {
        SCOPED_TRACE(tcp ? "tcp" : "unix");
        Listener l;
        int sv[2];
        if (tcp) {
            sv[1] = tcp_client(l);
            sv[0] = accept(l.fd, nullptr, nullptr);
        } else {
            ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        }
        Pair p{sv[0], sv[1]};
        timeval tv{0, 300000};
        ASSERT_EQ(setsockopt(p.a, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
        std::atomic<bool> stop{false};
        std::thread trickle([&] {
            for (int i = 0; i < 20 && !stop; ++i) {
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
                if (!stop) {
                    ASSERT_EQ(write(p.b, "t", 1), 1);
                }
            }
        });
        char buf[64];
        auto start = Clock::now();
        ssize_t n = recv(p.a, buf, sizeof buf, MSG_WAITALL);
        long took = ms_since(start);
        stop = true;
        trickle.join();
        EXPECT_GE(n, 1);
        EXPECT_LE(n, 6);
        EXPECT_GE(took, 280);
        EXPECT_LT(took, 800);
    }
}

namespace {
void ignore_signal(int) {}
}  // namespace

// After part of the data, a handler ends a MSG_WAITALL receive with the count, even under
// SA_RESTART: the kernel returns what it copied instead of restarting.
TEST(Recv, WaitallReturnsThePartAfterASignalEvenUnderSaRestart) {
    struct sigaction act {};
    struct sigaction before {};
    act.sa_handler = ignore_signal;
    act.sa_flags = SA_RESTART;
    sigemptyset(&act.sa_mask);
    sigaction(SIGUSR1, &act, &before);
    Pair p = socket_pair();
    std::atomic<ssize_t> got{-2};
    std::atomic<bool> done{false};
    pthread_t receiver;
    struct Args {
        int fd;
        std::atomic<ssize_t>* got;
        std::atomic<bool>* done;
    } args{p.a, &got, &done};
    ASSERT_EQ(pthread_create(
                  &receiver, nullptr,
                  [](void* arg) -> void* {
                      auto* a = static_cast<Args*>(arg);
                      char buf[10];
                      *a->got = recv(a->fd, buf, sizeof buf, MSG_WAITALL);
                      *a->done = true;
                      return nullptr;
                  },
                  &args),
              0);
    ASSERT_EQ(write(p.b, "abc", 3), 3);
    // Wait until the receiver has taken the three bytes (it waits for the rest now).
    auto start = Clock::now();
    int queued = 1;
    while (ms_since(start) < 5000 && ioctl(p.a, FIONREAD, &queued) == 0 && queued > 0) usleep(1000);
    ASSERT_EQ(queued, 0);
    // The signal may come before the receiver is asleep again: send until it returns.
    start = Clock::now();
    while (!done && ms_since(start) < 2000) {
        pthread_kill(receiver, SIGUSR1);
        auto sent = Clock::now();
        while (!done && ms_since(sent) < 100) usleep(1000);
    }
    if (!done) {
        ASSERT_EQ(write(p.b, "1234567", 7), 7);  // unstick it: the test fails below
    }
    pthread_join(receiver, nullptr);
    EXPECT_EQ(got, 3);
    sigaction(SIGUSR1, &before, nullptr);
}

// A blocking connect's wait can end before the connection is made: here the carrier's epoll
// set refuses the socket (a seccomp filter fails epoll_ctl on it), which counts as ready.
// The connect must then go on waiting without blocking, so other threads keep running; the
// peer's accept queue is full, so the SYN is dropped and the connection stays pending.
TEST(Connect, AWaitThatEndsEarlyLeavesOtherThreadsRunning) {
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(listen(listener, 0), 0);
    getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
    int first = socket(AF_INET, SOCK_STREAM, 0);  // fills the accept queue
    ASSERT_EQ(connect(first, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        sock_filter filter[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_epoll_ctl, 0, 3),
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args) + 2 * sizeof(uint64_t)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(fd), 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        if (!install_seccomp_filter(filter, sizeof filter / sizeof filter[0])) _exit(100);
        std::thread connector(
            [&] { connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr); });
        connector.detach();
        // Twenty 10 ms sleeps: about 200 ms, unless the connect holds the process's only
        // carrier until the SYN is answered (never, while the queue stays full).
        auto start = Clock::now();
        for (int i = 0; i < 20; ++i) usleep(10000);
        _exit(ms_since(start) < 2000 ? 0 : 1);
    }
    int status = wait_child_within(pid, 10000);
    close(first);
    close(listener);
    ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
    EXPECT_EQ(WEXITSTATUS(status), 0);
}
