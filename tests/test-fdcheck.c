/*
 * Proves that the fd-leak check every test uses can fail: a test that
 * leaks one fd must be reported by the same teardown the other tests use.
 */
#include <unistd.h>

#include "helpers.h"

START_TEST(test_fdcheck_counts_a_leaked_fd)
{
        int fd = dup(STDERR_FILENO);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(fdleak_delta(), 1);
        close(fd);
        ck_assert_int_eq(fdleak_delta(), 0);
}
END_TEST

START_TEST(test_fdcheck_leaky_inner)
{
        /* Leaks on purpose; only ever run by the nested runner below. */
        ck_assert_int_ge(dup(STDERR_FILENO), 0);
}
END_TEST

START_TEST(test_fdcheck_clean_inner)
{
        int fd = dup(STDERR_FILENO);
        ck_assert_int_ge(fd, 0);
        close(fd);
}
END_TEST

/* The must-fail test: a nested runner runs a leaking test and a clean one
 * with the very fixture every suite uses; exactly the leaking one fails. */
START_TEST(test_fdcheck_teardown_fails_on_leak)
{
        Suite *s = suite_create("fdcheck-inner");
        TCase *tc = test_tcase_default_timeout(s, "inner");

        tcase_add_test(tc, test_fdcheck_leaky_inner);
        tcase_add_test(tc, test_fdcheck_clean_inner);
        SRunner *sr = srunner_create(s);
        srunner_set_fork_status(sr, CK_FORK);
        srunner_run_all(sr, CK_SILENT);
        int failed = srunner_ntests_failed(sr), run = srunner_ntests_run(sr);
        srunner_free(sr);
        ck_assert_int_eq(run, 2);
        ck_assert_msg(failed == 1, "the fd-leak teardown failed %d of 2 tests, expected 1", failed);
}
END_TEST

Suite *suite_fdcheck(void)
{
        Suite *s = suite_create("fdcheck");
        TCase *tc = test_tcase_default_timeout(s, "fdcheck");

        tcase_add_test(tc, test_fdcheck_counts_a_leaked_fd);
        tcase_add_test(tc, test_fdcheck_teardown_fails_on_leak);
        return s;
}
