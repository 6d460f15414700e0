/*
 * config: defaults, every key, and every kind of error (file:line and key
 * in the message, the Config left as it was), through temporary files.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "helpers.h"

/* Writes text to a fresh temporary file; its path goes to path (64 bytes). */
static void write_tmp(char *path, const char *text)
{
        snprintf(path, 64, "/tmp/netpolld-conf-XXXXXX");
        test_write_temp(path, text);
}

/* Prints c through config_print into a malloc'd string. */
static char *print_config(const Config *c)
{
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);

        ck_assert_ptr_nonnull(f);
        config_print(c, f);
        ck_assert_int_eq(fclose(f), 0);
        return text;
}

/* Loads text over a default Config; returns config_load's result, the
 * message in err (256 bytes) and the config in *c (caller config_done). */
static int load_text(Config *c, const char *text, char *path, char *err)
{
        ck_assert_int_eq(config_init(c), 0);
        write_tmp(path, text);
        int r = config_load(c, path, err, 256);
        unlink(path);
        return r;
}

static void assert_defaults(const Config *c)
{
        ck_assert_str_eq(c->socket_path, CONFIG_DEFAULT_SOCKET);
        ck_assert_str_eq(c->socket_path, "/run/netpolld/netpolld.sock");
        ck_assert_uint_eq(c->max_connections, 1024);
        ck_assert_uint_eq(c->max_descriptors, 4096);
        ck_assert_uint_eq(c->max_output_bytes, 1024 * 1024);
        ck_assert_int_eq(c->log_level, 6 /* LOG_INFO */);
        ck_assert_uint_eq(c->socket_mode, 0660);
        ck_assert_int_eq(c->socket_group, -1);
        ck_assert_uint_eq(c->max_connections_per_uid, 256);
        ck_assert_int_eq(c->handshake_timeout_ns, 5000000000LL);
        ck_assert_int_eq(c->scheduler_slice_ns, 20000000LL);
        ck_assert_int_eq(c->idle_spin_ns, 50000LL);
        ck_assert_uint_eq(c->allow_users.n, 0);
        ck_assert_uint_eq(c->allow_groups.n, 0);
        ck_assert_uint_eq(c->admin_users.n, 0);
        ck_assert_uint_eq(c->admin_groups.n, 0);
        ck_assert_uint_eq(c->max_descriptors_per_uid.n, 25);
        ck_assert(c->max_descriptors_per_uid.percent);
        ck_assert_uint_eq(c->reserved_fds, 512);
        ck_assert_uint_eq(c->max_output_bytes_per_uid, 16u << 20);
        ck_assert_uint_eq(c->max_output_bytes_total, 64u << 20);
}

START_TEST(test_config_defaults_without_file)
{
        Config c;

        ck_assert_int_eq(config_init(&c), 0);
        assert_defaults(&c);
        char *text = print_config(&c);
        ck_assert_ptr_nonnull(strstr(text, "[daemon]\n"));
        ck_assert_ptr_nonnull(strstr(text, "socket_path = /run/netpolld/netpolld.sock\n"));
        ck_assert_ptr_nonnull(strstr(text, "[limits]\n"));
        ck_assert_ptr_nonnull(strstr(text, "max_connections = 1024\n"));
        ck_assert_ptr_nonnull(strstr(text, "max_descriptors_per_connection = 4096\n"));
        ck_assert_ptr_nonnull(strstr(text, "max_output_bytes = 1048576\n"));
        ck_assert_ptr_nonnull(strstr(text, "[log]\n"));
        ck_assert_ptr_nonnull(strstr(text, "level = info\n"));
        ck_assert_ptr_nonnull(strstr(text, "socket_mode = 0660\n"));
        ck_assert_ptr_null(strstr(text, "socket_group"));
        ck_assert_ptr_nonnull(strstr(text, "max_connections_per_uid = 256\n"));
        ck_assert_ptr_nonnull(strstr(text, "handshake_timeout = 5s\n"));
        ck_assert_ptr_nonnull(strstr(text, "scheduler_slice = 20ms\n"));
        ck_assert_ptr_nonnull(strstr(text, "idle_spin = 50us\n"));
        ck_assert_ptr_nonnull(strstr(text, "[access]\n"));
        ck_assert_ptr_nonnull(strstr(text, "allow_users =\n"));
        ck_assert_ptr_nonnull(strstr(text, "admin_groups =\n"));
        free(text);
        config_done(&c);
        ck_assert_ptr_null(c.socket_path);
}
END_TEST

