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

/*
 * Copies text[0..len) into dst (dstlen >= 1, NUL-terminated), writing each
 * byte outside printable ASCII as "\\xHH" and stopping before an escape
 * that would not fit whole.  Log lines carry what clients control (a hello
 * name, a command name): a newline would start a line of the client's
 * choosing ("<0>..." is an emergency to journald), ESC and CR would drive
 * the terminal of whoever reads the log.  Returns the length.
 */
static size_t escape_text(char *dst, size_t dstlen, const char *text, size_t len)
{
        size_t n = 0;

        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)text[i];
                if (c >= 0x20 && c < 0x7f) {
                        if (n + 1 >= dstlen)
                                break;
                        dst[n++] = (char)c;
                } else {
                        if (n + 4 >= dstlen)
                                break;
                        snprintf(dst + n, 5, "\\x%02x", c);
                        n += 4;
                }
        }
        dst[n] = '\0';
        return n;
}

void log_msg(int prio, const char *fmt, ...)
{
        char text[1024], buf[1024];
        int saved = errno, n = 0;
        va_list ap;

        if (prio > max_level)
                return;
        if (prefix < 0)
                prefix = !isatty(STDERR_FILENO);
        if (prefix)
                n = snprintf(buf, sizeof(buf), "<%d>", prio);
        va_start(ap, fmt);
        int m = vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        /* Whatever went into the line (a client's name, a path), it stays
         * one line of printable text: no newline starts another with a
         * priority of someone else's choosing. */
        if (m > 0)
                n += (int)escape_text(buf + n, sizeof(buf) - (size_t)n - 1, text,
                                      (size_t)m < sizeof(text) ? (size_t)m : sizeof(text) - 1);
        buf[n++] = '\n';
        /* One write per line keeps lines whole when several processes log. */
        (void)!write(STDERR_FILENO, buf, (size_t)n);
        errno = saved;
}
