/*
 * Isolation: OP_LIST_DESCS must not be a CPU amplifier.
 *
 * Four connections each register up to 4096 descriptors (both ends of
 * socketpairs, so this process and the daemon each hold one fd per
 * descriptor; scaled down to fit RLIMIT_NOFILE, ours and the daemon's; the
 * daemon runs with max_descriptors_per_uid = 100%, as every one of them is
 * root's).  A root client may list every one of them with one request, and
 * building that list (an fstat and getsockopt per entry) once took 7.7 ms
 * in one loop turn, during which every other client waited.  The daemon must spread a listing over
 * turns and charge it to the lister, so the listing still comes back whole while the others are
 * served in between.
 *
 *  - correctness, with no churn: one listing of everything returns every
 *    registered descriptor exactly once, with the connection that owns it;
 *    a listing filtered to one connection returns exactly its descriptors;
 *  - correctness under churn: while a connection closes half of its
 *    descriptors, listings of it keep ending (each within a bound) without
 *    an error, never repeat an entry, never name a descriptor it did not
 *    own, and never miss one that stayed open throughout; the listing after
 *    the closes is exactly the other half;
 *  - isolation: alternating windows in which each of the four connections
 *    calls np_list_descs(all) in a loop (attack) or np_ping in a loop
 *    (control), as SCHED_IDLE; a victim pinging every 2 ms must see the same
 *    p99 in both (fault_ab_verdict).
 * At the end every connection goes and the daemon must be back at its
 * baseline fd count.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "probe.h"

#define WATCHDOG_USEC 1000000 /* WATCHDOG=1 gaps must stay under 500 ms */
static FaultNotify *notify; /* the fake service manager */

#define HOLDERS 4
#define PER_CONN_MAX 4096   /* the daemon's default max_descriptors_per_connection */
#define RESERVE_FDS 256     /* for the monitor, the victim, libnetpoll, stdio */
#define DAEMON_RESERVE 1024 /* over the daemon's own reserved_fds (default 512) */
#define VICTIM_INTERVAL_US 2000
#define LOOP_MAX 1000000 /* calls per thread per window, a bound only */
#define CHURN_LISTINGS_MAX 2000
#define CHURN_TIME_MS 20000
#define LISTING_BOUND_NS (5 * NSEC_PER_SEC_F) /* one listing, under churn */

typedef struct Holder {
        np_client *c;
        uint64_t id;
        np_desc *descs; /* as np_open returned them, in order */
        int *fds;       /* our copies */
        size_t n;
} Holder;

static FaultDaemon dm;
static np_client *mon;
static Holder holders[HOLDERS];

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

        return x < y ? -1 : x > y;
}

static bool sorted_has(const uint64_t *v, size_t n, uint64_t x)
{
        return n && bsearch(&x, v, n, sizeof(*v), cmp_u64);
}

/* Registers n descriptors on h (both ends of n / 2 socketpairs). */
static void holder_fill(Holder *h, size_t n)
{
        h->descs = calloc(n, sizeof(*h->descs));
        h->fds = calloc(n, sizeof(*h->fds));
        if (!h->descs || !h->fds)
                fault_die("out of memory");
        fault_must(fault_connect(dm.sock, &h->c), "connect a holder");
        h->id = np_connection_id(h->c);
        for (size_t i = 0; i + 1 < n; i += 2) {
                int sv[2];
                if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
                        fault_die("socketpair after %zu: %s", i, strerror(errno));
                for (int k = 0; k < 2; k++) {
                        h->fds[i + k] = sv[k];
                        int r = np_open(h->c, sv[k], i + k, &h->descs[i + k]);
                        if (r < 0)
                                fault_die("np_open #%zu of connection %llu: %s", i + k,
                                          (unsigned long long)h->id, strerror(-r));
                }
                h->n = i + 2;
        }
}

static void holder_free(Holder *h)
{
        np_disconnect(h->c);
        h->c = NULL;
        for (size_t i = 0; i < h->n; i++)
                close(h->fds[i]);
        free(h->descs);
        free(h->fds);
        h->n = 0;
}