START_TEST(test_config_parses_every_key)
{
        Config c;
        char path[64], err[256];

        int r = load_text(&c,
                          "# a comment\n"
                          "[daemon]\n"
                          "socket_path = /tmp/elsewhere/np.sock\n"
                          "\n"
                          "[limits]\n"
                          "max_connections = 7\n"
                          "max_descriptors_per_connection = 12345\n"
                          "max_output_bytes = 65536\n"
                          "[log]\n"
                          "level = debug\n",
                          path, err);
        ck_assert_msg(r == 0, "config_load: %d (%s)", r, err);
        ck_assert_str_eq(c.socket_path, "/tmp/elsewhere/np.sock");
        ck_assert_uint_eq(c.max_connections, 7);
        ck_assert_uint_eq(c.max_descriptors, 12345);
        ck_assert_uint_eq(c.max_output_bytes, 65536);
        ck_assert_int_eq(c.log_level, 7 /* LOG_DEBUG */);

        char *text = print_config(&c);
        ck_assert_ptr_nonnull(strstr(text, "socket_path = /tmp/elsewhere/np.sock\n"));
        ck_assert_ptr_nonnull(strstr(text, "max_connections = 7\n"));
        ck_assert_ptr_nonnull(strstr(text, "max_descriptors_per_connection = 12345\n"));
        ck_assert_ptr_nonnull(strstr(text, "max_output_bytes = 65536\n"));
        ck_assert_ptr_nonnull(strstr(text, "level = debug\n"));
        free(text);
        config_done(&c);
}
END_TEST

START_TEST(test_config_range_ends_are_accepted)
{
        Config c;
        char path[64], err[256];

        int r = load_text(&c,
                          "[limits]\n"
                          "max_connections = 1000000\n"
                          "max_descriptors_per_connection = 16777215\n"
                          "max_output_bytes = 1073741824\n",
                          path, err);
        ck_assert_msg(r == 0, "config_load: %d (%s)", r, err);
        ck_assert_uint_eq(c.max_connections, 1000000);
        ck_assert_uint_eq(c.max_descriptors, 16777215);
        ck_assert_uint_eq(c.max_output_bytes, 1073741824u);
        config_done(&c);

        r = load_text(&c,
                      "[limits]\n"
                      "max_connections = 1\n"
                      "max_descriptors_per_connection = 1\n",
                      path, err);
        ck_assert_msg(r == 0, "config_load: %d (%s)", r, err);
        ck_assert_uint_eq(c.max_connections, 1);
        ck_assert_uint_eq(c.max_descriptors, 1);
        config_done(&c);
}
END_TEST

START_TEST(test_config_log_levels)
{
        static const struct {
                const char *text;
                int level;
                const char *printed;
        } cases[] = {
                { "err", 3, "err" },         { "error", 3, "err" },
                { "warning", 4, "warning" }, { "notice", 5, "notice" },
                { "info", 6, "info" },       { "debug", 7, "debug" },
                { "4", 4, "warning" },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                Config c;
                char path[64], err[256], text[64], want[64];
                snprintf(text, sizeof(text), "[log]\nlevel = %s\n", cases[i].text);
                int r = load_text(&c, text, path, err);
                ck_assert_msg(r == 0, "level %s: %d (%s)", cases[i].text, r, err);
                ck_assert_int_eq(c.log_level, cases[i].level);
                char *out = print_config(&c);
                snprintf(want, sizeof(want), "level = %s\n", cases[i].printed);
                ck_assert_ptr_nonnull(strstr(out, want));
                free(out);
                config_done(&c);
        }
}
END_TEST

START_TEST(test_config_dot_relative_socket_path_accepted)
{
        Config c;
        char path[64], err[256];

        int r = load_text(&c, "[daemon]\nsocket_path = ./run/np.sock\n", path, err);
        ck_assert_msg(r == 0, "config_load: %d (%s)", r, err);
        ck_assert_str_eq(c.socket_path, "./run/np.sock");
        config_done(&c);
}
END_TEST

