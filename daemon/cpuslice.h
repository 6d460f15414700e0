/*
 * The CPU slice netpolld asks of the kernel's EEVDF scheduler.
 *
 * Since Linux 6.12 a task of a fair policy (SCHED_OTHER, SCHED_BATCH,
 * SCHED_IDLE) may request its own slice through sched_setattr's
 * sched_runtime (0.1 ms .. 100 ms).  A task that wakes with a shorter slice
 * than the running one and an earlier deadline preempts it at once
 * (PREEMPT_SHORT); with equal slices it waits until the running task's
 * slice is used up, which a busy loop only notices at the next tick.  So a
 * long slice for the daemon lets a client it has just woken, which the
 * kernel tends to place on the daemon's own CPU (AF_UNIX wakes the reader
 * synchronously), run at once instead of waiting behind a daemon working
 * through another client's storm.
 */
#pragma once

#include <stdint.h>

typedef struct CpuSlice {
        int64_t requested_ns; /* what was asked, 0: the kernel's default */
        int64_t kernel_ns;    /* what the kernel reports now, 0: it has no slices (before 6.12) */
        int policy;           /* the thread's policy (SCHED_*) */
} CpuSlice;

/* Asks for a slice of ns for the calling thread, or the kernel's default
 * for 0, keeping its policy, nice value and reset-on-fork flag.  Threads
 * of a real-time or deadline policy are left alone.  Fills *ret (when not
 * NULL) with what the kernel reports afterwards.  Returns 1 applied, 0 not
 * applicable (a non-fair policy, or a kernel without custom slices), or
 * -errno. */
int cpuslice_set(int64_t ns, CpuSlice *ret);
