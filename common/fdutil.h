/* Small fd helpers shared by the daemon and the library. */
#pragma once

#include <linux/kcmp.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * Whether fds a and b (both borrowed) refer to the same open file.  Uses
 * kcmp(2); where that is not available it falls back to inode identity for
 * sockets, whose inodes are unique, and answers false for anything else,
 * since every eventfd, timerfd and epoll fd shares one anonymous inode.
 */
static inline bool fd_same_file(int a, int b)
{
        pid_t self = getpid();
        long r = syscall(SYS_kcmp, self, self, KCMP_FILE, a, b);
        struct stat sa, sb;

        if (r >= 0)
                return r == 0;
        if (fstat(a, &sa) < 0 || fstat(b, &sb) < 0)
                return false;
        return S_ISSOCK(sa.st_mode) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}
