/*
 * The CPU slice netpolld asks of the kernel's EEVDF scheduler.
 *
 * Since Linux 6.12 a task under SCHED_OTHER or SCHED_BATCH may request its
 * own slice through sched_setattr's sched_runtime (0.1 ms .. 100 ms).  A
 * task that wakes with a shorter slice than the running one and an earlier
 * deadline preempts it at once (PREEMPT_SHORT); with equal slices it waits
 * until the running task's slice is used up, which a busy loop only notices
 * at the next tick.  So a long slice for the daemon lets a client it has
 * just woken, which the kernel tends to place on the daemon's own CPU
 * (AF_UNIX wakes the reader synchronously), run at once instead of waiting
 * behind a daemon working through another client's storm.
 */
#pragma once

#include <stdint.h>

typedef enum CpuSliceOutcome {
        CPUSLICE_APPLIED = 1,  /* the kernel holds the slice asked for */
        CPUSLICE_POLICY = 0,   /* not SCHED_OTHER/SCHED_BATCH: left alone */
        CPUSLICE_NO_KERNEL = 2 /* the kernel has no per-task slices (before 6.12) */
} CpuSliceOutcome;

typedef struct CpuSlice {
        int64_t kernel_ns; /* the slice the kernel reports afterwards, 0: none reported */
        int policy;        /* the thread's policy (SCHED_*, without SCHED_RESET_ON_FORK) */
} CpuSlice;

/* Asks for a slice of ns for the calling thread, or the kernel's default
 * for 0, keeping its policy, nice value, reset-on-fork flag and
 * utilisation clamps.  Threads of any policy but SCHED_OTHER and
 * SCHED_BATCH are left alone.  Fills *ret (when not NULL) with what the
 * kernel reports afterwards.  Returns a CpuSliceOutcome, or -errno (-EPERM
 * under a seccomp filter that denies sched_setattr). */
int cpuslice_set(int64_t ns, CpuSlice *ret);

/* cpuslice_set for ns, and a log line that says what came of it (a
 * warning when the kernel refused, a notice when it does not apply). */
void cpuslice_apply(int64_t ns);