START_TEST(test_config_parses_operations_and_access_keys)
{
        Config c;
        char path[64], err[256];

        int r = load_text(&c,
                          "[daemon]\n"
                          "socket_mode = 0600\n"
                          "socket_group = root\n"
                          "[limits]\n"
                          "max_connections_per_uid = 9\n"
                          "handshake_timeout = 250ms\n"
                          "[access]\n"
                          "allow_users = root, 1234\n"
                          "allow_groups = 0\t77 root\n"
                          "admin_users = root\n"
                          "admin_groups =\n",
                          path, err);
        ck_assert_msg(r == 0, "config_load: %d (%s)", r, err);
        ck_assert_uint_eq(c.socket_mode, 0600);
        ck_assert_int_eq(c.socket_group, 0);
        ck_assert_uint_eq(c.max_connections_per_uid, 9);
        ck_assert_int_eq(c.handshake_timeout_ns, 250000000LL);
        ck_assert_uint_eq(c.allow_users.n, 2);
        ck_assert_uint_eq(c.allow_users.ids[0], 0);
        ck_assert_uint_eq(c.allow_users.ids[1], 1234);
        ck_assert_uint_eq(c.allow_groups.n, 3);
        ck_assert_uint_eq(c.allow_groups.ids[0], 0);
        ck_assert_uint_eq(c.allow_groups.ids[1], 77);
        ck_assert_uint_eq(c.allow_groups.ids[2], 0);
        ck_assert_uint_eq(c.admin_users.n, 1);
        ck_assert_uint_eq(c.admin_groups.n, 0);
        ck_assert(idlist_contains(&c.allow_users, 1234));
        ck_assert(!idlist_contains(&c.allow_users, 1235));

        char *text = print_config(&c);
        ck_assert_ptr_nonnull(strstr(text, "socket_mode = 0600\n"));
        ck_assert_ptr_nonnull(strstr(text, "socket_group = 0\n"));
        ck_assert_ptr_nonnull(strstr(text, "max_connections_per_uid = 9\n"));
        ck_assert_ptr_nonnull(strstr(text, "handshake_timeout = 250ms\n"));
        ck_assert_ptr_nonnull(strstr(text, "allow_users = 0, 1234\n"));
        ck_assert_ptr_nonnull(strstr(text, "allow_groups = 0, 77, 0\n"));
        free(text);
        config_done(&c);
}
END_TEST

typedef struct DurationCase {
        const char *text;
        int64_t ns;
} DurationCase;

/* Loads "KEY = text" (key_line names the section and key) for each case
 * and checks the int64_t field at offset. */
static void assert_durations(const char *key_line, size_t offset, const DurationCase *cases,
                             size_t n)
{
        for (size_t i = 0; i < n; i++) {
                Config c;
                char path[64], err[256], text[80];
                snprintf(text, sizeof(text), "%s = %s\n", key_line, cases[i].text);
                int r = load_text(&c, text, path, err);
                ck_assert_msg(r == 0, "%s: %d (%s)", text, r, err);
                int64_t got = *(const int64_t *)((const char *)&c + offset);
                ck_assert_msg(got == cases[i].ns, "%s: %lld ns, want %lld", text, (long long)got,
                              (long long)cases[i].ns);
                config_done(&c);
        }
}

START_TEST(test_config_durations)
{
        static const DurationCase cases[] = {
                { "1ms", 1000000LL },         { "1000us", 1000000LL },
                { "1000000ns", 1000000LL },   { "2s", 2000000000LL },
                { "3", 3000000000LL },        { "1.5s", 1500000000LL },
                { "1m", 60000000000LL },      { "1h", 3600000000000LL },
                { "3600s", 3600000000000LL },
        };

        assert_durations("[limits]\nhandshake_timeout", offsetof(Config, handshake_timeout_ns),
                         cases, sizeof(cases) / sizeof(cases[0]));
}
END_TEST

/* What --check-config prints is the effective configuration: loading the
 * printed text gives back the very same values. */
static void assert_round_trip(const char *text)
{
        Config a, b;
        char path[64], err[256];

        int r = load_text(&a, text, path, err);
        ck_assert_msg(r == 0, "config_load: %d (%s)", r, err);
        char *printed = print_config(&a);
        r = load_text(&b, printed, path, err);
        ck_assert_msg(r == 0, "reloading the printed config: %d (%s)\n%s", r, err, printed);
        ck_assert_str_eq(a.socket_path, b.socket_path);
        ck_assert_uint_eq(a.socket_mode, b.socket_mode);
        ck_assert_int_eq(a.socket_group, b.socket_group);
        ck_assert_uint_eq(a.max_connections, b.max_connections);
        ck_assert_uint_eq(a.max_connections_per_uid, b.max_connections_per_uid);
        ck_assert_uint_eq(a.max_descriptors, b.max_descriptors);
        ck_assert_uint_eq(a.max_output_bytes, b.max_output_bytes);
        ck_assert_msg(a.handshake_timeout_ns == b.handshake_timeout_ns,
                      "handshake_timeout of %lld ns is printed as '%.*s'",
                      (long long)a.handshake_timeout_ns,
                      (int)strcspn(strstr(printed, "handshake_timeout"), "\n"),
                      strstr(printed, "handshake_timeout"));
        ck_assert_mem_eq(&a.allow_users, &b.allow_users, sizeof(a.allow_users));
        ck_assert_mem_eq(&a.allow_groups, &b.allow_groups, sizeof(a.allow_groups));
        ck_assert_mem_eq(&a.admin_users, &b.admin_users, sizeof(a.admin_users));
        ck_assert_mem_eq(&a.admin_groups, &b.admin_groups, sizeof(a.admin_groups));
        ck_assert_int_eq(a.log_level, b.log_level);
        ck_assert_int_eq(a.scheduler_slice_ns, b.scheduler_slice_ns);
        free(printed);
        config_done(&a);
        config_done(&b);
}