/* ---- correctness ---- */

/* Checks v[0..n) against the sorted set want[0..nwant) of descriptors of
 * owner (0: any connection): no entry twice, none outside the set, none of
 * the set missing.  Returns whether it held; *ret_* get the counts. */
static bool listing_matches(const np_desc_info *v, size_t n, const uint64_t *want, size_t nwant,
                            uint64_t owner, size_t *ret_dup, size_t *ret_foreign,
                            size_t *ret_missing)
{
        uint64_t *got = malloc((n ? n : 1) * sizeof(*got));
        size_t dup = 0, foreign = 0, missing = 0, k = 0;

        if (!got)
                fault_die("out of memory");
        for (size_t i = 0; i < n; i++) {
                if ((owner && v[i].client != owner) || !sorted_has(want, nwant, v[i].desc)) {
                        foreign++;
                        continue;
                }
                got[k++] = v[i].desc;
        }
        qsort(got, k, sizeof(*got), cmp_u64);
        for (size_t i = 1; i < k; i++)
                dup += got[i] == got[i - 1];
        for (size_t i = 0; i < nwant; i++)
                missing += !sorted_has(got, k, want[i]);
        free(got);
        *ret_dup = dup;
        *ret_foreign = foreign;
        *ret_missing = missing;
        return dup == 0 && foreign == 0 && missing == 0;
}

/* The sorted descriptors of holders [from, to), slice [lo, hi) of each. */
static uint64_t *desc_set(int from, int to, size_t lo, size_t hi, size_t *ret_n)
{
        size_t cap = 0, n = 0;

        for (int i = from; i < to; i++)
                cap += holders[i].n;
        uint64_t *v = malloc((cap ? cap : 1) * sizeof(*v));
        if (!v)
                fault_die("out of memory");
        for (int i = from; i < to; i++)
                for (size_t k = lo; k < hi && k < holders[i].n; k++)
                        v[n++] = holders[i].descs[k];
        qsort(v, n, sizeof(*v), cmp_u64);
        *ret_n = n;
        return v;
}

/* Every entry's owner is the holder whose np_open returned it. */
static size_t wrong_owner(const np_desc_info *v, size_t n)
{
        size_t wrong = 0;

        for (int h = 0; h < HOLDERS; h++) {
                size_t ns;
                uint64_t *s = desc_set(h, h + 1, 0, holders[h].n, &ns);
                for (size_t i = 0; i < n; i++)
                        wrong += sorted_has(s, ns, v[i].desc) && v[i].client != holders[h].id;
                free(s);
        }
        return wrong;
}

static void check_complete(void)
{
        np_desc_info *v = NULL;
        size_t n = 0, nwant, dup, foreign, missing;
        uint64_t *want = desc_set(0, HOLDERS, 0, PER_CONN_MAX, &nwant);

        int64_t t0 = test_now();
        int r = np_list_descs(mon, 0, &v, &n);
        int64_t took = test_now() - t0;
        fault_check(r == 0, "listing everything: %s", strerror(-r));
        if (r == 0) {
                bool ok = listing_matches(v, n, want, nwant, 0, &dup, &foreign, &missing);
                size_t wrong = wrong_owner(v, n);
                fault_check(ok && wrong == 0 && n == nwant,
                            "listing everything: %zu entries for %zu descriptors: %zu twice, %zu "
                            "unknown, %zu missing, %zu with the wrong owner",
                            n, nwant, dup, foreign, missing, wrong);
                fault_say("listing everything (no churn): %zu entries for %zu descriptors in %.1f "
                          "ms: %zu twice, %zu unknown, %zu missing, %zu with the wrong owner",
                          n, nwant, (double)took / 1e6, dup, foreign, missing, wrong);
                free(v);
        }
        free(want);

        /* One connection's, asked for by another (admin) connection. */
        Holder *h = &holders[HOLDERS - 1];
        want = desc_set(HOLDERS - 1, HOLDERS, 0, h->n, &nwant);
        v = NULL;
        n = 0;
        r = np_list_descs(holders[0].c, h->id, &v, &n);
        fault_check(r == 0, "listing connection %llu: %s", (unsigned long long)h->id, strerror(-r));
        if (r == 0) {
                bool ok = listing_matches(v, n, want, nwant, h->id, &dup, &foreign, &missing);
                fault_check(ok && n == nwant,
                            "listing connection %llu: %zu entries for %zu descriptors: %zu twice, "
                            "%zu not its own, %zu missing",
                            (unsigned long long)h->id, n, nwant, dup, foreign, missing);
                fault_say("listing one connection (no churn): %zu entries for %zu descriptors: "
                          "%zu twice, %zu not its own, %zu missing",
                          n, nwant, dup, foreign, missing);
                free(v);
        }
        free(want);
}

