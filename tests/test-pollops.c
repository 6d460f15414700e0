/* Placeholder: this suite is being written. */
#include "helpers.h"

Suite *suite_pollops(void)
{
        return suite_create("pollops");
}