START_TEST(test_config_print_round_trips)
{
        assert_round_trip("");
        assert_round_trip("[daemon]\nsocket_path = ./x.sock\nsocket_mode = 0601\n"
                          "socket_group = 0\n[limits]\nmax_connections = 5\n"
                          "max_connections_per_uid = 2\nmax_descriptors_per_connection = 3\n"
                          "max_output_bytes = 70000\nhandshake_timeout = 2s\n"
                          "[access]\nallow_users = 0 5\nadmin_groups = 0\n[log]\nlevel = 3\n");
        assert_round_trip("[limits]\nmax_descriptors_per_uid = 40%\nreserved_fds = 0\n"
                          "max_output_bytes_per_uid = 65536\nmax_output_bytes_total = 2147483648\n");
        assert_round_trip("[limits]\nmax_descriptors_per_uid = 1000\n");
}
END_TEST

/* max_descriptors_per_uid: a count, or a share of RLIMIT_NOFILE. */
START_TEST(test_config_uid_descriptor_share)
{
        Config c;
        char path[64], err[256];

        ck_assert_int_eq(load_text(&c, "[limits]\nmax_descriptors_per_uid = 40%\n", path, err), 0);
        ck_assert(c.max_descriptors_per_uid.percent);
        ck_assert_uint_eq(share_of(c.max_descriptors_per_uid, 20000), 8000);
        config_done(&c);
        ck_assert_int_eq(load_text(&c, "[limits]\nmax_descriptors_per_uid = 100%\n", path, err), 0);
        ck_assert_uint_eq(share_of(c.max_descriptors_per_uid, 20000), 20000);
        config_done(&c);
        ck_assert_int_eq(load_text(&c, "[limits]\nmax_descriptors_per_uid = 1234\n", path, err), 0);
        ck_assert(!c.max_descriptors_per_uid.percent);
        ck_assert_uint_eq(share_of(c.max_descriptors_per_uid, 20000), 1234);
        config_done(&c);
}
END_TEST

/* A [daemon] duration key that also takes 0: the cases parse as given,
 * `key = example` and `key = 0` read back the same once printed, and 0 is
 * printed as "0". */
static void assert_duration_key(const char *key, size_t offset, const DurationCase *cases, size_t n,
                                const char *example)
{
        char text[128], want[64], path[64], err[256];
        Config c;

        snprintf(text, sizeof(text), "[daemon]\n%s", key);
        assert_durations(text, offset, cases, n);
        snprintf(text, sizeof(text), "[daemon]\n%s = %s\n", key, example);
        assert_round_trip(text);
        snprintf(text, sizeof(text), "[daemon]\n%s = 0\n", key);
        assert_round_trip(text);
        ck_assert_int_eq(load_text(&c, text, path, err), 0);
        char *printed = print_config(&c);
        snprintf(want, sizeof(want), "%s = 0\n", key);
        ck_assert_ptr_nonnull(strstr(printed, want));
        free(printed);
        config_done(&c);
}

/* scheduler_slice: 0 (the kernel's default) or 100us..100ms, printed so
 * that it reads back the same. */
START_TEST(test_config_scheduler_slice)
{
        static const DurationCase cases[] = { { "0", 0 },
                                               { "0ms", 0 },
                                               { "0.0", 0 },
                                               { "100us", 100000LL },
                                               { "2.5ms", 2500000LL },
                                               { "100ms", 100000000LL },
                                               { "0.02", 20000000LL } };
        assert_duration_key("scheduler_slice", offsetof(Config, scheduler_slice_ns), cases,
                            sizeof(cases) / sizeof(cases[0]), "2.5ms");
}
END_TEST

