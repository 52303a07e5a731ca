// stdio streams over sockets, pipes and FIFOs, made by fdopen, popen, fopen and the standard
// streams: glibc's buffering, ungetc, fileno, setvbuf, flags, getline, pclose's status. Under
// the shim these FILEs read and write through cooperative callbacks (hooks/stdio.cpp); every
// answer must be glibc's.
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <wchar.h>

#include <iostream>
#include <string>

#include <gtest/gtest.h>

#include "common.h"

using namespace sem;

extern char** environ;

namespace {

// Bytes queued on `fd` for reading now.
long queued(int fd) {
    int count = 0;
    return ioctl(fd, FIONREAD, &count) == 0 ? count : -1;
}

std::string read_exactly(int fd, size_t n) {
    std::string s(n, '\0');
    size_t got = 0;
    while (got < n) {
        ssize_t r = ::read(fd, &s[got], n - got);
        if (r <= 0) break;
        got += static_cast<size_t>(r);
    }
    s.resize(got);
    return s;
}

std::string read_to_eof(int fd) {
    std::string s;
    char buf[4096];
    ssize_t r;
    while ((r = ::read(fd, buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(r));
    return s;
}

void write_all(int fd, const std::string& s) {
    size_t done = 0;
    while (done < s.size()) {
        ssize_t r = ::write(fd, s.data() + done, s.size() - done);
        if (r <= 0) return;
        done += static_cast<size_t>(r);
    }
}

// fdopen on `*fd`, which the FILE then owns (the Pair no longer closes it).
FILE* adopt(int* fd, const char* mode) {
    FILE* f = fdopen(*fd, mode);
    if (f) *fd = -1;
    return f;
}

// A payload whose every byte says where it is.
std::string pattern(size_t n) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 7 + i / 251) & 0xff);
    return s;
}

// A scratch directory, removed with what is in it.
struct TempDir {
    std::string path;
    TempDir() {
        char templ[] = "/tmp/green-stdio-XXXXXX";
        path = mkdtemp(templ);
    }
    ~TempDir() { system(("rm -rf " + path).c_str()); }
};

}  // namespace

// ---------------------------------------------------------------------------------------
// fdopen on a socket

TEST(StdioSocket, FgetsJoinsAPartialLineAndKeepsTheRestBuffered) {
    Pair s = socket_pair();
    FILE* f = adopt(&s.a, "r");
    ASSERT_NE(f, nullptr);
    After later(30, [&] { write_all(s.b, "lo\nworld\npartial"); });
    write_all(s.b, "hel");
    char line[64];
    ASSERT_NE(fgets(line, sizeof line, f), nullptr);
    EXPECT_STREQ(line, "hello\n");
    ASSERT_NE(fgets(line, sizeof line, f), nullptr);
    EXPECT_STREQ(line, "world\n");
    shutdown(s.b, SHUT_WR);
    ASSERT_NE(fgets(line, sizeof line, f), nullptr);
    EXPECT_STREQ(line, "partial");
    EXPECT_FALSE(feof(f) == 0);  // the last line ended at end-of-file
    EXPECT_EQ(fgets(line, sizeof line, f), nullptr);
    EXPECT_EQ(fclose(f), 0);
}

TEST(StdioSocket, UngetcGivesBackACharacterAndFilenoIsTheSocket) {
    Pair s = socket_pair();
    const int fd = s.a;
    FILE* f = fdopen(fd, "r+");
    ASSERT_NE(f, nullptr);
    s.a = -1;
    EXPECT_EQ(fileno(f), fd);
    write_all(s.b, "ab");
    EXPECT_EQ(fgetc(f), 'a');
    EXPECT_EQ(ungetc('z', f), 'z');
    EXPECT_EQ(fgetc(f), 'z');
    EXPECT_EQ(fgetc(f), 'b');
    EXPECT_EQ(ungetc(EOF, f), EOF);
    EXPECT_EQ(ftell(f), -1);
    EXPECT_EQ(errno, ESPIPE);
    EXPECT_EQ(fclose(f), 0);
    EXPECT_EQ(fcntl(fd, F_GETFD), -1);  // fclose closed the socket
    EXPECT_EQ(errno, EBADF);
}

