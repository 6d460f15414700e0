/* Placeholder: this suite is being written. */
#include "helpers.h"

Suite *suite_timers(void)
{
        return suite_create("timers");
}