/* idle_spin: 0 (never spin) or a duration up to 1ms, printed so that it
 * reads back the same. */
START_TEST(test_config_idle_spin)
{
        static const DurationCase cases[] = { { "0", 0 },          { "0us", 0 },
                                               { "1us", 1000LL },   { "50us", 50000LL },
                                               { "1500ns", 1500LL }, { "1ms", 1000000LL } };
        assert_duration_key("idle_spin", offsetof(Config, idle_spin_ns), cases,
                            sizeof(cases) / sizeof(cases[0]), "20us");
}
END_TEST

/* A sub-millisecond part of handshake_timeout must survive printing too. */
START_TEST(test_config_print_round_trips_sub_ms_timeout)
{
        assert_round_trip("[limits]\nhandshake_timeout = 1500us\n");
}
END_TEST

/*
 * One bad file per row: the error is -EINVAL, the message starts with
 * "FILE:LINE:" and names the key (or section) at fault.
 */
static const struct {
        const char *what;
        const char *text;
        int line;
        const char *needle1, *needle2;
} bad[] = {
        { "unknown section", "[daemon]\nsocket_path = /a\n[network]\nport = 5\n", 4, "network",
          "port" },
        { "unknown key", "[limits]\nmax_connections = 5\nmax_clients = 5\n", 3, "max_clients",
          "limits" },
        { "key in the wrong section", "[daemon]\nmax_connections = 5\n", 2, "max_connections",
          "daemon" },
        { "key before any section", "max_connections = 5\n", 1, "max_connections", NULL },
        { "non-number", "[limits]\nmax_connections = lots\n", 2, "max_connections", NULL },
        { "number with junk", "[limits]\nmax_connections = 12abc\n", 2, "max_connections",
          NULL },
        { "empty number", "[limits]\nmax_output_bytes =\n", 2, "max_output_bytes", NULL },
        { "negative", "[limits]\nmax_connections = -5\n", 2, "max_connections", NULL },
        { "negative huge", "[limits]\nmax_descriptors_per_connection = -4294967295\n", 2,
          "max_descriptors_per_connection", NULL },
        { "max_connections below", "[limits]\nmax_connections = 0\n", 2, "max_connections",
          "1..1000000" },
        { "max_connections above", "[limits]\nmax_connections = 1000001\n", 2,
          "max_connections", "1..1000000" },
        { "max_descriptors below", "[limits]\nmax_descriptors_per_connection = 0\n", 2,
          "max_descriptors_per_connection", NULL },
        { "max_descriptors above", "[limits]\nmax_descriptors_per_connection = 16777216\n", 2,
          "max_descriptors_per_connection", NULL },
        { "max_output_bytes below", "[limits]\nmax_output_bytes = 65535\n", 2,
          "max_output_bytes", NULL },
        { "max_output_bytes above", "[limits]\nmax_output_bytes = 1073741825\n", 2,
          "max_output_bytes", NULL },
        { "u32 wrap", "[limits]\nmax_connections = 4294967297\n", 2, "max_connections", NULL },
        { "u64 overflow", "[limits]\nmax_connections = 99999999999999999999999\n", 2,
          "max_connections", NULL },
        { "bad log level", "[log]\nlevel = loud\n", 2, "level", "loud" },
        { "numeric log level out of range", "[log]\nlevel = 9\n", 2, "level", NULL },
        { "relative socket path", "[daemon]\nsocket_path = run/np.sock\n", 2, "socket_path",
          "run/np.sock" },
        { "empty socket path", "[daemon]\nsocket_path =\n", 2, "socket_path", NULL },
        { "socket path too long",
          "[daemon]\nsocket_path = /tmp/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\n",
          2, "socket_path", NULL },
        { "socket_mode not octal", "[daemon]\nsocket_mode = 0778\n", 2, "socket_mode", NULL },
        { "socket_mode too wide", "[daemon]\nsocket_mode = 01000\n", 2, "socket_mode", NULL },
        { "socket_mode hex", "[daemon]\nsocket_mode = 0x1ff\n", 2, "socket_mode", NULL },
        { "socket_mode negative", "[daemon]\nsocket_mode = -1\n", 2, "socket_mode", NULL },
        { "unknown socket_group", "[daemon]\nsocket_group = no-such-group-xyz\n", 2,
          "socket_group", "no-such-group-xyz" },
        { "max_connections_per_uid below", "[limits]\nmax_connections_per_uid = 0\n", 2,
          "max_connections_per_uid", NULL },
        { "max_connections_per_uid above", "[limits]\nmax_connections_per_uid = 1000001\n", 2,
          "max_connections_per_uid", NULL },
        { "handshake_timeout zero", "[limits]\nhandshake_timeout = 0\n", 2, "handshake_timeout",
          NULL },
        { "handshake_timeout below", "[limits]\nhandshake_timeout = 999us\n", 2,
          "handshake_timeout", "999us" },
        { "handshake_timeout above", "[limits]\nhandshake_timeout = 2h\n", 2,
          "handshake_timeout", "2h" },
        { "handshake_timeout negative", "[limits]\nhandshake_timeout = -5s\n", 2,
          "handshake_timeout", NULL },
        { "handshake_timeout bad unit", "[limits]\nhandshake_timeout = 5 parsecs\n", 2,
          "handshake_timeout", NULL },
        { "handshake_timeout inf", "[limits]\nhandshake_timeout = inf\n", 2,
          "handshake_timeout", NULL },
        { "handshake_timeout nan", "[limits]\nhandshake_timeout = nan\n", 2,
          "handshake_timeout", NULL },
        { "scheduler_slice below", "[daemon]\nscheduler_slice = 99us\n", 2, "scheduler_slice",
          "99us" },
        { "idle_spin above", "[daemon]\nidle_spin = 1001us\n", 2, "idle_spin", "1001us" },
        { "idle_spin negative", "[daemon]\nidle_spin = -1us\n", 2, "idle_spin", NULL },
        { "idle_spin bad unit", "[daemon]\nidle_spin = 5 parsecs\n", 2, "idle_spin", NULL },
        { "scheduler_slice above", "[daemon]\nscheduler_slice = 101ms\n", 2, "scheduler_slice",
          "101ms" },
        { "scheduler_slice negative", "[daemon]\nscheduler_slice = -1ms\n", 2,
          "scheduler_slice", NULL },
        { "scheduler_slice rounds to 0", "[daemon]\nscheduler_slice = 0.4ns\n", 2,
          "scheduler_slice", "0.4ns" },
        { "scheduler_slice tiny", "[daemon]\nscheduler_slice = 1e-10\n", 2, "scheduler_slice",
          "1e-10" },
        { "scheduler_slice words", "[daemon]\nscheduler_slice = short\n", 2, "scheduler_slice",
          "short" },
        { "unknown user", "[access]\nallow_users = root, no-such-user-xyz\n", 2, "allow_users",
          "no-such-user-xyz" },
        { "unknown admin group", "[access]\nadmin_groups = no-such-group-xyz\n", 2,
          "admin_groups", "no-such-group-xyz" },
        { "key of another section", "[access]\nlevel = info\n", 2, "level", "access" },
        { "syntax error", "[daemon]\nsocket_path = /a\nthis line is not ini\n", 3, NULL, NULL },
        { "unterminated section", "# x\n[limits\n", 2, NULL, NULL },
        { "value without key", "[limits]\n= 5\n", 2, NULL, NULL },
        { "uid share zero", "[limits]\nmax_descriptors_per_uid = 0%\n", 2,
          "max_descriptors_per_uid", "1%..100%" },
        { "uid share over 100", "[limits]\nmax_descriptors_per_uid = 101%\n", 2,
          "max_descriptors_per_uid", NULL },
        { "uid share junk", "[limits]\nmax_descriptors_per_uid = many%\n", 2,
          "max_descriptors_per_uid", NULL },
        { "uid share blank", "[limits]\nmax_descriptors_per_uid = %\n", 2,
          "max_descriptors_per_uid", NULL },
        { "uid count zero", "[limits]\nmax_descriptors_per_uid = 0\n", 2,
          "max_descriptors_per_uid", NULL },
        { "reserved_fds negative", "[limits]\nreserved_fds = -1\n", 2, "reserved_fds", NULL },
        { "per-uid output below", "[limits]\nmax_output_bytes_per_uid = 65535\n", 2,
          "max_output_bytes_per_uid", NULL },
        { "total output above", "[limits]\nmax_output_bytes_total = 2147483649\n", 2,
          "max_output_bytes_total", NULL },
};