typedef struct Closer {
        Holder *h;
        size_t upto;
        atomic_int done;
        int errors, first_error;
        int64_t took;
} Closer;

static void *closer_main(void *arg)
{
        Closer *cl = arg;
        int64_t t0 = test_now();

        for (size_t i = 0; i < cl->upto; i++) {
                int r = np_unblock(cl->h->c, cl->h->descs[i]);
                if (r == 0)
                        r = np_close(cl->h->c, cl->h->descs[i]);
                if (r < 0 && cl->errors++ == 0)
                        cl->first_error = r;
        }
        cl->took = test_now() - t0;
        atomic_store(&cl->done, 1);
        return NULL;
}

/* Lists holders[0] (from holders[1]) in a loop while it closes the first
 * half of its descriptors. */
static void check_churn(void)
{
        Holder *h = &holders[0];
        np_client *lister = holders[1].c;
        size_t half = h->n / 2, nall, nstable;
        uint64_t *all = desc_set(0, 1, 0, h->n, &nall);
        uint64_t *stable = desc_set(0, 1, half, h->n, &nstable);
        Closer cl = { .h = h, .upto = half };
        pthread_t t;
        int listings = 0, failed = 0, first_error = 0, partial = 0, bad = 0;
        int64_t worst = 0, give_up = test_now() + CHURN_TIME_MS * NSEC_PER_MSEC_F;
        size_t dup_total = 0, foreign_total = 0, missing_total = 0;

        if (pthread_create(&t, NULL, closer_main, &cl) != 0)
                fault_die("pthread_create");
        for (int i = 0; i < CHURN_LISTINGS_MAX && test_now() < give_up; i++) {
                bool closing = !atomic_load(&cl.done);
                np_desc_info *v = NULL;
                size_t n = 0, dup, foreign, missing;
                int64_t t0 = test_now();
                int r = np_list_descs(lister, h->id, &v, &n);
                int64_t took = test_now() - t0;
                worst = took > worst ? took : worst;
                listings++;
                if (r < 0) {
                        if (failed++ == 0)
                                first_error = r;
                } else {
                        /* Nothing outside its own set; the half that stays
                         * open is always there, once. */
                        listing_matches(v, n, all, nall, h->id, &dup, &foreign, &missing);
                        size_t stable_missing = 0;
                        uint64_t *got = malloc((n ? n : 1) * sizeof(*got));
                        if (!got)
                                fault_die("out of memory");
                        for (size_t k = 0; k < n; k++)
                                got[k] = v[k].desc;
                        qsort(got, n, sizeof(*got), cmp_u64);
                        for (size_t k = 0; k < nstable; k++)
                                stable_missing += !sorted_has(got, n, stable[k]);
                        free(got);
                        dup_total += dup;
                        foreign_total += foreign;
                        missing_total += stable_missing;
                        bad += stable_missing > 0;
                        partial += n > nstable && n < h->n;
                        free(v);
                }
                if (!closing)
                        break; /* one whole listing after the closes ended */
        }
        pthread_join(t, NULL);
        fault_say("listing a connection while it closes %zu of its %zu descriptors (%.0f ms): "
                  "%d listings, %d caught mid-close, longest %.1f ms, %d failed, %d incomplete "
                  "(%zu entries twice, %zu not its own, %zu still-open ones missing)",
                  half, h->n, (double)cl.took / 1e6, listings, partial, (double)worst / 1e6, failed,
                  bad, dup_total, foreign_total, missing_total);
        fault_check(cl.errors == 0, "closing half: %d np_unblock/np_close failed (first: %s)",
                    cl.errors, strerror(-cl.first_error));
        fault_check(atomic_load(&cl.done), "the closes did not end within %d ms", CHURN_TIME_MS);
        fault_check(failed == 0, "%d listings under churn failed (first: %s)", failed,
                    strerror(-first_error));
        fault_check(dup_total == 0 && foreign_total == 0,
                    "listings under churn: %zu entries twice, %zu not the connection's", dup_total,
                    foreign_total);
        fault_check(missing_total == 0,
                    "listings under churn left out %zu descriptors that stayed open throughout "
                    "(%d of %d listings incomplete)",
                    missing_total, bad, listings);
        fault_check(worst < LISTING_BOUND_NS, "a listing under churn took %.1f ms",
                    (double)worst / 1e6);

        /* Afterwards: exactly the half that stayed. */
        np_desc_info *v = NULL;
        size_t n = 0, dup, foreign, missing;
        int r = np_list_descs(lister, h->id, &v, &n);
        bool ok = r == 0 &&
                  listing_matches(v, n, stable, nstable, h->id, &dup, &foreign, &missing) &&
                  n == nstable;
        fault_check(ok, "listing after the closes: %s, %zu entries for %zu descriptors",
                    r < 0 ? strerror(-r) : "wrong", n, nstable);
        free(v);
        free(all);
        free(stable);
}