TEST(StdioSocket, FdopenChecksTheModeAgainstTheFd) {
    Pair s = pipe_pair();
    errno = 0;
    EXPECT_EQ(fdopen(s.a, "w"), nullptr);  // a read end
    EXPECT_EQ(errno, EINVAL);
    errno = 0;
    EXPECT_EQ(fdopen(closed_fd(), "r"), nullptr);
    EXPECT_EQ(errno, EBADF);
    errno = 0;
    EXPECT_EQ(fdopen(s.a, "q"), nullptr);
    EXPECT_EQ(errno, EINVAL);
}

TEST(StdioSocket, FullBufferingSendsWholeBuffersOfTheBlockSize) {
    Pair s = socket_pair();
    struct stat st;
    ASSERT_EQ(fstat(s.a, &st), 0);
    const long block = st.st_blksize > 0 && st.st_blksize < BUFSIZ ? st.st_blksize : BUFSIZ;
    FILE* f = adopt(&s.a, "w");
    ASSERT_NE(f, nullptr);
    std::string data = pattern(static_cast<size_t>(block) + 100);
    ASSERT_EQ(fwrite(data.data(), 1, 10, f), 10u);
    EXPECT_EQ(queued(s.b), 0);  // nothing sent yet
    ASSERT_EQ(fwrite(data.data() + 10, 1, data.size() - 10, f), data.size() - 10);
    EXPECT_EQ(queued(s.b), block);
    EXPECT_EQ(fflush(f), 0);
    EXPECT_EQ(read_exactly(s.b, data.size()), data);
    EXPECT_EQ(fclose(f), 0);
}

TEST(StdioSocket, SetvbufLineBufferedAndTheProgramsOwnBuffer) {
    Pair s = socket_pair();
    FILE* f = adopt(&s.a, "w");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(setvbuf(f, nullptr, _IOLBF, 0), 0);
    fputs("no newline yet", f);
    EXPECT_EQ(queued(s.b), 0);
    fputs(", now\n", f);
    EXPECT_EQ(read_exactly(s.b, 20), "no newline yet, now\n");
    EXPECT_EQ(fclose(f), 0);

    Pair t = socket_pair();
    FILE* g = adopt(&t.a, "w");
    ASSERT_NE(g, nullptr);
    char own[256];
    ASSERT_EQ(setvbuf(g, own, _IOFBF, sizeof own), 0);
    const std::string data = pattern(300);
    ASSERT_EQ(fwrite(data.data(), 1, 100, g), 100u);
    EXPECT_EQ(queued(t.b), 0);
    ASSERT_EQ(fwrite(data.data() + 100, 1, 200, g), 200u);  // the full buffer went out
    EXPECT_EQ(queued(t.b), 256);
    EXPECT_EQ(fclose(g), 0);
    EXPECT_EQ(read_to_eof(t.b), data);
}

TEST(StdioSocket, UnbufferedWritesEachCallAtOnce) {
    Pair s = socket_pair();
    FILE* f = adopt(&s.a, "w");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(setvbuf(f, nullptr, _IONBF, 0), 0);
    EXPECT_EQ(fputc('x', f), 'x');
    EXPECT_EQ(queued(s.b), 1);
    EXPECT_EQ(fprintf(f, "%d-%s", 42, "y"), 4);
    EXPECT_EQ(read_exactly(s.b, 5), "x42-y");
    EXPECT_EQ(fclose(f), 0);
}

TEST(StdioSocket, EofAndErrorFlagsAndClearerr) {
    IgnoreSigpipe ignore;
    Pair s = socket_pair();
    FILE* f = adopt(&s.a, "r+");
    ASSERT_NE(f, nullptr);
    write_all(s.b, "x");
    shutdown(s.b, SHUT_WR);
    EXPECT_EQ(fgetc(f), 'x');
    EXPECT_EQ(fgetc(f), EOF);
    EXPECT_NE(feof(f), 0);
    EXPECT_EQ(ferror(f), 0);
    clearerr(f);
    EXPECT_EQ(feof(f), 0);
    close(s.b);  // the peer is gone: a write fails with EPIPE
    s.b = -1;
    fputs("lost", f);
    errno = 0;
    EXPECT_EQ(fflush(f), EOF);
    EXPECT_EQ(errno, EPIPE);
    EXPECT_NE(ferror(f), 0);
    clearerr(f);
    EXPECT_EQ(ferror(f), 0);
    fclose(f);
}