START_TEST(test_config_errors_name_file_line_and_key)
{
        Config c;
        char path[64], err[256], prefix[96];

        int r = load_text(&c, bad[_i].text, path, err);
        ck_assert_msg(r == -EINVAL, "%s: config_load returned %d, want -EINVAL (%s)", bad[_i].what,
                      r, err);
        snprintf(prefix, sizeof(prefix), "%s:%d:", path, bad[_i].line);
        ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0,
                      "%s: message '%s' does not start with '%s'", bad[_i].what, err, prefix);
        if (bad[_i].needle1)
                ck_assert_msg(strstr(err, bad[_i].needle1), "%s: message '%s' does not name '%s'",
                              bad[_i].what, err, bad[_i].needle1);
        if (bad[_i].needle2)
                ck_assert_msg(strstr(err, bad[_i].needle2), "%s: message '%s' does not name '%s'",
                              bad[_i].what, err, bad[_i].needle2);
        /* Nothing of the bad file was applied. */
        assert_defaults(&c);
        config_done(&c);
}
END_TEST

START_TEST(test_config_error_line_after_comments_and_blanks)
{
        Config c;
        char path[64], err[256], want[96];

        int r = load_text(&c,
                          "# netpolld.conf\n"
                          "\n"
                          "; another comment style\n"
                          "[limits]\n"
                          "max_connections = zero\n"
                          "max_descriptors_per_connection = 10\n",
                          path, err);
        ck_assert_int_eq(r, -EINVAL);
        snprintf(want, sizeof(want), "%s:5: ", path);
        ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "message '%s', want '%s...'", err,
                      want);
        ck_assert_ptr_nonnull(strstr(err, "max_connections"));
        config_done(&c);

        /* The first error is the one reported, not a later one. */
        r = load_text(&c,
                      "[limits]\n"
                      "\n"
                      "\n"
                      "# x\n"
                      "max_output_bytes = 1\n"
                      "bogus = 1\n",
                      path, err);
        ck_assert_int_eq(r, -EINVAL);
        snprintf(want, sizeof(want), "%s:5: ", path);
        ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "message '%s', want '%s...'", err,
                      want);
        ck_assert_ptr_nonnull(strstr(err, "max_output_bytes"));
        ck_assert_ptr_null(strstr(err, "bogus"));
        config_done(&c);
}
END_TEST

