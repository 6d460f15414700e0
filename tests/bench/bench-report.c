/*
 * bench-report: turns the facts files of one bench run into the table
 * `make bench` prints and into results.json.
 *
 * Facts are tab-separated lines, written by bench.c and the Go program:
 *   row   SCENARIO METRIC UNIT NETPOLLD BASELINE   a figure and its baseline
 *   info  SCENARIO METRIC UNIT VALUE               context, no ratio
 *   go    SCENARIO METRIC VALUE                    Go's figure for that row
 *   base  SCENARIO TEXT                            what the baseline is
 *   note  TEXT                                     printed under the table
 * Numbers may be "nan" (none).  Every ratio is netpolld / baseline, so
 * below 1 is better for times and sizes, above 1 for rates.
 *
 * In results.json each scenario is an object of flat keys: METRIC_UNIT
 * (netpolld), baseline_METRIC_UNIT, METRIC_ratio, go_METRIC_UNIT and
 * go_METRIC_ratio; counts (early, descriptors...) are bare METRIC.
 *
 * Usage: bench-report [-q] -j RESULTS.json FACTS...
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report.h"

static Report rep;

static const struct {
        const char *id, *title;
} known[] = {
        { "wake_latency", "1 wake latency" },
        { "event_throughput", "2 event throughput" },
        { "deadline_churn", "3 deadline churn" },
        { "timer_precision", "4 timer precision" },
        { "timer_storm", "5 timer storm" },
        { "scale", "6 scale" },
        { "memory", "7 memory" },
        { "startup", "8 start-up" },
        { "fdstore", "9 fd store" },
};

static const char *title_of(const char *id)
{
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
                if (strcmp(known[i].id, id) == 0)
                        return known[i].title;
        return id;
}

/* Scenarios in the order of `known`, then any others as they came. */
static void sort_scenarios(void)
{
        size_t k = 0;

        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
                for (size_t j = k; j < rep.n_scenarios; j++)
                        if (strcmp(rep.scenarios[j].id, known[i].id) == 0) {
                                Scenario t = rep.scenarios[k];
                                rep.scenarios[k++] = rep.scenarios[j];
                                rep.scenarios[j] = t;
                                break;
                        }
}

static const char *unit_label(const char *unit)
{
        static const struct {
                const char *unit, *label;
        } labels[] = {
                { "ev_per_s", "ev/s" },   { "calls_per_s", "calls/s" },
                { "ns_per_ev", "ns/ev" }, { "kib", "KiB" },
                { "bytes", "B" },         { "count", "" },
        };
        for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++)
                if (strcmp(labels[i].unit, unit) == 0)
                        return labels[i].label;
        return unit;
}

/* A number in at most about 10 characters, "-" for none; counts whole. */
static const char *num(char *buf, size_t len, double v, const char *unit)
{
        double a = fabs(v);

        if (isnan(v))
                snprintf(buf, len, "-");
        else if (strcmp(unit, "count") == 0)
                snprintf(buf, len, "%.0f", v);
        else if (a >= 1e9)
                snprintf(buf, len, "%.3g", v);
        else if (a >= 1000)
                snprintf(buf, len, "%.0f", v);
        else if (a >= 10)
                snprintf(buf, len, "%.1f", v);
        else
                snprintf(buf, len, "%.2f", v);
        return buf;
}

static double ratio(double a, double b)
{
        return isnan(a) || isnan(b) || b == 0 ? NAN : a / b;
}

static void print_details(const Scenario *s)
{
        int col = 0;

        for (size_t i = 0; i < s->n_rows; i++) {
                const Row *r = &s->rows[i];
                char v[32], item[160];
                if (!r->info)
                        continue;
                snprintf(item, sizeof(item), "%s %s%s%s", r->metric,
                         num(v, sizeof(v), r->np, r->unit), *unit_label(r->unit) ? " " : "",
                         unit_label(r->unit));
                if (!isnan(r->go)) {
                        size_t l = strlen(item);
                        snprintf(item + l, sizeof(item) - l, " (go %s)",
                                 num(v, sizeof(v), r->go, r->unit));
                }
                if (col && col + strlen(item) + 2 > 96) {
                        printf("\n");
                        col = 0;
                }
                col += printf(col ? ", %s" : "    %s", item);
        }
        if (col)
                printf("\n");
}

static void print_table(bool quick)
{
        char a[32], b[32], c[32], d[32], e[32];

        printf("\nnetpolld benchmarks (%s run); ratio = netpolld / baseline, "
               "vs go = netpolld / Go\n",
               quick ? "QUICK" : "full");
        printf("%-26s %-8s %10s %10s %7s %10s %7s\n", "scenario / metric", "unit", "netpolld",
               "baseline", "ratio", "go", "vs go");
        printf("%.*s\n", 84,
               "------------------------------------------------------------"
               "------------------------------------------------------------");
        for (size_t i = 0; i < rep.n_scenarios; i++) {
                const Scenario *s = &rep.scenarios[i];
                printf("%s\n", title_of(s->id));
                if (s->base)
                        printf("    baseline: %s\n", s->base);
                for (size_t j = 0; j < s->n_rows; j++) {
                        const Row *r = &s->rows[j];
                        if (r->info)
                                continue;
                        printf("  %-24s %-8s %10s %10s %7s %10s %7s\n", r->metric,
                               unit_label(r->unit), num(a, sizeof(a), r->np, r->unit),
                               num(b, sizeof(b), r->base, r->unit),
                               num(c, sizeof(c), ratio(r->np, r->base), "x"),
                               num(d, sizeof(d), r->go, r->unit),
                               num(e, sizeof(e), ratio(r->np, r->go), "x"));
                }
                print_details(s);
        }
}

int main(int argc, char **argv)
{
        const char *json = NULL;
        bool quick = false;
        int c;

        while ((c = getopt(argc, argv, "qj:")) >= 0) {
                switch (c) {
                case 'q':
                        quick = true;
                        break;
                case 'j':
                        json = optarg;
                        break;
                default:
                        fprintf(stderr, "usage: bench-report [-q] -j RESULTS.json FACTS...\n");
                        return 2;
                }
        }
        for (int i = optind; i < argc; i++)
                if (report_read(&rep, argv[i]) < 0)
                        fprintf(stderr, "bench-report: %s: %s\n", argv[i], strerror(errno));
        sort_scenarios();
        print_table(quick);
        report_targets(&rep, stdout);
        for (size_t i = 0; i < rep.n_notes; i++)
                printf("note: %s\n", rep.notes[i]);
        if (json && report_write_json(&rep, json, quick) < 0) {
                fprintf(stderr, "bench-report: %s: %s\n", json, strerror(errno));
                return 1;
        }
        if (json)
                printf("results: %s\n", json);
        return 0;
}
