/*
 * INI configuration through inih.  The file is parsed into a copy of the
 * current configuration, which replaces it only when the whole file is
 * good, so a bad file changes nothing (at start-up and on reload alike).
 * Unknown sections and keys, malformed values and out-of-range numbers stop
 * the parse with file:line and the key.  User and group names are resolved
 * to ids while parsing, so an unknown name is an error at its line too.
 */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <ini.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

#include "../common/duration.h"
#include "log.h"

typedef struct Parse {
        Config cfg;
        const char *path;
        char *err;
        size_t errlen;
        FILE *f;
        int line; /* of the line inih is handling (Debian's inih passes none) */
        bool line_done;
        int err_line; /* of the first key error, 0: none */
} Parse;

int config_init(Config *c)
{
        *c = (Config){
                .socket_path = strdup(CONFIG_DEFAULT_SOCKET),
                .socket_mode = 0660,
                .socket_group = -1,
                .scheduler_slice_ns = CONFIG_DEFAULT_SLICE_NS,
                .idle_spin_ns = CONFIG_DEFAULT_IDLE_SPIN_NS,
                .max_connections = 1024,
                .max_connections_per_uid = 256,
                .max_descriptors = 4096,
                .max_output_bytes = 1024 * 1024,
                .max_output_bytes_per_uid = 16 * 1024 * 1024,
                .max_output_bytes_total = 64 * 1024 * 1024,
                .max_descriptors_per_uid = { .n = 25, .percent = true },
                .reserved_fds = 512,
                .handshake_timeout_ns = 5 * INT64_C(1000000000),
                .log_level = LOG_INFO,
        };
        return c->socket_path ? 0 : -ENOMEM;
}

void config_done(Config *c)
{
        free(c->socket_path);
        c->socket_path = NULL;
}

int config_copy(Config *dst, const Config *src)
{
        char *p = strdup(src->socket_path);

        if (!p)
                return -ENOMEM;
        *dst = *src;
        dst->socket_path = p;
        return 0;
}

uint64_t share_of(Share s, uint64_t whole)
{
        return s.percent ? whole * s.n / 100 : s.n;
}

bool idlist_contains(const IdList *l, uint32_t id)
{
        for (uint32_t i = 0; i < l->n; i++)
                if (l->ids[i] == id)
                        return true;
        return false;
}

/* inih's line reader: fgets, counting lines for error messages. */
static char *read_line(char *str, int num, void *stream)
{
        Parse *p = stream;
        char *r = fgets(str, num, p->f);

        if (r) {
                if (p->line_done)
                        p->line++;
                p->line_done = strchr(str, '\n') != NULL;
        }
        return r;
}

static int fail(Parse *p, const char *key, const char *fmt, const char *value)
{
        char msg[256];

        /* inih goes on after an error; the first one is the one to report. */
        if (p->err[0])
                return 0;
        snprintf(msg, sizeof(msg), fmt, value);
        snprintf(p->err, p->errlen, "%s:%d: %s: %s", p->path, p->line, key, msg);
        p->err_line = p->line;
        return 0;
}

static bool parse_u64(const char *v, int base, uint64_t min, uint64_t max, uint64_t *ret)
{
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v, &end, base);

        if (errno || end == v || *end || v[0] == '-' || v[0] == '+' || v[0] == ' ' || x < min ||
            x > max)
                return false;
        *ret = x;
        return true;
}

typedef enum KeyType { KEY_U32, KEY_SHARE, KEY_MODE, KEY_DURATION, KEY_SLICE, KEY_SPIN, KEY_PATH,
                       KEY_GROUP, KEY_USERS, KEY_GROUPS, KEY_LEVEL } KeyType;

typedef struct Key {
        const char *section, *name;
        KeyType type;
        size_t offset;
        uint64_t min, max;
} Key;

