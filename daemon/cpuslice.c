/*
 * sched_setattr/sched_getattr through syscall(2): glibc 2.36 has no
 * wrappers.  The kernel reports a fair task's slice in sched_runtime (6.12
 * and later; 0 before), which is how a kernel without custom slices is
 * told apart: it accepts the call and ignores the field.
 */
#include "cpuslice.h"

#include <errno.h>
#include <stdbool.h>
#include <linux/sched.h>
#include <linux/sched/types.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int attr_get(struct sched_attr *ret)
{
        struct sched_attr a;

        memset(&a, 0, sizeof(a));
        if (syscall(SYS_sched_getattr, 0, &a, sizeof(a), 0) < 0)
                return -errno;
        *ret = a;
        return 0;
}

static bool policy_is_fair(uint32_t policy)
{
        return policy == SCHED_NORMAL || policy == SCHED_BATCH || policy == SCHED_IDLE;
}

int cpuslice_set(int64_t ns, CpuSlice *ret)
{
        struct sched_attr a;
        int r;

        if (ns < 0)
                return -EINVAL;
        r = attr_get(&a);
        if (r < 0)
                return r;
        bool fair = policy_is_fair(a.sched_policy);
        bool applied = false;
        if (fair) {
                /* Policy, nice and the reset-on-fork flag as they are; no
                 * utilisation clamps (their flags are not set). */
                struct sched_attr set = {
                        .size = sizeof(set),
                        .sched_policy = a.sched_policy,
                        .sched_flags = a.sched_flags & SCHED_FLAG_RESET_ON_FORK,
                        .sched_nice = a.sched_nice,
                        .sched_runtime = (uint64_t)ns,
                };
                if (syscall(SYS_sched_setattr, 0, &set, 0) < 0)
                        return -errno;
                r = attr_get(&a);
                if (r < 0)
                        return r;
                /* sched_runtime 0 after the call: the kernel has no slices. */
                applied = a.sched_runtime != 0;
        }
        if (ret)
                *ret = (CpuSlice){
                        .requested_ns = ns,
                        .kernel_ns = (int64_t)a.sched_runtime,
                        .policy = (int)a.sched_policy,
                };
        return applied ? 1 : 0;
}
