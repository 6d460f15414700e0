/*
 * Reading facts, judging targets, writing results.json; see report.h.
 *
 * A Go figure may arrive before or after the row it belongs to (the Go
 * program runs on its own), and may have no C row at all when a C bench
 * failed: then it gets a row of its own with no netpolld figure, so
 * nothing measured is dropped silently.
 */
#include "report.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void *grow(void *p, size_t n, size_t size)
{
        /* Doubling at powers of two: n is the count before the append. */
        if (n && (n & (n - 1)))
                return p;
        void *q = realloc(p, (n ? 2 * n : 8) * size);
        if (!q) {
                fprintf(stderr, "bench-report: out of memory\n");
                exit(1);
        }
        return q;
}

static Scenario *scenario(Report *r, const char *id)
{
        for (size_t i = 0; i < r->n_scenarios; i++)
                if (strcmp(r->scenarios[i].id, id) == 0)
                        return &r->scenarios[i];
        r->scenarios = grow(r->scenarios, r->n_scenarios, sizeof(*r->scenarios));
        Scenario *s = &r->scenarios[r->n_scenarios++];
        *s = (Scenario){ 0 };
        snprintf(s->id, sizeof(s->id), "%s", id);
        return s;
}

static Row *row(Scenario *s, const char *metric)
{
        for (size_t i = 0; i < s->n_rows; i++)
                if (strcmp(s->rows[i].metric, metric) == 0)
                        return &s->rows[i];
        s->rows = grow(s->rows, s->n_rows, sizeof(*s->rows));
        Row *w = &s->rows[s->n_rows++];
        *w = (Row){ .np = NAN, .base = NAN, .go = NAN };
        snprintf(w->metric, sizeof(w->metric), "%s", metric);
        return w;
}

/* Splits line at tabs into at most max fields; returns how many. */
static size_t split(char *line, char **f, size_t max)
{
        size_t n = 0;

        line[strcspn(line, "\n")] = '\0';
        while (n < max) {
                f[n++] = line;
                char *t = strchr(line, '\t');
                if (!t)
                        break;
                *t = '\0';
                line = t + 1;
        }
        return n;
}

static void parse(Report *r, char *line, const char *path, int lineno)
{
        char *f[6];
        size_t n = split(line, f, 6);

        if (strcmp(f[0], "row") == 0 && n == 6) {
                Row *w = row(scenario(r, f[1]), f[2]);
                snprintf(w->unit, sizeof(w->unit), "%s", f[3]);
                w->np = strtod(f[4], NULL);
                w->base = strtod(f[5], NULL);
        } else if (strcmp(f[0], "info") == 0 && n == 5) {
                Row *w = row(scenario(r, f[1]), f[2]);
                snprintf(w->unit, sizeof(w->unit), "%s", f[3]);
                w->np = strtod(f[4], NULL);
                w->info = true;
        } else if (strcmp(f[0], "go") == 0 && n == 4) {
                row(scenario(r, f[1]), f[2])->go = strtod(f[3], NULL);
        } else if (strcmp(f[0], "base") == 0 && n == 3) {
                Scenario *s = scenario(r, f[1]);
                free(s->base);
                s->base = strdup(f[2]);
        } else if (strcmp(f[0], "note") == 0 && n == 2) {
                r->notes = grow(r->notes, r->n_notes, sizeof(*r->notes));
                r->notes[r->n_notes++] = strdup(f[1]);
        } else if (f[0][0])
                fprintf(stderr, "bench-report: %s:%d: malformed line skipped\n", path, lineno);
}

int report_read(Report *r, const char *path)
{
        char line[1024];
        int lineno = 0;
        FILE *f = fopen(path, "re");

        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                parse(r, line, path, ++lineno);
        fclose(f);
        return 0;
}

/* ---- targets ---- */

typedef enum { RATIO_LE, RATIO_GE, VALUE_LE, DIFF_LE } TargetKind;

static const struct {
        const char *label, *scenario, *metric;
        TargetKind kind;
        double limit;
} target_defs[] = {
        { "wake latency p50 <= 1.5x (epoll + IPC one-way)", "wake_latency", "p50", RATIO_LE, 1.5 },
        { "wake latency p99 <= 2x (epoll + IPC one-way)", "wake_latency", "p99", RATIO_LE, 2 },
        { "wake latency pinned p50 <= 1.3x (same, pinned)", "wake_latency", "pinned_p50", RATIO_LE,
          1.3 },
        { "idle: daemon CPU, 100 clients parked <= 1 ms/s", "wake_latency", "rest_daemon_cpu",
          VALUE_LE, 1 },
        { "event throughput >= 0.5x in-process epoll", "event_throughput", "rate", RATIO_GE, 0.5 },
        { "deadline churn >= 10x IPC round-trip rate", "deadline_churn", "rate", RATIO_GE, 10 },
        { "timer precision: early timeouts == 0", "timer_precision", "early", VALUE_LE, 0 },
        { "timer storm: early timeouts == 0", "timer_storm", "early", VALUE_LE, 0 },
        { "timer precision: p99 - IPC one-way p99 <= 200 us", "timer_precision", "p99", DIFF_LE,
          200 },
        { "scale: cost at 10,000 <= 1.3x cost at 100", "scale", "growth", VALUE_LE, 1.3 },
        { "memory <= 128 B per registered descriptor", "memory", "per_descriptor", VALUE_LE, 128 },
};