TEST(StdioSocket, ReadingAWriteOnlyStreamSetsTheErrorFlag) {
    Pair s = socket_pair();
    FILE* f = adopt(&s.a, "w");
    ASSERT_NE(f, nullptr);
    errno = 0;
    EXPECT_EQ(fgetc(f), EOF);
    EXPECT_EQ(errno, EBADF);
    EXPECT_NE(ferror(f), 0);
    EXPECT_EQ(feof(f), 0);
    EXPECT_EQ(fclose(f), 0);
}

TEST(StdioSocket, GetlineAndGetdelimGrowTheirBuffer) {
    Pair s = socket_pair();
    FILE* f = adopt(&s.a, "r");
    ASSERT_NE(f, nullptr);
    std::string long_line(10000, 'q');
    After later(20, [&] {
        write_all(s.b, long_line + "\nk1=v1,k2=v2");
        shutdown(s.b, SHUT_WR);
    });
    char* line = nullptr;
    size_t cap = 0;
    EXPECT_EQ(getline(&line, &cap, f), 10001);
    EXPECT_EQ(std::string(line), long_line + "\n");
    EXPECT_EQ(getdelim(&line, &cap, ',', f), 6);
    EXPECT_STREQ(line, "k1=v1,");
    EXPECT_EQ(getdelim(&line, &cap, ',', f), 5);
    EXPECT_STREQ(line, "k2=v2");
    EXPECT_EQ(getline(&line, &cap, f), -1);
    EXPECT_NE(feof(f), 0);
    free(line);
    EXPECT_EQ(fclose(f), 0);
}

