/* stderr logger with sd-daemon priority prefixes; see log.h. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int max_level = LOG_INFO;
static int prefix = -1; /* -1: not decided yet */

static const char *const names[] = {
        [LOG_ERR] = "err", [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
        [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

void log_set_level(int level)
{
        max_level = level;
}

int log_get_level(void)
{
        return max_level;
}

int log_level_from_string(const char *s)
{
        for (int i = LOG_ERR; i <= LOG_DEBUG; i++)
                if (strcmp(s, names[i]) == 0)
                        return i;
        if (strcmp(s, "error") == 0)
                return LOG_ERR;
        if (s[0] >= '3' && s[0] <= '7' && s[1] == '\0')
                return s[0] - '0';
        return -EINVAL;
}

const char *log_level_to_string(int level)
{
        return level >= LOG_ERR && level <= LOG_DEBUG ? names[level] : "?";
}

void log_msg(int prio, const char *fmt, ...)
{
        char buf[1024];
        int saved = errno, n = 0;
        va_list ap;

        if (prio > max_level)
                return;
        if (prefix < 0)
                prefix = !isatty(STDERR_FILENO);
        if (prefix)
                n = snprintf(buf, sizeof(buf), "<%d>", prio);
        va_start(ap, fmt);
        int m = vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
        va_end(ap);
        n += m < 0 ? 0 : (m >= (int)sizeof(buf) - n - 1 ? (int)sizeof(buf) - n - 2 : m);
        buf[n++] = '\n';
        /* One write per line keeps lines whole when several processes log. */
        (void)!write(STDERR_FILENO, buf, n);
        errno = saved;
}
