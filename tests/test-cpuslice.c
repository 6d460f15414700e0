/*
 * cpuslice: the daemon's request for its own CPU slice.  Each test runs in
 * its own forked process (Check's fork mode), so changing the scheduling
 * attributes of the calling thread stays inside the test.  On a kernel
 * without per-task slices (before 6.12) the request must be reported as
 * ignored, and nothing else may change.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/resource.h>

#include "cpuslice.h"
#include "helpers.h"

static bool kernel_has_slices(void)
{
        int64_t ns = test_sched_default_slice();

        ck_assert_msg(ns >= 0, "default slice: %s", strerror((int)-ns));
        return ns > 0;
}

START_TEST(test_cpuslice_sets_slice_keeping_policy_nice_and_reset_on_fork)
{
        struct sched_param none = { .sched_priority = 0 };
        CpuSlice got;
        TestSched t;

        ck_assert_int_eq(sched_setscheduler(0, SCHED_BATCH | SCHED_RESET_ON_FORK, &none), 0);
        ck_assert_int_eq(setpriority(PRIO_PROCESS, 0, 5), 0);
        int r = cpuslice_set(7000000, &got);
        ck_assert_int_eq(test_sched_get(0, &t), 0);
        ck_assert_int_eq(t.policy, SCHED_BATCH);
        ck_assert_int_eq(t.nice, 5);
        ck_assert_int_eq(t.reset_on_fork, 1);
        if (!kernel_has_slices()) {
                ck_assert_int_eq(r, CPUSLICE_NO_KERNEL);
                return;
        }
        ck_assert_int_eq(r, CPUSLICE_APPLIED);
        ck_assert_int_eq(got.kernel_ns, 7000000);
        ck_assert_int_eq(t.slice_ns, 7000000);

        /* 0: back to the kernel's default. */
        ck_assert_int_eq(cpuslice_set(0, &got), CPUSLICE_APPLIED);
        ck_assert_int_eq(got.kernel_ns, test_sched_default_slice());
        ck_assert_int_eq(test_sched_get(0, &t), 0);
        ck_assert_int_eq(t.slice_ns, got.kernel_ns);
        ck_assert_int_eq(t.policy, SCHED_BATCH);
        ck_assert_int_eq(t.nice, 5);
}
END_TEST

/* Under policy (at priority prio) the request is reported as not
 * applicable, and the policy and slice stay as they were.  Setting a
 * real-time policy needs CAP_SYS_NICE: without it the test checks the
 * refusal instead. */
static void assert_left_alone(int policy, int prio)
{
        struct sched_param param = { .sched_priority = prio };
        CpuSlice got;
        TestSched before, after;

        if (sched_setscheduler(0, policy, &param) < 0) {
                ck_assert_int_eq(errno, EPERM);
                ck_assert_int_ne(policy, SCHED_IDLE);
                return;
        }
        ck_assert_int_eq(test_sched_get(0, &before), 0);
        ck_assert_int_eq(cpuslice_set(7000000, &got), CPUSLICE_POLICY);
        ck_assert_int_eq(got.policy, policy);
        ck_assert_int_eq(test_sched_get(0, &after), 0);
        ck_assert_int_eq(after.policy, policy);
        ck_assert_int_eq(after.slice_ns, before.slice_ns);
}

/* SCHED_IDLE takes no slice: the kernel ignores sched_runtime there, so the
 * request must not be reported as applied. */
START_TEST(test_cpuslice_leaves_sched_idle_alone)
{
        assert_left_alone(SCHED_IDLE, 0);
}
END_TEST

START_TEST(test_cpuslice_leaves_realtime_alone)
{
        assert_left_alone(SCHED_FIFO, 1);
}
END_TEST

START_TEST(test_cpuslice_refuses_negative)
{
        ck_assert_int_eq(cpuslice_set(-1, NULL), -EINVAL);
}
END_TEST

Suite *suite_cpuslice(void)
{
        Suite *s = suite_create("cpuslice");
        TCase *tc = test_tcase_default_timeout(s, "cpuslice");

        tcase_add_test(tc, test_cpuslice_sets_slice_keeping_policy_nice_and_reset_on_fork);
        tcase_add_test(tc, test_cpuslice_leaves_sched_idle_alone);
        tcase_add_test(tc, test_cpuslice_leaves_realtime_alone);
        tcase_add_test(tc, test_cpuslice_refuses_negative);
        return s;
}
