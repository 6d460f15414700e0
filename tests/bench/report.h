/*
 * The facts of one bench run, as bench-report reads them (the format is
 * described at the top of bench-report.c), the targets they are judged by,
 * and results.json.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct Row {
        char metric[48], unit[16];
        double np, base, go; /* NAN: none */
        bool info;           /* context only: np holds the value, no ratio */
} Row;

typedef struct Scenario {
        char id[48];
        char *base; /* what the baseline is, or NULL */
        Row *rows;
        size_t n_rows;
} Scenario;

typedef struct Target {
        const char *label;
        double value, limit;
        bool known, met;
} Target;

typedef struct Report {
        Scenario *scenarios;
        size_t n_scenarios;
        char **notes;
        size_t n_notes;
        Target *targets; /* filled by report_targets() */
        size_t n_targets;
} Report;

/* Adds the facts of one file.  Returns 0 or -1 (errno) if it cannot be
 * read; malformed lines are skipped with a warning on stderr. */
int report_read(Report *r, const char *path);

/* Judges the targets of the issue, prints them to f and keeps them for
 * the JSON. */
void report_targets(Report *r, FILE *f);

/* Writes results.json.  Returns 0 or -1 (errno). */
int report_write_json(const Report *r, const char *path, bool quick);
