// waitpid, wait, wait3, wait4, waitid, system, pause, sigsuspend: statuses, errors, signals,
// and that a waiting thread leaves the others running.
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <atomic>
#include <thread>

#include "common.h"

extern char** environ;

using namespace sem;

namespace {

pid_t child_exiting(int code, int after_ms = 0) {
    pid_t pid = fork();
    if (pid == 0) {
        if (after_ms) usleep(static_cast<useconds_t>(after_ms) * 1000);
        _exit(code);
    }
    return pid;
}

std::atomic<int> g_handled{0};
void on_usr1(int) {
    ++g_handled;
}

void install_usr1(int flags) {
    struct sigaction sa {};
    sa.sa_handler = on_usr1;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, nullptr);
}

}  // namespace

TEST(Waitpid, ReturnsTheChildsExitStatus) {
    pid_t pid = child_exiting(7, 50);
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 7);
}

TEST(Waitpid, WaitingLeavesOtherThreadsRunning) {
    Ticker ticker;
    pid_t pid = child_exiting(0, 200);
    auto start = Clock::now();
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_GE(ms_since(start), 150);
    EXPECT_GE(ticker.ticks(), 10);
}

TEST(Waitpid, AnyChildGivesTheFirstToExit) {
    pid_t slow = child_exiting(1, 400);
    pid_t fast = child_exiting(2, 50);
    int status = 0;
    EXPECT_EQ(waitpid(-1, &status, 0), fast);
    EXPECT_EQ(WEXITSTATUS(status), 2);
    EXPECT_EQ(wait(&status), slow);
    EXPECT_EQ(WEXITSTATUS(status), 1);
}

TEST(Waitpid, ProcessGroupOfTheCaller) {
    pid_t pid = child_exiting(4, 30);
    int status = 0;
    EXPECT_EQ(waitpid(0, &status, 0), pid);
    EXPECT_EQ(WEXITSTATUS(status), 4);
}

TEST(Waitpid, WnohangReturnsZeroWhileTheChildRuns) {
    pid_t pid = child_exiting(0, 100);
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, WNOHANG), 0);
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
}

TEST(Waitpid, ErrorsAreTheKernels) {
    int status = 0;
    EXPECT_EQ(waitpid(-1, &status, 0), -1);
    EXPECT_EQ(errno, ECHILD);
    pid_t pid = child_exiting(0);
    EXPECT_EQ(waitpid(pid, &status, 0x100), -1);
    EXPECT_EQ(errno, EINVAL);
    EXPECT_EQ(waitpid(pid, bad_pointer<int>(), 0), -1);
    EXPECT_EQ(errno, EFAULT);
    waitpid(pid, &status, WNOHANG);  // whether EFAULT reaped it is the kernel's business
    EXPECT_EQ(waitpid(getppid(), &status, 0), -1);  // not our child
    EXPECT_EQ(errno, ECHILD);
}

TEST(Waitpid, WuntracedReportsAStopAndWcontinuedTheContinue) {
    // The child exits only when told: had it exited at once after the continue, its exit
    // could be what the WCONTINUED wait reports (a race of the test, natively too).
    int go[2];
    ASSERT_EQ(pipe(go), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(go[1]);
        raise(SIGSTOP);
        char byte;
        _exit(read(go[0], &byte, 1) == 1 ? 5 : 6);
    }
    close(go[0]);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, WUNTRACED), pid);
    EXPECT_TRUE(WIFSTOPPED(status));
    EXPECT_EQ(WSTOPSIG(status), SIGSTOP);
    kill(pid, SIGCONT);
    ASSERT_EQ(waitpid(pid, &status, WCONTINUED), pid);
    EXPECT_TRUE(WIFCONTINUED(status));
    ASSERT_EQ(write(go[1], "x", 1), 1);
    close(go[1]);
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_EQ(WEXITSTATUS(status), 5);
}