TEST(StdioSocket, LargeFwriteToASlowReaderArrivesWholeAndInOrder) {
    Pair s = socket_pair();
    int small = 4096;
    setsockopt(s.a, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    FILE* f = adopt(&s.a, "w");
    ASSERT_NE(f, nullptr);
    const std::string data = pattern(3 << 20);
    std::string got;
    std::thread reader([&] {
        char buf[7000];
        ssize_t r;
        int reads = 0;
        while ((r = ::read(s.b, buf, sizeof buf)) > 0) {
            got.append(buf, static_cast<size_t>(r));
            if (++reads % 64 == 0) usleep(1000);  // a slow peer
        }
    });
    EXPECT_EQ(fwrite(data.data(), 1, data.size(), f), data.size());
    EXPECT_EQ(fclose(f), 0);
    reader.join();
    EXPECT_TRUE(got == data) << "got " << got.size() << " bytes";
}

TEST(StdioSocket, FflushOfABigBufferWaitsForTheSlowReader) {
    Pair s = socket_pair();
    int small = 4096;
    setsockopt(s.a, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    FILE* f = adopt(&s.a, "w");
    ASSERT_NE(f, nullptr);
    std::vector<char> buffer(1 << 20);
    ASSERT_EQ(setvbuf(f, buffer.data(), _IOFBF, buffer.size()), 0);
    const std::string data = pattern(900000);
    ASSERT_EQ(fwrite(data.data(), 1, data.size(), f), data.size());
    EXPECT_EQ(queued(s.b), 0);  // all of it still in the buffer
    std::string got;
    std::thread reader([&] {
        char buf[3000];
        ssize_t r;
        int reads = 0;
        while ((r = ::read(s.b, buf, sizeof buf)) > 0) {
            got.append(buf, static_cast<size_t>(r));
            if (++reads % 32 == 0) usleep(1000);
        }
    });
    EXPECT_EQ(fflush(f), 0);
    EXPECT_EQ(fclose(f), 0);
    reader.join();
    EXPECT_TRUE(got == data) << "got " << got.size() << " bytes";
}

TEST(StdioSocket, LargeFreadFromASlowWriterGetsEveryByte) {
    Pair s = socket_pair();
    FILE* f = adopt(&s.a, "r");
    ASSERT_NE(f, nullptr);
    const std::string data = pattern(2 << 20);
    std::thread writer([&] {
        for (size_t at = 0; at < data.size(); at += 5000) {
            write_all(s.b, data.substr(at, 5000));
            if ((at / 5000) % 64 == 0) usleep(1000);
        }
        shutdown(s.b, SHUT_WR);
    });
    std::string got(data.size() + 10, '\0');
    EXPECT_EQ(fread(&got[0], 1, got.size(), f), data.size());
    got.resize(data.size());
    EXPECT_NE(feof(f), 0);
    writer.join();
    EXPECT_TRUE(got == data);
    EXPECT_EQ(fclose(f), 0);
}

TEST(StdioSocket, AThreadWaitingInFgetsLeavesTheOthersRunning) {
    Pair s = socket_pair();
    FILE* f = adopt(&s.a, "r");
    ASSERT_NE(f, nullptr);
    Ticker ticker;
    After later(200, [&] { write_all(s.b, "late\n"); });
    char line[16];
    ASSERT_NE(fgets(line, sizeof line, f), nullptr);
    EXPECT_STREQ(line, "late\n");
    EXPECT_GE(ticker.ticks(), 5);
    EXPECT_EQ(fclose(f), 0);
}

TEST(StdioSocket, WideOrientationWorksAsOnGlibcsOwnFile) {
    Pair s = socket_pair();
    FILE* out = fdopen(s.a, "w");
    FILE* in = fdopen(s.b, "r");
    ASSERT_NE(out, nullptr);
    ASSERT_NE(in, nullptr);
    s.a = s.b = -1;
    EXPECT_EQ(fwide(out, 0), 0);  // not oriented yet
    EXPECT_GT(fwide(out, 1), 0);
    EXPECT_EQ(fwprintf(out, L"wide %d %ls\n", 7, L"text"), 12);
    EXPECT_EQ(fputwc(L'z', out), static_cast<wint_t>(L'z'));
    EXPECT_EQ(fputws(L"\nend\n", out), 1);
    EXPECT_EQ(fclose(out), 0);
    wchar_t line[32];
    ASSERT_NE(fgetws(line, 32, in), nullptr);
    EXPECT_STREQ(line, L"wide 7 text\n");
    EXPECT_EQ(fgetwc(in), static_cast<wint_t>(L'z'));
    EXPECT_EQ(ungetwc(L'y', in), static_cast<wint_t>(L'y'));
    EXPECT_EQ(fgetwc(in), static_cast<wint_t>(L'y'));
    ASSERT_NE(fgetws(line, 32, in), nullptr);
    EXPECT_STREQ(line, L"\n");
    ASSERT_NE(fgetws(line, 32, in), nullptr);
    EXPECT_STREQ(line, L"end\n");
    EXPECT_EQ(fgetwc(in), WEOF);
    EXPECT_NE(feof(in), 0);
    EXPECT_EQ(fclose(in), 0);
}

TEST(StdioSocket, AByteOrientedStreamStaysSo) {
    Pair s = socket_pair();
    FILE* f = adopt(&s.a, "w");
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(fputc('a', f), 'a');
    EXPECT_LT(fwide(f, 1), 0);
    EXPECT_EQ(fputwc(L'b', f), WEOF);
    EXPECT_EQ(fclose(f), 0);
    EXPECT_EQ(read_to_eof(s.b), "a");
}

// ---------------------------------------------------------------------------------------
// pipes: fdopen, popen, fopen of a FIFO

TEST(StdioPipe, FdopenReadsWhatAWriterThreadSendsLater) {
    Pair p = pipe_pair();
    FILE* in = fdopen(p.a, "r");
    FILE* out = fdopen(p.b, "w");
    ASSERT_NE(in, nullptr);
    ASSERT_NE(out, nullptr);
    p.a = p.b = -1;
    EXPECT_EQ(fileno(in) >= 0 && fileno(out) >= 0, true);
    std::thread writer([&] {
        for (int i = 0; i < 100; ++i) fprintf(out, "line %d\n", i);
        fclose(out);
    });
    char line[32];
    int n = 0;
    while (fgets(line, sizeof line, in)) {
        EXPECT_EQ(std::string(line), "line " + std::to_string(n) + "\n");
        ++n;
    }
    EXPECT_EQ(n, 100);
    EXPECT_NE(feof(in), 0);
    writer.join();
    EXPECT_EQ(fclose(in), 0);
}

TEST(StdioPipe, PopenReadsTheChildsOutputAndPcloseGivesItsStatus) {
    FILE* f = popen("printf 'one\\ntwo\\n'; exit 3", "r");
    ASSERT_NE(f, nullptr);
    EXPECT_GE(fileno(f), 0);
    char* line = nullptr;
    size_t cap = 0;
    EXPECT_EQ(getline(&line, &cap, f), 4);
    EXPECT_STREQ(line, "one\n");
    EXPECT_EQ(getline(&line, &cap, f), 4);
    EXPECT_STREQ(line, "two\n");
    EXPECT_EQ(getline(&line, &cap, f), -1);
    free(line);
    int status = pclose(f);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 3);
}

TEST(StdioPipe, PopenWritesToTheChildAndPcloseWaitsForIt) {
    TempDir dir;
    const std::string out = dir.path + "/out";
    FILE* f = popen(("sleep 0.1; cat > " + out + "; exit 5").c_str(), "w");
    ASSERT_NE(f, nullptr);
    Ticker ticker;
    for (int i = 0; i < 1000; ++i) fprintf(f, "%d\n", i);
    int status = pclose(f);  // the child ends once it has read everything
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 5);
    std::string expected;
    for (int i = 0; i < 1000; ++i) expected += std::to_string(i) + "\n";
    int fd = open(out.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(read_to_eof(fd), expected);
    close(fd);
}

TEST(StdioPipe, PcloseOfAKilledChildReportsTheSignal) {
    FILE* f = popen("kill -TERM $$; sleep 5", "r");
    ASSERT_NE(f, nullptr);
    int status = pclose(f);
    ASSERT_TRUE(WIFSIGNALED(status));
    EXPECT_EQ(WTERMSIG(status), SIGTERM);
}

TEST(StdioPipe, PcloseWhenSigchldIsIgnoredFailsWithEchild) {
    struct sigaction ignore {}, old{};
    ignore.sa_handler = SIG_IGN;
    sigaction(SIGCHLD, &ignore, &old);
    FILE* f = popen("exit 0", "r");
    ASSERT_NE(f, nullptr);
    errno = 0;
    EXPECT_EQ(pclose(f), -1);
    EXPECT_EQ(errno, ECHILD);
    sigaction(SIGCHLD, &old, nullptr);
}

TEST(StdioPipe, PopenRejectsABadMode) {
    errno = 0;
    EXPECT_EQ(popen("true", "rw"), nullptr);
    EXPECT_EQ(errno, EINVAL);
    errno = 0;
    EXPECT_EQ(popen("true", "x"), nullptr);
    EXPECT_EQ(errno, EINVAL);
}

TEST(StdioPipe, AnEarlierPopenStreamIsClosedInALaterChild) {
    FILE* first = popen("cat > /dev/null", "w");  // ends when every write end is closed
    ASSERT_NE(first, nullptr);
    FILE* second = popen("sleep 2", "r");  // must not hold first's write end
    ASSERT_NE(second, nullptr);
    auto start = Clock::now();
    EXPECT_EQ(pclose(first), 0);
    EXPECT_LT(ms_since(start), 1500);
    EXPECT_EQ(pclose(second), 0);
}

TEST(StdioPipe, FopenOfAFifoReadsWhatAnotherProcessWrites) {
    TempDir dir;
    const std::string fifo = dir.path + "/fifo";
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    pid_t child = fork();
    if (child == 0) {
        int fd = open(fifo.c_str(), O_WRONLY);
        usleep(50000);  // a slow writer: the reader waits in fgets
        const char text[] = "from the fifo\nsecond\n";
        _exit(fd >= 0 && write(fd, text, sizeof text - 1) == sizeof text - 1 ? 0 : 1);
    }
    FILE* f = fopen(fifo.c_str(), "r");
    ASSERT_NE(f, nullptr);
    struct stat st;
    ASSERT_EQ(fstat(fileno(f), &st), 0);
    EXPECT_TRUE(S_ISFIFO(st.st_mode));
    char line[32];
    ASSERT_NE(fgets(line, sizeof line, f), nullptr);
    EXPECT_STREQ(line, "from the fifo\n");
    ASSERT_NE(fgets(line, sizeof line, f), nullptr);
    EXPECT_STREQ(line, "second\n");
    EXPECT_EQ(fgets(line, sizeof line, f), nullptr);
    EXPECT_NE(feof(f), 0);
    EXPECT_EQ(fclose(f), 0);
    EXPECT_EQ(wait_child_within(child, 10000), 0);
}

TEST(StdioPipe, FopenOfARegularFileStaysSeekable) {
    TempDir dir;
    const std::string path = dir.path + "/file";
    FILE* f = fopen(path.c_str(), "w+");
    ASSERT_NE(f, nullptr);
    fputs("hello", f);
    EXPECT_EQ(ftell(f), 5);
    rewind(f);
    EXPECT_EQ(fgetc(f), 'h');
    EXPECT_EQ(fclose(f), 0);
    errno = 0;
    EXPECT_EQ(fopen((dir.path + "/missing").c_str(), "r"), nullptr);
    EXPECT_EQ(errno, ENOENT);
}

// ---------------------------------------------------------------------------------------
// The standard streams of a child whose stdin and stdout are a socket or a pipe (inetd).

namespace {

// The child's side, run before main when STDIO_SEMANTICS_CHILD is set: answers each line of
// stdin (read by fgets and std::cin in turn) on stdout, through C stdio and C++ iostreams in
// turn (their order must hold), until end-of-file; "bye" goes out with the flush at exit.
__attribute__((constructor)) void stdio_child() {
    if (!getenv("STDIO_SEMANTICS_CHILD")) return;
    static std::ios_base::Init iostreams;
    char line[256];
    int n = 0;
    if (fileno(stdin) != 0 || fileno(stdout) != 1 || fileno(stderr) != 2) _exit(10);
    for (;;) {  // lines read by C stdio and by std::cin in turn: one buffer for both
        std::string text;
        if (n % 2 == 0) {
            if (!fgets(line, sizeof line, stdin)) break;
            text = line;
        } else {
            if (!std::getline(std::cin, text)) break;
            text += "\n";
        }
        printf("%d c: %s", ++n, text.c_str());
        std::cout << n << " c++: " << text;
        fflush(stdout);
    }
    printf("bye %d\n", feof(stdin) != 0);
    exit(0);
}

pid_t spawn_child(int in, int out) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in, 0);
    posix_spawn_file_actions_adddup2(&actions, out, 1);
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) env.emplace_back(*e);
    env.emplace_back("STDIO_SEMANTICS_CHILD=1");
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(&e[0]);
    envp.push_back(nullptr);
    char self[] = "/proc/self/exe";
    char* argv[] = {self, nullptr};
    pid_t pid = -1;
    posix_spawn(&pid, self, &actions, nullptr, argv, envp.data());
    posix_spawn_file_actions_destroy(&actions);
    return pid;
}

