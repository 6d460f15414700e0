/*
 * The must-fail check of make check-asan and make check-valgrind: proves
 * that a leak in a test that Check runs in a forked child (fork mode, as
 * make check runs every suite) is reported at that child's exit and fails
 * the test.  A nested runner runs a leaking test and a clean one; this
 * program exits 0 only when exactly the leaking one failed.  Run it under
 * LeakSanitizer or valgrind --leak-check=full --error-exitcode=1: built
 * plainly and run bare, it fails, as it should (nothing reports the leak).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *volatile sink;

/* Allocates and loses the blocks: only the last one's address survives
 * (in sink), and that is cleared too. */
static __attribute__((noinline)) void lose_memory(void)
{
        for (int i = 0; i < 8; i++) {
                sink = malloc(4096);
                memset(sink, i, 4096);
        }
        sink = NULL;
}

START_TEST(test_proof_leaky_inner)
{
        lose_memory();
}
END_TEST

START_TEST(test_proof_clean_inner)
{
        void *p = malloc(4096);
        memset(p, 1, 4096);
        free(p);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("sanitizer-proof");
        TCase *tc = tcase_create("inner");

        tcase_add_test(tc, test_proof_leaky_inner);
        tcase_add_test(tc, test_proof_clean_inner);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_set_fork_status(sr, CK_FORK);
        fprintf(stderr, "sanitizer-proof: the next leak report, from a forked test, is expected\n");
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr), run = srunner_ntests_run(sr);
        srunner_free(sr);
        if (run != 2 || failed != 1) {
                fprintf(stderr, "sanitizer-proof: %d of %d forked tests failed, expected 1 "
                        "(the leaking one): leaks in forked tests go unreported\n", failed, run);
                return EXIT_FAILURE;
        }
        fprintf(stderr, "sanitizer-proof: ok, the leak in a forked test failed that test\n");
        return EXIT_SUCCESS;
}
