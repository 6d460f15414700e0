/* Placeholder: this suite is being written. */
#include "helpers.h"

Suite *suite_api(void)
{
        return suite_create("api");
}
