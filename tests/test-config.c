/* Placeholder: this suite is being written. */
#include "helpers.h"

Suite *suite_config(void)
{
        return suite_create("config");
}