#define K(s, n, t, f, lo, hi) { s, n, t, offsetof(Config, f), lo, hi }
static const Key keys[] = {
        K("daemon", "socket_path", KEY_PATH, socket_path, 0, 0),
        K("daemon", "socket_mode", KEY_MODE, socket_mode, 0, 0777),
        K("daemon", "socket_group", KEY_GROUP, socket_group, 0, 0),
        K("daemon", "scheduler_slice", KEY_SLICE, scheduler_slice_ns, 100000 /* 100 us */,
          100000000 /* 100 ms */),
        K("daemon", "idle_spin", KEY_SPIN, idle_spin_ns, 0, CONFIG_MAX_IDLE_SPIN_NS),
        K("limits", "max_connections", KEY_U32, max_connections, 1, 1000000),
        K("limits", "max_connections_per_uid", KEY_U32, max_connections_per_uid, 1, 1000000),
        K("limits", "max_descriptors_per_connection", KEY_U32, max_descriptors, 1,
          (1u << 24) - 1),
        K("limits", "max_output_bytes", KEY_U32, max_output_bytes, 65536, 1u << 30),
        K("limits", "max_output_bytes_per_uid", KEY_U32, max_output_bytes_per_uid, 65536,
          1u << 31),
        K("limits", "max_output_bytes_total", KEY_U32, max_output_bytes_total, 65536, 1u << 31),
        K("limits", "max_descriptors_per_uid", KEY_SHARE, max_descriptors_per_uid, 1,
          (1u << 30)),
        K("limits", "reserved_fds", KEY_U32, reserved_fds, 0, 1000000),
        K("limits", "handshake_timeout", KEY_DURATION, handshake_timeout_ns,
          1000000 /* 1 ms */, INT64_C(3600000000000) /* 1 h */),
        K("access", "allow_users", KEY_USERS, allow_users, 0, 0),
        K("access", "allow_groups", KEY_GROUPS, allow_groups, 0, 0),
        K("access", "admin_users", KEY_USERS, admin_users, 0, 0),
        K("access", "admin_groups", KEY_GROUPS, admin_groups, 0, 0),
        K("log", "level", KEY_LEVEL, log_level, 0, 0),
};

/* Resolves a user or group name (or number) to its id. */
static int resolve_id(const char *name, bool group, uint32_t *ret)
{
        uint64_t n;

        if (parse_u64(name, 10, 0, UINT32_MAX - 1, &n)) {
                *ret = (uint32_t)n;
                return 0;
        }
        if (group) {
                struct group *g = getgrnam(name);
                if (!g)
                        return -ENOENT;
                *ret = g->gr_gid;
        } else {
                struct passwd *pw = getpwnam(name);
                if (!pw)
                        return -ENOENT;
                *ret = pw->pw_uid;
        }
        return 0;
}

