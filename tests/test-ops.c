/* Placeholder: this suite is being written. */
#include "helpers.h"

Suite *suite_ops(void)
{
        return suite_create("ops");
}