/* ---- the attack and the control ---- */

typedef struct Load {
        int64_t window_ns;
        int64_t cpu_ns[2], wall_ns[2]; /* the daemon's CPU time, [0] controls, [1] attacks */
        atomic_llong lists, list_ns, pings, errors;
        atomic_int first_error;
} Load;

typedef struct Worker {
        Load *load;
        Holder *h;
        bool attack;
        int64_t end;
} Worker;


static void *worker_main(void *arg)
{
        Worker *w = arg;
        Load *l = w->load;

        fault_load_thread();
        for (int i = 0; i < LOOP_MAX && test_now() < w->end; i++) {
                int r;
                if (w->attack) {
                        np_desc_info *v = NULL;
                        size_t n = 0;
                        int64_t t0 = test_now();
                        r = np_list_descs(w->h->c, 0, &v, &n);
                        atomic_fetch_add(&l->list_ns, test_now() - t0);
                        atomic_fetch_add(&l->lists, 1);
                        free(v);
                } else {
                        r = np_ping(w->h->c);
                        atomic_fetch_add(&l->pings, 1);
                }
                if (r < 0) {
                        int zero = 0;
                        atomic_compare_exchange_strong(&l->first_error, &zero, r);
                        atomic_fetch_add(&l->errors, 1);
                        break;
                }
        }
        return NULL;
}

static void window(void *arg, bool attack, int round)
{
        Load *l = arg;
        Worker w[HOLDERS];
        pthread_t t[HOLDERS];
        int64_t start = test_now(), end = start + l->window_ns, cpu = test_cpu_ns(dm.pid);

        (void)round;
        for (int i = 0; i < HOLDERS; i++) {
                w[i] = (Worker){ .load = l, .h = &holders[i], .attack = attack, .end = end };
                if (pthread_create(&t[i], NULL, worker_main, &w[i]) != 0)
                        fault_die("pthread_create");
        }
        for (int i = 0; i < HOLDERS; i++)
                pthread_join(t[i], NULL);
        l->cpu_ns[attack] += test_cpu_ns(dm.pid) - cpu;
        l->wall_ns[attack] += test_now() - start;
}

