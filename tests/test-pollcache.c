/* Placeholder: this suite is being written. */
#include "helpers.h"

Suite *suite_pollcache(void)
{
        return suite_create("pollcache");
}
