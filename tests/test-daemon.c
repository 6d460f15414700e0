/* Placeholder: this suite is being written. */
#include "helpers.h"

Suite *suite_daemon(void)
{
        return suite_create("daemon");
}
