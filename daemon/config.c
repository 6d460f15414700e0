/*
 * INI configuration through inih.  The file is parsed into a copy of the
 * current configuration, which replaces it only when the whole file is
 * good, so a bad file changes nothing.  Unknown sections and keys, bad
 * numbers and out-of-range values stop the parse with file:line and key.
 */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

typedef struct Parse {
        Config cfg;
        const char *path;
        char *err;
        size_t errlen;
        FILE *f;
        int line; /* of the line inih is handling (Debian's inih passes none) */
        bool line_done;
} Parse;

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

int config_init(Config *c)
{
        *c = (Config){
                .socket_path = strdup(CONFIG_DEFAULT_SOCKET),
                .max_connections = 1024,
                .max_descriptors = 4096,
                .max_output_bytes = 1024 * 1024,
                .log_level = LOG_INFO,
        };
        return c->socket_path ? 0 : -ENOMEM;
}

void config_done(Config *c)
{
        free(c->socket_path);
        c->socket_path = NULL;
}

static bool parse_u32(const char *v, uint32_t min, uint32_t max, uint32_t *ret)
{
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 10);

        if (errno || end == v || *end || v[0] == '-' || x < min || x > max)
                return false;
        *ret = (uint32_t)x;
        return true;
}

static int fail(Parse *p, const char *fmt, const char *a, const char *b)
{
        char msg[256];

        /* inih goes on after an error; the first one is the one to report. */
        if (p->err[0])
                return 0;
        snprintf(msg, sizeof(msg), fmt, a, b);
        snprintf(p->err, p->errlen, "%s:%d: %s", p->path, p->line, msg);
        return 0;
}

typedef struct U32Key {
        const char *section, *name;
        size_t offset;
        uint32_t min, max;
} U32Key;

static const U32Key u32_keys[] = {
        { "limits", "max_connections", offsetof(Config, max_connections), 1, 1000000 },
        { "limits", "max_descriptors_per_connection", offsetof(Config, max_descriptors), 1,
          (1u << 24) - 1 },
        { "limits", "max_output_bytes", offsetof(Config, max_output_bytes), 65536, 1u << 30 },
};

static int on_key(void *user, const char *section, const char *name, const char *value)
{
        Parse *p = user;

        if (strcmp(section, "daemon") && strcmp(section, "limits") && strcmp(section, "log"))
                return fail(p, "unknown section [%s] (key '%s')", section, name);
        for (size_t i = 0; i < sizeof(u32_keys) / sizeof(u32_keys[0]); i++) {
                const U32Key *k = &u32_keys[i];
                if (strcmp(section, k->section) || strcmp(name, k->name))
                        continue;
                if (!parse_u32(value, k->min, k->max, (uint32_t *)((char *)&p->cfg + k->offset))) {
                        char range[64];
                        snprintf(range, sizeof(range), "%u..%u", k->min, k->max);
                        return fail(p, "%s: expected a whole number in %s", name, range);
                }
                return 1;
        }
        if (strcmp(section, "daemon") == 0 && strcmp(name, "socket_path") == 0) {
                if (value[0] != '/' && strncmp(value, "./", 2) != 0)
                        return fail(p, "%s: expected an absolute path, got '%s'", name, value);
                char *s = strdup(value);
                if (!s)
                        return fail(p, "%s: %s", name, "out of memory");
                free(p->cfg.socket_path);
                p->cfg.socket_path = s;
                return 1;
        }
        if (strcmp(section, "log") == 0 && strcmp(name, "level") == 0) {
                int l = log_level_from_string(value);
                if (l < 0)
                        return fail(p, "%s: expected err, warning, notice, info or debug, got '%s'",
                                    name, value);
                p->cfg.log_level = l;
                return 1;
        }
        return fail(p, "unknown key '%s' in section [%s]", name, section);
}

int config_load(Config *c, const char *path, char *err, size_t errlen)
{
        Parse p = { .cfg = *c, .path = path, .err = err, .errlen = errlen };

        p.cfg.socket_path = strdup(c->socket_path);
        if (!p.cfg.socket_path)
                return -ENOMEM;
        err[0] = '\0';
        FILE *f = fopen(path, "re");
        if (!f) {
                int r = -errno;
                snprintf(err, errlen, "%s: %s", path, strerror(-r));
                free(p.cfg.socket_path);
                return r;
        }
        p.f = f;
        p.line = 1;
        int line = ini_parse_stream(read_line, &p, on_key, &p);
        fclose(f);
        if (line != 0) {
                if (!err[0])
                        snprintf(err, errlen, "%s:%d: syntax error", path, line);
                free(p.cfg.socket_path);
                return -EINVAL;
        }
        free(c->socket_path);
        *c = p.cfg;
        return 0;
}

void config_print(const Config *c, FILE *f)
{
        fprintf(f,
                "[daemon]\nsocket_path = %s\n\n[limits]\nmax_connections = %u\n"
                "max_descriptors_per_connection = %u\nmax_output_bytes = %u\n\n[log]\nlevel = %s\n",
                c->socket_path, c->max_connections, c->max_descriptors, c->max_output_bytes,
                log_level_to_string(c->log_level));
}