/* A list of names or ids separated by commas and/or blanks. */
static int parse_ids(Parse *p, const Key *k, const char *value, IdList *out)
{
        char buf[1024], *save = NULL;
        IdList l = { 0 };
        bool group = k->type == KEY_GROUPS;

        if (strlen(value) >= sizeof(buf))
                return fail(p, k->name, "%s", "list too long");
        snprintf(buf, sizeof(buf), "%s", value);
        for (char *tok = strtok_r(buf, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
                uint32_t id;
                if (l.n == CONFIG_MAX_IDS)
                        return fail(p, k->name, "more than %s entries", "64");
                if (resolve_id(tok, group, &id) < 0)
                        return fail(p, k->name, group ? "no such group '%s'" : "no such user '%s'",
                                    tok);
                l.ids[l.n++] = id;
        }
        *out = l;
        return 1;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
        Parse *p = user;
        const Key *k = NULL;
        uint64_t n;
        bool known_section = false;

        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
                if (strcmp(section, keys[i].section) == 0) {
                        known_section = true;
                        if (strcmp(name, keys[i].name) == 0)
                                k = &keys[i];
                }
        }
        if (!known_section) {
                char sec[128];
                snprintf(sec, sizeof(sec), "[%s]", section);
                return fail(p, name, "unknown section %s", sec);
        }
        if (!k) {
                char sec[128];
                snprintf(sec, sizeof(sec), "[%s]", section);
                return fail(p, name, "unknown key in section %s", sec);
        }
        void *field = (char *)&p->cfg + k->offset;
        char range[96];
        switch (k->type) {
        case KEY_U32:
                if (!parse_u64(value, 10, k->min, k->max, &n)) {
                        snprintf(range, sizeof(range), "%" PRIu64 "..%" PRIu64, k->min, k->max);
                        return fail(p, k->name, "expected a whole number in %s", range);
                }
                *(uint32_t *)field = (uint32_t)n;
                return 1;
        case KEY_SHARE: { /* N, or N% (1..100) */
                char num[32];
                size_t len = strlen(value);
                bool pct = len > 0 && value[len - 1] == '%';
                snprintf(num, sizeof(num), "%.*s", (int)(len - pct), value);
                if (len >= sizeof(num) ||
                    !parse_u64(num, 10, k->min, pct ? 100 : k->max, &n)) {
                        snprintf(range, sizeof(range),
                                 "a whole number in %" PRIu64 "..%" PRIu64 " or a share 1%%..100%%",
                                 k->min, k->max);
                        return fail(p, k->name, "expected %s", range);
                }
                *(Share *)field = (Share){ .n = (uint32_t)n, .percent = pct };
                return 1;
        }
        case KEY_MODE:
                if (!parse_u64(value, 8, k->min, k->max, &n))
                        return fail(p, k->name, "expected octal permission bits (0000..0777), got '%s'",
                                    value);
                *(uint32_t *)field = (uint32_t)n;
                return 1;
        case KEY_DURATION: {
                int64_t ns;
                if (parse_duration_ns(value, &ns) < 0 || ns < (int64_t)k->min ||
                    ns > (int64_t)k->max)
                        return fail(p, k->name,
                                    "expected a duration from 1ms to 1h (e.g. 500ms, 5s), got '%s'",
                                    value);
                *(int64_t *)field = ns;
                return 1;
        }
        case KEY_SLICE: { /* a duration, or 0 for the kernel's default */
                int64_t ns;
                /* 0 only when written as zero: 0.4ns rounds to 0 too. */
                bool zero = strtod(value, NULL) == 0.0;
                if (parse_duration_ns(value, &ns) < 0 || (ns == 0 && !zero) ||
                    (ns != 0 && (ns < (int64_t)k->min || ns > (int64_t)k->max)))
                        return fail(p, k->name,
                                    "expected 0 (the kernel's default) or a duration from 100us "
                                    "to 100ms, got '%s'",
                                    value);
                *(int64_t *)field = ns;
                return 1;
        }
        case KEY_SPIN: { /* 0 (never spin) or a duration up to max */
                int64_t ns;
                if (parse_duration_ns(value, &ns) < 0 || ns < 0 || ns > (int64_t)k->max)
                        return fail(p, k->name,
                                    "expected 0 (no spin) or a duration up to 1ms (e.g. 50us), "
                                    "got '%s'",
                                    value);
                *(int64_t *)field = ns;
                return 1;
        }
        case KEY_PATH: {
                if (value[0] != '/' && strncmp(value, "./", 2) != 0)
                        return fail(p, k->name, "expected an absolute path, got '%s'", value);
                if (strlen(value) >= 108)
                        return fail(p, k->name, "path longer than 107 bytes: '%s'", value);
                char *s = strdup(value);
                if (!s)
                        return fail(p, k->name, "%s", "out of memory");
                free(p->cfg.socket_path);
                p->cfg.socket_path = s;
                return 1;
        }
        case KEY_GROUP: {
                uint32_t gid;
                if (resolve_id(value, true, &gid) < 0)
                        return fail(p, k->name, "no such group '%s'", value);
                *(int64_t *)field = gid;
                return 1;
        }
        case KEY_USERS:
        case KEY_GROUPS:
                return parse_ids(p, k, value, field);
        case KEY_LEVEL: {
                int l = log_level_from_string(value);
                if (l < 0)
                        return fail(p, k->name,
                                    "expected err, warning, notice, info or debug, got '%s'", value);
                *(int *)field = l;
                return 1;
        }
        }
        return fail(p, k->name, "%s", "unhandled key type");
}