TEST(Waitpid, SignalWithoutSaRestartGivesEintrAndWithItKeepsWaiting) {
    install_usr1(0);
    pid_t pid = child_exiting(3, 300);
    pthread_t self = pthread_self();
    int status = 0;
    {
        After later(50, [self] { pthread_kill(self, SIGUSR1); });
        EXPECT_EQ(waitpid(pid, &status, 0), -1);
        EXPECT_EQ(errno, EINTR);
    }
    install_usr1(SA_RESTART);
    {
        After later(50, [self] { pthread_kill(self, SIGUSR1); });
        EXPECT_EQ(waitpid(pid, &status, 0), pid);
        EXPECT_EQ(WEXITSTATUS(status), 3);
    }
    signal(SIGUSR1, SIG_DFL);
}

TEST(Wait4, ReportsResourceUsageAndWait3TheSame) {
    pid_t pid = child_exiting(0, 20);
    int status = 0;
    rusage usage{};
    usage.ru_maxrss = -1;
    EXPECT_EQ(wait4(pid, &status, 0, &usage), pid);
    EXPECT_GE(usage.ru_maxrss, 0);
    pid = child_exiting(6, 20);
    EXPECT_EQ(wait3(&status, 0, &usage), pid);
    EXPECT_EQ(WEXITSTATUS(status), 6);
}

TEST(Waitid, FillsSiginfoAndWnowaitLeavesTheChildWaitable) {
    pid_t pid = child_exiting(9, 50);
    siginfo_t info{};
    ASSERT_EQ(waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT), 0);
    EXPECT_EQ(info.si_pid, pid);
    EXPECT_EQ(info.si_code, CLD_EXITED);
    EXPECT_EQ(info.si_status, 9);
    info = {};
    ASSERT_EQ(waitid(P_ALL, 0, &info, WEXITED), 0);
    EXPECT_EQ(info.si_pid, pid);
    EXPECT_EQ(waitid(P_ALL, 0, &info, WEXITED), -1);
    EXPECT_EQ(errno, ECHILD);
    EXPECT_EQ(waitid(P_ALL, 0, &info, 0), -1);  // no event asked for
    EXPECT_EQ(errno, EINVAL);
}

TEST(System, ReturnsTheShellsStatusAndLetsOthersRun) {
    Ticker ticker;
    int status = system("sleep 0.2; exit 3");
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 3);
    EXPECT_GE(ticker.ticks(), 10);
    EXPECT_NE(system(nullptr), 0);  // a shell is there
    status = system("kill -TERM $$");
    ASSERT_TRUE(WIFSIGNALED(status));
    EXPECT_EQ(WTERMSIG(status), SIGTERM);
}

TEST(System, IgnoresSigintInTheCallerWhileTheShellRuns) {
    struct sigaction before {};
    sigaction(SIGINT, nullptr, &before);
    int status = system("kill -INT $PPID; exit 0");  // SIGINT to us: ignored meanwhile
    EXPECT_EQ(WEXITSTATUS(status), 0);
    struct sigaction after {};
    sigaction(SIGINT, nullptr, &after);
    EXPECT_EQ(after.sa_handler, before.sa_handler);
}

TEST(System, FailsWithEchildWhenSigchldIsIgnored) {
    // The kernel reaps the shell itself, so system's wait fails: glibc returns -1, ECHILD.
    struct sigaction ignore {};
    struct sigaction before {};
    ignore.sa_handler = SIG_IGN;
    sigaction(SIGCHLD, &ignore, &before);
    errno = 0;
    int status = system("exit 3");
    int err = errno;
    sigaction(SIGCHLD, &before, nullptr);
    EXPECT_EQ(status, -1);
    EXPECT_EQ(err, ECHILD);
}

TEST(Pause, ReturnsEintrAfterAHandlerRan) {
    install_usr1(SA_RESTART);  // pause is never restarted
    int handled = g_handled;
    pthread_t self = pthread_self();
    After later(50, [self] { pthread_kill(self, SIGUSR1); });
    EXPECT_EQ(pause(), -1);
    EXPECT_EQ(errno, EINTR);
    EXPECT_EQ(g_handled, handled + 1);
    signal(SIGUSR1, SIG_DFL);
}