int main(int argc, char **argv)
{
        struct np_status st;

        fault_init(argc, argv, "listdescs");
        int nofile = fault_nofile();
        /* One uid holds every descriptor here: lift the per-uid quota,
         * this program is about listing them. */
        notify = notify_start();
        fault_daemon_start(&dm, &(FaultDaemonOpts){
                                        .config = "[limits]\nmax_descriptors_per_uid = 100%\n",
                                        .notify_socket = notify_path(notify),
                                        .watchdog_usec = WATCHDOG_USEC });
        fault_must(fault_connect(dm.sock, &mon), "connect the monitor");
        int base = fault_settle(mon, dm.pid, 1, &st);

        /* This process and the daemon each hold one fd per descriptor. */
        size_t per_conn = (size_t)(nofile - RESERVE_FDS) / HOLDERS;
        if (st.fd_limit < (uint64_t)per_conn * HOLDERS + DAEMON_RESERVE)
                per_conn = st.fd_limit > DAEMON_RESERVE
                                   ? (size_t)(st.fd_limit - DAEMON_RESERVE) / HOLDERS
                                   : 0;
        if (per_conn > PER_CONN_MAX)
                per_conn = PER_CONN_MAX;
        if (per_conn > st.max_descriptors)
                per_conn = st.max_descriptors;
        per_conn &= ~(size_t)1;
        if (per_conn < 64)
                fault_die("fd limit %d too low for %d connections of descriptors", nofile, HOLDERS);
        int64_t t0 = test_now();
        for (int i = 0; i < HOLDERS; i++)
                holder_fill(&holders[i], per_conn);
        fault_say("%d connections x %zu descriptors (fd limit %d, the daemon's %llu, its max %u "
                  "per connection) registered in %.1f s",
                  HOLDERS, per_conn, nofile, (unsigned long long)st.fd_limit, st.max_descriptors,
                  (double)(test_now() - t0) / 1e9);

        check_complete();

        FaultVictim *victim = victim_start(dm.sock, VICTIM_INTERVAL_US);
        Load load = { .window_ns = (fault_quick ? 1500 : 3000) * NSEC_PER_MSEC_F };
        FaultAB ab;
        fault_ab_run(&ab, fault_quick ? 3 : 7, window, &load);
        long long lists = atomic_load(&load.lists);
        fault_say("attack: %lld listings of %zu descriptors by %d connections, %.2f ms each on "
                  "average; control: %lld pings",
                  lists, per_conn * HOLDERS, HOLDERS,
                  lists ? (double)atomic_load(&load.list_ns) / (double)lists / 1e6 : 0.0,
                  (long long)atomic_load(&load.pings));
        fault_say("the daemon's CPU time: %.0f%% of the attack windows, %.0f%% of the controls",
                  100.0 * (double)load.cpu_ns[1] / (double)load.wall_ns[1],
                  100.0 * (double)load.cpu_ns[0] / (double)load.wall_ns[0]);
        fault_check(atomic_load(&load.errors) == 0, "%lld calls failed in the windows (first: %s)",
                    (long long)atomic_load(&load.errors),
                    strerror(-atomic_load(&load.first_error)));
        fault_check(lists > 0, "no listing completed in the attack windows");
        fault_ab_verdict(&ab, victim, notify, WATCHDOG_USEC, "list_descs(all) x 4");
        victim_stop(victim);

        check_churn();

        fault_check(np_ping(mon) == 0 && fault_daemon_alive(&dm), "the daemon stopped serving");
        for (int i = 0; i < HOLDERS; i++)
                holder_free(&holders[i]);
        int fds;
        bool back = fault_await_baseline(mon, dm.pid, 1, base, 15000, &st, &fds);
        fault_check(back, "not back at baseline: %d fds (want %d), %llu descriptors", fds, base,
                    (unsigned long long)st.descriptors);
        np_disconnect(mon);
        fault_daemon_stop(&dm);
        notify_stop(notify);
        return fault_finish();
}