/*
 * inih goes on after a syntax error and calls the handler for later lines;
 * the error reported must still be the first one, on the line inih
 * returned, not a later key's.
 */
START_TEST(test_config_syntax_error_before_bad_key_reports_first)
{
        static const char *const texts[] = {
                "[limits\nmax_connections = 5\n",
                "[limits]\nthis line is not ini\nmax_connections = 0\n",
        };
        static const int lines[] = { 1, 2 };

        for (size_t i = 0; i < 2; i++) {
                Config c;
                char path[64], err[256], want[96];
                int r = load_text(&c, texts[i], path, err);
                ck_assert_int_eq(r, -EINVAL);
                snprintf(want, sizeof(want), "%s:%d: ", path, lines[i]);
                ck_assert_msg(strncmp(err, want, strlen(want)) == 0,
                              "file %zu: message '%s', want '%s...'", i, err, want);
                assert_defaults(&c);
                config_done(&c);
        }
}
END_TEST

START_TEST(test_config_bad_file_leaves_config_unchanged)
{
        Config c;
        char path[64], err[256];

        /* Start from a non-default config, loaded from a good file. */
        ck_assert_int_eq(config_init(&c), 0);
        write_tmp(path, "[daemon]\nsocket_path = /tmp/first.sock\n[limits]\nmax_connections = 3\n"
                        "[log]\nlevel = notice\n");
        ck_assert_int_eq(config_load(&c, path, err, sizeof(err)), 0);
        unlink(path);
        char *before = print_config(&c);
        char *before_path = c.socket_path;

        /* Good keys first, then a bad one: none of them sticks. */
        write_tmp(path, "[daemon]\nsocket_path = /tmp/second.sock\n[limits]\n"
                        "max_connections = 99\nmax_output_bytes = 70000\n[log]\nlevel = debug\n"
                        "[limits]\nmax_descriptors_per_connection = many\n");
        ck_assert_int_eq(config_load(&c, path, err, sizeof(err)), -EINVAL);
        unlink(path);
        ck_assert_ptr_nonnull(strstr(err, ":9:"));
        ck_assert_ptr_eq(c.socket_path, before_path);
        ck_assert_str_eq(c.socket_path, "/tmp/first.sock");
        ck_assert_uint_eq(c.max_connections, 3);
        ck_assert_uint_eq(c.max_output_bytes, 1024 * 1024);
        ck_assert_int_eq(c.log_level, 5);
        char *after = print_config(&c);
        ck_assert_str_eq(before, after);
        free(before);
        free(after);

        /* A syntax error (reported by inih itself) too. */
        write_tmp(path, "[limits]\nmax_connections = 50\n=== not ini ===\n");
        ck_assert_int_eq(config_load(&c, path, err, sizeof(err)), -EINVAL);
        unlink(path);
        ck_assert_uint_eq(c.max_connections, 3);
        config_done(&c);
}
END_TEST

