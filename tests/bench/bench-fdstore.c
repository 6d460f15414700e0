/*
 * Scenario 9, fd store: what keeping state for restarts adds to np_open and
 * np_close (netpolld(8), RESTARTS).  netpolld with --fd-store under a fake
 * service manager that applies systemd 252's fd-store rules
 * (tests/fakesm.c, reading its notify socket on a thread of its own, as
 * PID 1 would) against the same daemon without it; one client each, pipes
 * opened and closed (np_open; np_unblock + np_close) in rounds that
 * alternate between the two, so both see the same moments of the machine.
 * The service manager's own work (PID 1's, in real life) is not counted:
 * only what the client waits for.  The daemon keeps its fds 64 to a store
 * entry (daemon/fdcarrier.h): the manager hears of an entry only when a
 * chunk of 64 slots first needs one, which the figures below count.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "fakesm.h"
#include "netpoll.h"

#define SC "fdstore"

static void stored_start(FakeSMNetpolld *x)
{
        char log[256];

        bench_check(fakesm_netpolld_new(x, "np-bench-fdstore", 16384, true),
                    "fakesm_netpolld_new");
        snprintf(log, sizeof(log), "%s/netpolld-fdstore.log", bench_opt.out);
        int lfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        fakesm_set_output(x->m, -1, lfd);
        char *const argv[] = { (char *)bench_opt.daemon, (char *)"--fd-store=16384",
                               (char *)"--socket", x->sock, (char *)"--log-level",
                               (char *)"warning", NULL };
        int r = fakesm_netpolld_spawn(x, argv, 10000);
        if (lfd >= 0)
                close(lfd);
        bench_check(r, "starting the daemon under fakesm (fakesm_spawn, its READY=1)");
}

/* One round: n pipes opened, then closed, each call timed. */
static void round_of(np_client *c, size_t n, const int (*pipes)[2], Samples *open_s,
                     Samples *close_s)
{
        np_desc d[256];

        for (size_t i = 0; i < n; i++) {
                int64_t t0 = now_ns();
                bench_check(np_open(c, pipes[i][0], i, &d[i]), "np_open");
                samples_add(open_s, now_ns() - t0);
        }
        for (size_t i = 0; i < n; i++) {
                int64_t t0 = now_ns();
                bench_check(np_unblock(c, d[i]), "np_unblock");
                bench_check(np_close(c, d[i]), "np_close");
                samples_add(close_s, now_ns() - t0);
        }
}

int main(int argc, char **argv)
{
        Samples so = { 0 }, sc = { 0 }, po = { 0 }, pc = { 0 };
        int pipes[256][2];
        BenchDaemon plain;
        FakeSMNetpolld st;
        np_client *cp, *cs;

        bench_init(argc, argv, "bench-fdstore");
        size_t rounds = bench_count(200, 20), n = 256;
        for (size_t i = 0; i < n; i++)
                if (pipe2(pipes[i], O_CLOEXEC | O_NONBLOCK) < 0)
                        bench_die("pipe2: %s", strerror(errno));
        bench_daemon_start(&plain, "plain");
        stored_start(&st);
        cp = bench_connect(&plain);
        bench_check(np_connect(st.sock, &cs), "np_connect (fd store)");

        Samples junk_o = { 0 }, junk_c = { 0 };
        round_of(cp, n, pipes, &junk_o, &junk_c); /* warm both */
        round_of(cs, n, pipes, &junk_o, &junk_c);
        for (size_t r = 0; r < rounds; r++) {
                round_of(cp, n, pipes, &po, &pc);
                round_of(cs, n, pipes, &so, &sc);
        }

        FakeSMStats fs;
        fakesm_stats(st.m, &fs);
        bench_baseline(SC, "the same daemon without --fd-store, rounds alternating");
        bench_row(SC, "np_open p50", "us", (double)samples_pct(&so, 50) / 1e3,
                  (double)samples_pct(&po, 50) / 1e3);
        bench_row(SC, "np_open p99", "us", (double)samples_pct(&so, 99) / 1e3,
                  (double)samples_pct(&po, 99) / 1e3);
        bench_row(SC, "np_close p50", "us", (double)samples_pct(&sc, 50) / 1e3,
                  (double)samples_pct(&pc, 50) / 1e3);
        bench_row(SC, "np_close p99", "us", (double)samples_pct(&sc, 99) / 1e3,
                  (double)samples_pct(&pc, 99) / 1e3);
        bench_info(SC, "opens per side", "count", (double)(rounds * n));
        /* The state, the connection's carrier and one per 64 slots. */
        size_t entries = fakesm_store_count(st.m), want = 2 + (n + 63) / 64;
        bench_info(SC, "store entries", "count", (double)entries);
        bench_info(SC, "messages to the manager", "count", (double)(fs.stores + fs.removes));
        if (entries < want)
                bench_die("the service manager's store holds %zu entries, want %zu", entries, want);

        np_disconnect(cp);
        np_disconnect(cs);
        bench_daemon_stop(&plain);
        fakesm_netpolld_free(&st, SIGTERM);
        for (size_t i = 0; i < n; i++) {
                close(pipes[i][0]);
                close(pipes[i][1]);
        }
        samples_free(&so);
        samples_free(&sc);
        samples_free(&po);
        samples_free(&pc);
        samples_free(&junk_o);
        samples_free(&junk_c);
        return bench_finish();
}