int config_load(Config *c, const char *path, char *err, size_t errlen)
{
        Parse p = { .path = path, .err = err, .errlen = errlen };
        int r;

        r = config_copy(&p.cfg, c);
        if (r < 0)
                return r;
        err[0] = '\0';
        FILE *f = fopen(path, "re");
        if (!f) {
                r = -errno;
                snprintf(err, errlen, "%s: %s", path, strerror(-r));
                config_done(&p.cfg);
                return r;
        }
        p.f = f;
        p.line = 1;
        int line = ini_parse_stream(read_line, &p, on_key, &p);
        fclose(f);
        if (line != 0) {
                /* inih returns the first bad line, syntax or key; a syntax
                 * error before the first key error is the one to report. */
                if (!p.err_line || line < p.err_line)
                        snprintf(err, errlen, "%s:%d: syntax error (expected [section] or key = value)",
                                 path, line);
                config_done(&p.cfg);
                return -EINVAL;
        }
        config_done(c);
        *c = p.cfg;
        return 0;
}

static void print_ids(FILE *f, const char *name, const IdList *l)
{
        fprintf(f, "%s =", name);
        for (uint32_t i = 0; i < l->n; i++)
                fprintf(f, "%s%" PRIu32, i ? ", " : " ", l->ids[i]);
        fputc('\n', f);
}

/* A duration in the largest unit that states it exactly, so the printed
 * configuration reads back to the same value. */
static void format_duration(char *buf, size_t len, int64_t ns)
{
        static const struct {
                const char *unit;
                int64_t mult;
        } units[] = { { "h", INT64_C(3600000000000) }, { "m", INT64_C(60000000000) },
                      { "s", 1000000000 },           { "ms", 1000000 },
                      { "us", 1000 },                { "ns", 1 } };

        if (ns == 0) {
                snprintf(buf, len, "0");
                return;
        }
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
                if (ns % units[i].mult == 0) {
                        snprintf(buf, len, "%" PRId64 "%s", ns / units[i].mult, units[i].unit);
                        return;
                }
}

void config_print(const Config *c, FILE *f)
{
        char timeout[32], slice[32], spin[32];

        format_duration(timeout, sizeof(timeout), c->handshake_timeout_ns);
        format_duration(slice, sizeof(slice), c->scheduler_slice_ns);
        format_duration(spin, sizeof(spin), c->idle_spin_ns);
        fprintf(f, "[daemon]\nsocket_path = %s\nsocket_mode = %04o\n", c->socket_path,
                c->socket_mode);
        if (c->socket_group >= 0)
                fprintf(f, "socket_group = %" PRId64 "\n", c->socket_group);
        fprintf(f, "scheduler_slice = %s\nidle_spin = %s\n", slice, spin);
        fprintf(f,
                "\n[limits]\nmax_connections = %u\nmax_connections_per_uid = %u\n"
                "max_descriptors_per_connection = %u\nmax_descriptors_per_uid = %u%s\n"
                "reserved_fds = %u\nmax_output_bytes = %u\nmax_output_bytes_per_uid = %u\n"
                "max_output_bytes_total = %u\nhandshake_timeout = %s\n\n[access]\n",
                c->max_connections, c->max_connections_per_uid, c->max_descriptors,
                c->max_descriptors_per_uid.n, c->max_descriptors_per_uid.percent ? "%" : "",
                c->reserved_fds, c->max_output_bytes, c->max_output_bytes_per_uid,
                c->max_output_bytes_total, timeout);
        print_ids(f, "allow_users", &c->allow_users);
        print_ids(f, "allow_groups", &c->allow_groups);
        print_ids(f, "admin_users", &c->admin_users);
        print_ids(f, "admin_groups", &c->admin_groups);
        fprintf(f, "\n[log]\nlevel = %s\n", log_level_to_string(c->log_level));
}
