/* pollctl's output helpers; see pollctl-format.h. */
#include "pollctl-format.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/clock.h"
#include "netpoll.h"

/* ------------------------------------------------------------------ */
/* Formatting                                                           */

void fmt_duration(char *buf, size_t len, int64_t ns)
{
        if (ns < 0)
                ns = 0;
        if (ns < NSEC_PER_USEC)
                snprintf(buf, len, "%" PRId64 " ns", ns);
        else if (ns < NSEC_PER_MSEC)
                snprintf(buf, len, "%.1f us", (double)ns / 1e3);
        else if (ns < NSEC_PER_SEC)
                snprintf(buf, len, "%.1f ms", (double)ns / 1e6);
        else if (ns < 60 * NSEC_PER_SEC)
                snprintf(buf, len, "%.1f s", (double)ns / 1e9);
        else {
                int64_t s = ns / NSEC_PER_SEC;
                if (s < 3600)
                        snprintf(buf, len, "%" PRId64 " min %" PRId64 " s", s / 60, s % 60);
                else if (s < 86400)
                        snprintf(buf, len, "%" PRId64 " h %" PRId64 " min", s / 3600,
                                 s % 3600 / 60);
                else
                        snprintf(buf, len, "%" PRId64 " d %" PRId64 " h", s / 86400,
                                 s % 86400 / 3600);
        }
}

void fmt_bytes(char *buf, size_t len, uint64_t n)
{
        static const char *const unit[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
        double v = (double)n;
        int i = -1;

        if (n < 1024) {
                snprintf(buf, len, "%" PRIu64 " B", n);
                return;
        }
        while (v >= 1024 && i < 4) {
                v /= 1024;
                i++;
        }
        snprintf(buf, len, "%.1f %s", v, unit[i]);
}

/* Length of the valid UTF-8 sequence at s, or 0 (also for NUL). */
size_t utf8_len(const unsigned char *s)
{
        uint32_t cp, min;
        size_t n;

        if (s[0] < 0x80)
                return s[0] ? 1 : 0;
        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                n = 2, cp = s[0] & 0x1f, min = 0x80;
        else if ((s[0] & 0xf0) == 0xe0)
                n = 3, cp = s[0] & 0x0f, min = 0x800;
        else if (s[0] >= 0xf0 && s[0] <= 0xf4)
                n = 4, cp = s[0] & 0x07, min = 0x10000;
        else
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (s[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return n;
}

/* Writes s as a JSON string: quotes, backslashes and control characters
 * escaped, invalid UTF-8 replaced by U+FFFD, so the document stays valid. */
void json_string(FILE *f, const char *str)
{
        const unsigned char *s = (const unsigned char *)str;

        fputc('"', f);
        while (*s) {
                size_t n = utf8_len(s);
                if (*s == '"' || *s == '\\')
                        fprintf(f, "\\%c", *s);
                else if (*s == '\n')
                        fputs("\\n", f);
                else if (*s == '\t')
                        fputs("\\t", f);
                else if (*s < 0x20 || *s == 0x7f)
                        fprintf(f, "\\u%04x", *s);
                else if (n == 0)
                        fputs("\\ufffd", f);
                else {
                        fwrite(s, 1, n, f);
                        s += n;
                        continue;
                }
                s++;
        }
        fputc('"', f);
}

/* Copies src for a text table: control characters and invalid UTF-8 become
 * '?', so a hostile command name cannot move the cursor or break columns. */
void text_clean(char *dst, size_t len, const char *src)
{
        const unsigned char *s = (const unsigned char *)src;
        size_t o = 0;

        while (*s && o + 5 < len) {
                size_t n = utf8_len(s);
                if (n == 0 || *s < 0x20 || *s == 0x7f) {
                        dst[o++] = '?';
                        s++;
                        continue;
                }
                memcpy(dst + o, s, n);
                o += n;
                s += n;
        }
        dst[o] = '\0';
}

/* Display width of clean UTF-8 text: one column per code point. */
size_t text_width(const char *s)
{
        size_t w = 0;

        for (; *s; s++)
                w += ((unsigned char)*s & 0xc0) != 0x80;
        return w;
}

const char *dir_name(int st)
{
        switch (st) {
        case NP_DIR_IDLE:
                return "idle";
        case NP_DIR_READY:
                return "ready";
        case NP_DIR_WAITING:
                return "waiting";
        case NP_DIR_CLOSING:
                return "closing";
        }
        return "unknown";
}

const char *deadline_state(int64_t ns)
{
        return ns == 0 ? "none" : ns < 0 ? "expired" : "pending";
}

void fmt_deadline(char *buf, size_t len, int64_t ns)
{
        if (ns > 0)
                fmt_duration(buf, len, ns);
        else
                snprintf(buf, len, "%s", deadline_state(ns));
}

const char *mode_name(int mode)
{
        return mode == NP_READ ? "read" : mode == NP_WRITE ? "write" : NULL;
}

_Noreturn void oom(void)
{
        fputs("pollctl: out of memory\n", stderr);
        exit(1);
}

/* ------------------------------------------------------------------ */
/* Tables: cells are collected row by row, then printed with every column
 * as wide as its widest cell, two spaces apart, the last one unpadded.   */


__attribute__((format(printf, 2, 3))) void table_add(Table *t, const char *fmt, ...)
{
        va_list ap;
        char *s;

        if (t->n == t->cap) {
                t->cap = t->cap ? 2 * t->cap : 64;
                t->cell = realloc(t->cell, t->cap * sizeof(*t->cell));
                if (!t->cell)
                        oom();
        }
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                oom();
        va_end(ap);
        t->cell[t->n++] = s;
}

void table_print(Table *t, FILE *f)
{
        size_t w[16] = { 0 };

        for (size_t c = 0; c < t->ncols; c++)
                w[c] = strlen(t->head[c]);
        for (size_t i = 0; i < t->n; i++) {
                size_t tw = text_width(t->cell[i]);
                if (tw > w[i % t->ncols])
                        w[i % t->ncols] = tw;
        }
        for (size_t i = 0; i < t->n + t->ncols; i++) {
                size_t c = i % t->ncols;
                const char *s = i < t->ncols ? t->head[c] : t->cell[i - t->ncols];
                size_t pad = w[c] - text_width(s);
                bool last = c == t->ncols - 1;
                if (t->align[c] == 'r')
                        fprintf(f, "%*s%s", (int)pad, "", s);
                else
                        fprintf(f, "%s%*s", s, last ? 0 : (int)pad, "");
                fputs(last ? "\n" : "  ", f);
        }
        for (size_t i = 0; i < t->n; i++)
                free(t->cell[i]);
        free(t->cell);
}

