/*
 * Shared by the fuzz targets (fuzz-codec.c, fuzz-session.c) and by the
 * corpus replay in tests/test-fuzzcorpus.c, which #includes the targets
 * with LLVMFuzzerTestOneInput renamed.  Everything here is static inline so
 * that two targets included into one file do not clash.
 */
#pragma once

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Open fds of this process, as tests/helpers.c counts them. */
static inline int fuzz_fd_count(void)
{
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        int n = 0;

        if (!d)
                return -1;
        while ((e = readdir(d)))
                n += e->d_name[0] != '.';
        closedir(d);
        return n - 1; /* the DIR's own */
}

/* A broken invariant: say what broke, then abort so that libFuzzer saves
 * the input as a crash (and the replay's Check test fails). */
#define fuzz_check(cond, ...)                                                                      \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: fuzz check failed: %s: ", __FILE__, __LINE__,      \
                                #cond);                                                            \
                        fprintf(stderr, __VA_ARGS__);                                              \
                        fputc('\n', stderr);                                                       \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)