std::string expected_answers(int lines) {
    std::string s;
    for (int i = 1; i <= lines; ++i) {
        std::string line = "line " + std::to_string(i) + "\n";
        s += std::to_string(i) + " c: " + line + std::to_string(i) + " c++: " + line;
    }
    return s + "bye 1\n";
}

// Sends three lines, each in two pieces with a pause between (the child waits in fgets for
// the rest), ends the input, and checks every answer.
void converse_with_child(int to_child, int from_child, pid_t child,
                         const std::function<void()>& end_input) {
    for (int i = 1; i <= 3; ++i) {
        std::string line = "line " + std::to_string(i) + "\n";
        write_all(to_child, line.substr(0, 3));
        usleep(20000);
        write_all(to_child, line.substr(3));
    }
    end_input();
    EXPECT_EQ(read_to_eof(from_child), expected_answers(3));
    EXPECT_EQ(wait_child_within(child, 10000), 0);
}

}  // namespace

TEST(StdioStandardStreams, InetdStyleChildOnASocket) {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    Pair s(sv[0], sv[1]);
    pid_t child = spawn_child(s.b, s.b);
    ASSERT_GT(child, 0);
    close(s.b);
    s.b = -1;
    converse_with_child(s.a, s.a, child, [&] { shutdown(s.a, SHUT_WR); });
}

TEST(StdioStandardStreams, ChildOnPipes) {
    int a[2], b[2];  // close-on-exec: the child must hold only its own ends
    ASSERT_EQ(pipe2(a, O_CLOEXEC), 0);
    ASSERT_EQ(pipe2(b, O_CLOEXEC), 0);
    Pair in(a[0], a[1]), out(b[0], b[1]);
    pid_t child = spawn_child(in.a, out.b);
    ASSERT_GT(child, 0);
    close(in.a);
    close(out.b);
    in.a = out.b = -1;
    converse_with_child(in.b, out.a, child, [&] {
        close(in.b);
        in.b = -1;
    });
}