static const Row *find(const Report *r, const char *sc, const char *metric)
{
        for (size_t i = 0; i < r->n_scenarios; i++) {
                const Scenario *s = &r->scenarios[i];
                if (strcmp(s->id, sc) != 0)
                        continue;
                for (size_t j = 0; j < s->n_rows; j++)
                        if (strcmp(s->rows[j].metric, metric) == 0)
                                return &s->rows[j];
        }
        return NULL;
}

void report_targets(Report *r, FILE *f)
{
        size_t n = sizeof(target_defs) / sizeof(target_defs[0]);

        r->targets = calloc(n, sizeof(*r->targets));
        if (!r->targets)
                return;
        r->n_targets = n;
        fprintf(f, "\ntargets\n");
        for (size_t i = 0; i < n; i++) {
                const Row *w = find(r, target_defs[i].scenario, target_defs[i].metric);
                Target *t = &r->targets[i];
                double v = NAN;
                if (w) {
                        switch (target_defs[i].kind) {
                        case RATIO_LE:
                        case RATIO_GE:
                                v = w->base != 0 ? w->np / w->base : NAN;
                                break;
                        case VALUE_LE:
                                v = w->np;
                                break;
                        case DIFF_LE:
                                v = w->np - w->base;
                                break;
                        }
                }
                *t = (Target){ .label = target_defs[i].label,
                               .value = v,
                               .limit = target_defs[i].limit,
                               .known = !isnan(v) };
                t->met = t->known &&
                         (target_defs[i].kind == RATIO_GE ? v >= t->limit : v <= t->limit);
                fprintf(f, fabs(v) >= 1000 ? "  %-52s %10.0f  %s\n" : "  %-52s %10.3g  %s\n",
                        t->label, v,
                        !t->known ? "not measured"
                        : t->met  ? "met"
                                  : "NOT met");
        }
}

/* ---- JSON ---- */

static void json_string(FILE *f, const char *s)
{
        fputc('"', f);
        for (; *s; s++) {
                unsigned char ch = (unsigned char)*s;
                if (ch == '"' || ch == '\\')
                        fprintf(f, "\\%c", ch);
                else if (ch < 0x20)
                        fprintf(f, "\\u%04x", ch);
                else
                        fputc(ch, f);
        }
        fputc('"', f);
}

static void json_number(FILE *f, double v)
{
        if (isnan(v) || isinf(v))
                fputs("null", f);
        else
                fprintf(f, "%.6g", v);
}

/* One "key": value member, with the leading comma after the first. */
static void member(FILE *f, bool *first, const char *prefix, const Row *w, const char *suffix,
                   double v)
{
        bool bare = strcmp(w->unit, "count") == 0 || strcmp(w->unit, "x") == 0 ||
                    strcmp(suffix, "_ratio") == 0;

        fprintf(f, "%s\n      \"%s%s%s%s%s\": ", *first ? "" : ",", prefix, w->metric,
                bare ? "" : "_", bare ? "" : w->unit, suffix);
        json_number(f, v);
        *first = false;
}

static void json_scenario(FILE *f, const Scenario *s)
{
        bool first = true;

        fprintf(f, "    ");
        json_string(f, s->id);
        fprintf(f, ": {");
        if (s->base) {
                fprintf(f, "\n      \"baseline\": ");
                json_string(f, s->base);
                first = false;
        }
        for (size_t i = 0; i < s->n_rows; i++) {
                const Row *w = &s->rows[i];
                double r = w->base != 0 ? w->np / w->base : NAN;
                double g = w->go != 0 ? w->np / w->go : NAN;
                member(f, &first, "", w, "", w->np);
                if (!w->info) {
                        member(f, &first, "baseline_", w, "", w->base);
                        member(f, &first, "", w, "_ratio", r);
                }
                if (!isnan(w->go)) {
                        member(f, &first, "go_", w, "", w->go);
                        if (!w->info)
                                member(f, &first, "go_", w, "_ratio", g);
                }
        }
        fprintf(f, "\n    }");
}

int report_write_json(const Report *r, const char *path, bool quick)
{
        FILE *f = fopen(path, "we");

        if (!f)
                return -1;
        fprintf(f, "{\n  \"mode\": \"%s\",\n  \"scenarios\": {\n", quick ? "quick" : "full");
        for (size_t i = 0; i < r->n_scenarios; i++) {
                json_scenario(f, &r->scenarios[i]);
                fprintf(f, "%s\n", i + 1 < r->n_scenarios ? "," : "");
        }
        fprintf(f, "  },\n  \"targets\": [");
        for (size_t i = 0; i < r->n_targets; i++) {
                const Target *t = &r->targets[i];
                fprintf(f, "%s\n    {\"target\": ", i ? "," : "");
                json_string(f, t->label);
                fprintf(f, ", \"value\": ");
                json_number(f, t->value);
                fprintf(f, ", \"limit\": ");
                json_number(f, t->limit);
                fprintf(f, ", \"met\": %s}", !t->known ? "null" : t->met ? "true" : "false");
        }
        fprintf(f, "\n  ],\n  \"notes\": [");
        for (size_t i = 0; i < r->n_notes; i++) {
                fprintf(f, "%s\n    ", i ? "," : "");
                json_string(f, r->notes[i]);
        }
        fprintf(f, "\n  ]\n}\n");
        if (ferror(f)) {
                fclose(f);
                errno = EIO;
                return -1;
        }
        return fclose(f);
}
