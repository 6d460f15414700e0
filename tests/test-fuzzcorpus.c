/* Placeholder: this suite is being written. */
#include "helpers.h"

Suite *suite_fuzzcorpus(void)
{
        return suite_create("fuzzcorpus");
}
