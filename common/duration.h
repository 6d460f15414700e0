/* Durations as operators write them: "250us", "500ms", "5s", "1m", "1h". */
#pragma once

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * Parses a non-negative duration with a unit (ns, us, ms, s, m, h; a bare
 * number means seconds) into nanoseconds.  Returns 0, or -EINVAL for a
 * malformed value and -ERANGE when it does not fit in int64_t.
 */
static inline int parse_duration_ns(const char *s, int64_t *ret)
{
        static const struct {
                const char *unit;
                int64_t mult;
        } units[] = {
                { "ns", 1 },
                { "us", 1000 },
                { "ms", 1000000 },
                { "s", 1000000000 },
                { "", 1000000000 },
                { "m", INT64_C(60000000000) },
                { "h", INT64_C(3600000000000) },
        };
        char *end;
        double v;

        if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
                return -EINVAL;
        errno = 0;
        v = strtod(s, &end);
        if (errno || end == s || v != v)
                return -EINVAL;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
                if (strcmp(end, units[i].unit) != 0)
                        continue;
                double ns = v * (double)units[i].mult;
                if (ns >= 9.2e18)
                        return -ERANGE;
                *ret = (int64_t)(ns + 0.5);
                return 0;
        }
        return -EINVAL;
}
