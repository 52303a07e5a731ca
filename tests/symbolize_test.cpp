// Names the diagnostics print (runtime/symbolize.cpp): system calls by number.
#include "runtime/symbolize.h"

#include <gtest/gtest.h>
#include <sys/syscall.h>

#include <string>

TEST(Symbolize, SyscallNamesCoverTheNewestCalls) {
    EXPECT_EQ(std::string(green::syscall_name(0)), "read");
    EXPECT_EQ(std::string(green::syscall_name(128)), "rt_sigtimedwait");
    EXPECT_EQ(std::string(green::syscall_name(426)), "io_uring_enter");
    EXPECT_EQ(std::string(green::syscall_name(435)), "clone3");
    EXPECT_EQ(std::string(green::syscall_name(439)), "faccessat2");
    EXPECT_EQ(std::string(green::syscall_name(441)), "epoll_pwait2");
    EXPECT_EQ(std::string(green::syscall_name(-1)), "syscall");
    EXPECT_EQ(std::string(green::syscall_name(100000)), "syscall");
}

TEST(Symbolize, SyscallNamesAgreeWithTheHeadersNumbers) {
    EXPECT_EQ(std::string(green::syscall_name(SYS_io_uring_setup)), "io_uring_setup");
    EXPECT_EQ(std::string(green::syscall_name(SYS_pidfd_getfd)), "pidfd_getfd");
    EXPECT_EQ(std::string(green::syscall_name(SYS_close_range)), "close_range");
    EXPECT_EQ(std::string(green::syscall_name(SYS_futex_waitv)), "futex_waitv");
    EXPECT_EQ(std::string(green::syscall_name(SYS_set_mempolicy_home_node)),
              "set_mempolicy_home_node");
}
