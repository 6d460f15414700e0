/*
 * netpolld: flags, configuration, process set-up and lifecycle.
 *
 * Precedence: built-in defaults < config file < command-line flags.  The
 * daemon raises RLIMIT_NOFILE's soft limit to the hard limit (it holds a
 * copy of every registered fd), blocks the signals it reads through a
 * signalfd, tells systemd READY=1 once it serves and STOPPING=1 when it
 * stops, re-reads its configuration on SIGHUP, and on SIGTERM/SIGINT ends every parked wait with NP_ERR_CLOSING,
 * closes every connection, removes its socket file and exits 0.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../common/protocol.h"
#include "config.h"
#include "log.h"
#include "restore.h"
#include "server.h"

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: netpolld [OPTION]...\n"
                "Run Go's runtime network poller as a service: clients register fds over an\n"
                "AF_UNIX socket and get readiness, timeout and closing outcomes back.\n"
                "\n"
                "  -s, --socket PATH       listen on PATH (default %s;\n"
                "                          ignored under socket activation)\n"
                "  -c, --config FILE       read FILE (INI, see netpolld.conf(5))\n"
                "  -l, --log-level LEVEL   err, warning, notice, info (default) or debug\n"
                "      --fd-store[=MAX]    keep connections and descriptors in systemd's fd\n"
                "                          store (FileDescriptorStoreMax=MAX), so that a\n"
                "                          restart or a crash loses none of them\n"
                "      --check-config      validate the configuration, print it, and exit\n"
                "  -h, --help              show this help and exit\n"
                "  -V, --version           show the version and exit\n"
                "\n"
                "Runs in the foreground and logs to stderr.  SIGTERM or SIGINT stop it;\n"
                "SIGHUP reloads the configuration file; SIGUSR2 re-executes the binary in\n"
                "place, keeping every client's connection and descriptors.\n"
                "See netpolld(8).\n",
                CONFIG_DEFAULT_SOCKET);
}

static int parse_max(const char *s, uint32_t *ret)
{
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || end == s || *end || v > UINT32_MAX)
                return -EINVAL;
        *ret = (uint32_t)v;
        return 0;
}

/* The binary's path now, so that an upgrade runs what is installed there
 * then (a package upgrade replaces the file). */
static const char *self_exe(char *buf, size_t len, const char *argv0)
{
        ssize_t n = readlink("/proc/self/exe", buf, len - 1);
        if (n <= 0)
                return argv0;
        buf[n] = '\0';
        char *del = strstr(buf, " (deleted)");
        if (del && del[sizeof(" (deleted)") - 1] == '\0')
                *del = '\0';
        return buf;
}

static void raise_nofile(void)
{
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                        log_warning("cannot raise RLIMIT_NOFILE: %s", strerror(errno));
        }
}

int main(int argc, char **argv)
{
        enum { OPT_CHECK_CONFIG = 0x100, OPT_FD_STORE };
        static const struct option options[] = {
                { "socket", required_argument, NULL, 's' },
                { "config", required_argument, NULL, 'c' },
                { "log-level", required_argument, NULL, 'l' },
                { "check-config", no_argument, NULL, OPT_CHECK_CONFIG },
                { "fd-store", optional_argument, NULL, OPT_FD_STORE },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        const char *socket_path = NULL, *config_path = NULL;
        int log_level = -1, c, r;
        bool check_config = false, fd_store = false;
        uint32_t fd_store_max = 0;
        char err[1024];
        Config cfg;
        Server srv;

        while ((c = getopt_long(argc, argv, "s:c:l:hV", options, NULL)) >= 0) {
                switch (c) {
                case 's':
                        socket_path = optarg;
                        break;
                case 'c':
                        config_path = optarg;
                        break;
                case 'l':
                        log_level = log_level_from_string(optarg);
                        if (log_level < 0) {
                                fprintf(stderr, "netpolld: invalid log level '%s'\n", optarg);
                                usage(stderr);
                                return 2;
                        }
                        break;
                case OPT_CHECK_CONFIG:
                        check_config = true;
                        break;
                case OPT_FD_STORE:
                        fd_store = true;
                        if (optarg && parse_max(optarg, &fd_store_max) < 0) {
                                fprintf(stderr, "netpolld: invalid --fd-store maximum '%s'\n",
                                        optarg);
                                usage(stderr);
                                return 2;
                        }
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                case 'V':
                        printf("netpolld %s (protocol %d)\n", NETPOLL_VERSION, NP_PROTOCOL_VERSION);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "netpolld: unexpected argument '%s'\n", argv[optind]);
                usage(stderr);
                return 2;
        }

        /* systemd 254 and later say the unit's FileDescriptorStoreMax=. */
        const char *fdstore_env = getenv("FDSTORE");
        if (fd_store && !fd_store_max && fdstore_env)
                (void)parse_max(fdstore_env, &fd_store_max);
        char exe[PATH_MAX];
        ConfigSource source = {
                .path = config_path,
                .socket_override = socket_path,
                .log_level_override = log_level,
                .fd_store = fd_store,
                .fd_store_max = fd_store_max,
                .exe = self_exe(exe, sizeof(exe), argv[0]),
                .argv = argv,
        };
        r = server_config_build(&source, &cfg, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "netpolld: %s\n", err[0] ? err : strerror(-r));
                return 1;
        }
        if (check_config) {
                config_print(&cfg, stdout);
                config_done(&cfg);
                return 0;
        }
        log_set_level(cfg.log_level);
        raise_nofile();

        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGUSR2);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = server_init(&srv, &cfg, &source);
        if (r < 0) {
                log_error("cannot start: %s", strerror(-r));
                server_done(&srv);
                config_done(&cfg);
                return 1;
        }
        server_apply_slice(&srv);
        r = server_adopt(&srv);
        if (r < 0) {
                log_error("cannot set up the fd store: %s",
                          r == -ENOTCONN ? "--fd-store needs a service manager's fd store "
                                           "(NOTIFY_SOCKET is not set)"
                                         : strerror(-r));
                server_done(&srv);
                config_done(&cfg);
                return 1;
        }
        r = server_listen(&srv, err, sizeof(err));
        if (r < 0) {
                log_error("cannot listen: %s", err[0] ? err : strerror(-r));
                server_done(&srv);
                config_done(&cfg);
                return 1;
        }
        server_resume(&srv);
        log_info("netpolld %s serving on %s", NETPOLL_VERSION,
                 srv.listen_owned ? cfg.socket_path : "the socket passed by systemd");
        r = server_run(&srv);
        server_done(&srv);
        /* A handover ends nothing: the process goes at once, its copies of
         * every fd closed by the kernel, the fd store keeping them (and
         * nothing is freed one by one, which a leak checker would report). */
        if (srv.handover && !srv.upgrading)
                _exit(r < 0 ? 1 : 0);
        config_done(&cfg);
        return r < 0 ? 1 : 0;
}