TEST(Sigsuspend, RunsAPendingSignalAtOnceAndRestoresTheMask) {
    install_usr1(0);
    sigset_t usr1, old;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, &old);
    int handled = g_handled;
    pthread_kill(pthread_self(), SIGUSR1);  // pending: blocked
    sigset_t none;
    sigemptyset(&none);
    EXPECT_EQ(sigsuspend(&none), -1);
    EXPECT_EQ(errno, EINTR);
    EXPECT_EQ(g_handled, handled + 1);
    sigset_t now;
    pthread_sigmask(SIG_SETMASK, nullptr, &now);
    EXPECT_TRUE(sigismember(&now, SIGUSR1));
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    signal(SIGUSR1, SIG_DFL);
}

TEST(Sigsuspend, WaitsForASignalSentLater) {
    install_usr1(0);
    int handled = g_handled;
    pthread_t self = pthread_self();
    After later(50, [self] { pthread_kill(self, SIGUSR1); });
    sigset_t none;
    sigemptyset(&none);
    auto start = Clock::now();
    EXPECT_EQ(sigsuspend(&none), -1);
    EXPECT_EQ(errno, EINTR);
    EXPECT_GE(ms_since(start), 40);
    EXPECT_EQ(g_handled, handled + 1);
    signal(SIGUSR1, SIG_DFL);
}

TEST(PosixSpawn, StartsAProgramWhoseStatusWaitpidReports) {
    Ticker ticker;
    pid_t pid = 0;
    char sh[] = "sh", c[] = "-c", script[] = "sleep 0.1; exit 11";
    char* argv[] = {sh, c, script, nullptr};
    ASSERT_EQ(posix_spawnp(&pid, "sh", nullptr, nullptr, argv, environ), 0);
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_EQ(WEXITSTATUS(status), 11);
    EXPECT_GE(ticker.ticks(), 5);
    char missing[] = "/nonexistent/program";
    char* none[] = {missing, nullptr};
    EXPECT_EQ(posix_spawn(&pid, missing, nullptr, nullptr, none, environ), ENOENT);
}

// A handler that runs while another thread is busy still ends the sigsuspend of the thread
// that waits for it (the kernel gives a process signal to the thread waiting for it first).
TEST(Sigsuspend, EndsWhenAChildExitsWhileAnotherThreadComputes) {
    std::atomic<int> chld{0};
    static std::atomic<int>* counter;
    counter = &chld;
    struct sigaction sa {}, old{};
    sa.sa_handler = [](int) { ++*counter; };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, &old);
    sigset_t mask, saved;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &mask, &saved);
    pid_t pid = child_exiting(0, 50);
    std::thread busy([] {  // never blocks: under the shim it holds the carrier for 300 ms
        auto start = Clock::now();
        while (ms_since(start) < 300) {
        }
    });
    sigset_t none;
    sigemptyset(&none);
    while (chld == 0) {
        EXPECT_EQ(sigsuspend(&none), -1);
        EXPECT_EQ(errno, EINTR);
    }
    busy.join();
    EXPECT_EQ(waitpid(pid, nullptr, 0), pid);
    pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    sigaction(SIGCHLD, &old, nullptr);
}

// vfork's child may change its signal handlers before it execs: they are its own, never the
// parent's. (Under the shim the child must not run hooks on the parent's state.)
TEST(Vfork, TheChildsSignalChangesStayInTheChild) {
    install_usr1(0);
    int handled = g_handled;
    pid_t pid = vfork();
    if (pid == 0) {
        signal(SIGUSR1, SIG_DFL);
        signal(SIGCHLD, SIG_IGN);
        execl("/bin/true", "true", static_cast<char*>(nullptr));
        _exit(127);
    }
    ASSERT_GT(pid, 0);
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    raise(SIGUSR1);
    EXPECT_EQ(g_handled, handled + 1);  // the parent's handler is still there
    signal(SIGUSR1, SIG_DFL);
}

// vfork returns in the parent once the child has exec'd or exited; other threads run on.
TEST(Vfork, TheParentGoesOnAfterTheChildExecsOrExits) {
    Ticker ticker;
    pid_t pid = vfork();
    if (pid == 0) _exit(9);
    ASSERT_GT(pid, 0);
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_EQ(WEXITSTATUS(status), 9);
    pid = vfork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", "sleep 0.1; exit 4", static_cast<char*>(nullptr));
        _exit(127);
    }
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_EQ(WEXITSTATUS(status), 4);
    EXPECT_GE(ticker.ticks(), 5);
}
