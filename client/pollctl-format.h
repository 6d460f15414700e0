/*
 * pollctl's output helpers: durations and sizes with units, deadline and
 * state names, untrusted strings made safe for a terminal or for JSON, and
 * aligned text tables.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct Table {
        size_t ncols, n, cap;
        const char *const *head;
        const char *align; /* 'l' or 'r' for each column */
        char **cell;
} Table;

void fmt_duration(char *buf, size_t len, int64_t ns);
void fmt_bytes(char *buf, size_t len, uint64_t n);
size_t utf8_len(const unsigned char *s);
void json_string(FILE *f, const char *str);
void text_clean(char *dst, size_t len, const char *src);
size_t text_width(const char *s);
const char *dir_name(int st);
const char *deadline_state(int64_t ns);
void fmt_deadline(char *buf, size_t len, int64_t ns);
const char *mode_name(int mode);
_Noreturn void oom(void);
__attribute__((format(printf, 2, 3))) void table_add(Table *t, const char *fmt, ...);
void table_print(Table *t, FILE *f);
