/*
 * sched_setattr/sched_getattr through syscall(2): glibc 2.36 (Debian 12)
 * has no wrappers.  (glibc 2.41 adds them, and a struct sched_attr in
 * <sched.h> that would clash with <linux/sched/types.h>: this file includes
 * only the latter.)  The kernel reports a fair task's slice in
 * sched_runtime (6.12 and later; 0 before), which is how a kernel without
 * custom slices is told apart: it accepts the call and ignores the field.
 */
#include "cpuslice.h"

#include <errno.h>
#include <linux/sched.h>
#include <linux/sched/types.h>
#include <stdbool.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"

static int attr_get(struct sched_attr *ret)
{
        struct sched_attr a;

        memset(&a, 0, sizeof(a));
        if (syscall(SYS_sched_getattr, 0, &a, sizeof(a), 0) < 0)
                return -errno;
        *ret = a;
        return 0;
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
        /* Only these two take a slice: the kernel ignores sched_runtime
         * for SCHED_IDLE, and it means something else for SCHED_DEADLINE. */
        bool fair = a.sched_policy == SCHED_NORMAL || a.sched_policy == SCHED_BATCH;
        CpuSliceOutcome outcome = CPUSLICE_POLICY;
        if (fair) {
                /* Policy, nice and the reset-on-fork flag as they are; no
                 * utilisation clamp flag, so the clamps stay as they are. */
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
                /* The kernel clamps to 0.1..100 ms, as the configuration
                 * does; anything else reported means it ignored the field. */
                if (a.sched_runtime == 0 || (ns != 0 && a.sched_runtime != (uint64_t)ns))
                        outcome = CPUSLICE_NO_KERNEL;
                else
                        outcome = CPUSLICE_APPLIED;
        }
        if (ret)
                *ret = (CpuSlice){
                        .kernel_ns = (int64_t)a.sched_runtime,
                        .policy = (int)a.sched_policy,
                };
        return (int)outcome;
}

static const char *policy_name(int policy)
{
        switch (policy) {
        case SCHED_FIFO:
                return "SCHED_FIFO";
        case SCHED_RR:
                return "SCHED_RR";
        case SCHED_IDLE:
                return "SCHED_IDLE";
        case SCHED_DEADLINE:
                return "SCHED_DEADLINE";
        default:
                return "a policy other than SCHED_OTHER and SCHED_BATCH";
        }
}

void cpuslice_apply(int64_t ns)
{
        CpuSlice got;
        int r = cpuslice_set(ns, &got);

        if (r < 0)
                log_warning("cannot set the scheduler slice (scheduler_slice = %g ms): %s%s",
                            (double)ns / 1e6, strerror(-r),
                            r == -EPERM ? " (a seccomp filter? allow sched_setattr)" : "");
        else if (r == CPUSLICE_APPLIED)
                log_info("scheduler slice %g ms%s", (double)got.kernel_ns / 1e6,
                         ns ? "" : " (the kernel's default)");
        else if (r == CPUSLICE_POLICY)
                log_notice("scheduler_slice ignored: netpolld runs under %s",
                           policy_name(got.policy));
        else if (ns)
                log_notice("scheduler_slice ignored: this kernel has no per-task slices "
                           "(Linux 6.12 or later has)");
}
