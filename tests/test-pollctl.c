/* Placeholder: this suite is being written. */
#include "helpers.h"

Suite *suite_pollctl(void)
{
        return suite_create("pollctl");
}