START_TEST(test_config_later_file_overlays_earlier)
{
        Config c;
        char path[64], err[256];

        ck_assert_int_eq(config_init(&c), 0);
        write_tmp(path, "[limits]\nmax_connections = 3\n");
        ck_assert_int_eq(config_load(&c, path, err, sizeof(err)), 0);
        unlink(path);
        write_tmp(path, "[log]\nlevel = warning\n");
        ck_assert_int_eq(config_load(&c, path, err, sizeof(err)), 0);
        unlink(path);
        ck_assert_uint_eq(c.max_connections, 3);
        ck_assert_int_eq(c.log_level, 4);
        ck_assert_str_eq(c.socket_path, CONFIG_DEFAULT_SOCKET);
        config_done(&c);
}
END_TEST

START_TEST(test_config_missing_file_is_enoent)
{
        Config c;
        char err[256];
        const char *path = "/tmp/netpolld-test-no-such-dir/none.conf";

        ck_assert_int_eq(config_init(&c), 0);
        ck_assert_int_eq(config_load(&c, path, err, sizeof(err)), -ENOENT);
        ck_assert_msg(strstr(err, path), "message '%s' does not name the path", err);
        assert_defaults(&c);
        config_done(&c);
}
END_TEST

START_TEST(test_config_empty_file_keeps_defaults)
{
        Config c;
        char path[64], err[256];

        int r = load_text(&c, "", path, err);
        ck_assert_int_eq(r, 0);
        assert_defaults(&c);
        config_done(&c);
        r = load_text(&c, "# only comments\n\n; here\n", path, err);
        ck_assert_int_eq(r, 0);
        assert_defaults(&c);
        config_done(&c);
}
END_TEST

START_TEST(test_config_shipped_file_is_valid)
{
        Config c, d;
        char err[256];

        /* conf/netpolld.conf documents the defaults: loading it changes nothing. */
        if (access("conf/netpolld.conf", R_OK) != 0)
                return; /* not run from the source tree */
        ck_assert_int_eq(config_init(&c), 0);
        ck_assert_int_eq(config_init(&d), 0);
        int r = config_load(&c, "conf/netpolld.conf", err, sizeof(err));
        ck_assert_msg(r == 0, "conf/netpolld.conf: %s", err);
        char *a = print_config(&c), *b = print_config(&d);
        ck_assert_str_eq(a, b);
        free(a);
        free(b);
        config_done(&c);
        config_done(&d);
}
END_TEST

Suite *suite_config(void)
{
        Suite *s = suite_create("config");
        TCase *tc;

        tc = test_tcase(s, "load", 30);
        tcase_add_test(tc, test_config_defaults_without_file);
        tcase_add_test(tc, test_config_parses_every_key);
        tcase_add_test(tc, test_config_range_ends_are_accepted);
        tcase_add_test(tc, test_config_log_levels);
        tcase_add_test(tc, test_config_dot_relative_socket_path_accepted);
        tcase_add_test(tc, test_config_parses_operations_and_access_keys);
        tcase_add_test(tc, test_config_durations);
        tcase_add_test(tc, test_config_print_round_trips);
        tcase_add_test(tc, test_config_uid_descriptor_share);
        tcase_add_test(tc, test_config_print_round_trips_sub_ms_timeout);
        tcase_add_test(tc, test_config_scheduler_slice);
        tcase_add_test(tc, test_config_idle_spin);
        tcase_add_test(tc, test_config_later_file_overlays_earlier);
        tcase_add_test(tc, test_config_empty_file_keeps_defaults);
        tcase_add_test(tc, test_config_shipped_file_is_valid);

        tc = test_tcase(s, "errors", 30);
        tcase_add_loop_test(tc, test_config_errors_name_file_line_and_key, 0,
                            (int)(sizeof(bad) / sizeof(bad[0])));
        tcase_add_test(tc, test_config_error_line_after_comments_and_blanks);
        tcase_add_test(tc, test_config_syntax_error_before_bad_key_reports_first);
        tcase_add_test(tc, test_config_bad_file_leaves_config_unchanged);
        tcase_add_test(tc, test_config_missing_file_is_enoent);
        return s;
}
