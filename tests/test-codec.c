/* Placeholder: this suite is being written. */
#include "helpers.h"

Suite *suite_codec(void)
{
        return suite_create("codec");
}
