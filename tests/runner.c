/*
 * Runs every suite in Check's fork mode and prints Check's summary.  Exit
 * status 0 only when every test passed.  CK_RUN_SUITE / CK_RUN_CASE select
 * a subset, as Check documents.
 */
#include <stdlib.h>

#include "helpers.h"

int main(void)
{
        Suite *(*const suites[])(void) = {
                suite_fdcheck, suite_timers,   suite_pollcache, suite_pollops,
                suite_codec,   suite_config,   suite_cpuslice,  suite_api,
                suite_daemon,  suite_pollctl,  suite_ops,       suite_fuzzcorpus,
                suite_filecount, suite_resume, suite_fakesm,
                suite_loop,    suite_poller,
        };
        SRunner *sr = srunner_create(NULL);

        for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
                srunner_add_suite(sr, suites[i]());
        /* Fork mode (each test in its own process) unless CK_FORK=no asks
         * otherwise, e.g. to debug one test under gdb. */
        if (!getenv("CK_FORK"))
                srunner_set_fork_status(sr, CK_FORK);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
