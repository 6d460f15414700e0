/*
 * netpolld's configuration: built-in defaults, overlaid by an INI file
 * (parsed with inih), overlaid by command-line flags.  Every key is
 * documented in conf/netpolld.conf and netpolld.conf(5).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define CONFIG_DEFAULT_SOCKET "/run/netpolld/netpolld.sock"
/* Longer than any client's default slice (about 0.7-3 ms): cpuslice.h says why. */
#define CONFIG_DEFAULT_SLICE_NS (20 * 1000000)
/* The loop's idle spin (poller.c); netpolld.conf(5) gives the measured trade. */
#define CONFIG_DEFAULT_IDLE_SPIN_NS (50 * 1000)
#define CONFIG_MAX_IDLE_SPIN_NS (1000 * 1000)
#define CONFIG_MAX_IDS 64

/* Users or groups named in the [access] section, resolved to ids. */
typedef struct IdList {
        uint32_t n;
        uint32_t ids[CONFIG_MAX_IDS];
} IdList;

/* A count, or a percentage of something the daemon learns at run time. */
typedef struct Share {
        uint32_t n;
        bool percent;
} Share;

typedef struct Config {
        char *socket_path;
        uint32_t socket_mode;  /* permission bits of the socket file we bind */
        int64_t socket_group;  /* gid to chown it to, or -1 */
        int64_t scheduler_slice_ns; /* CPU slice asked of the scheduler, 0: the kernel's default */
        int64_t idle_spin_ns;       /* longest poll before the loop sleeps, 0: never */
        uint32_t max_connections;
        uint32_t max_connections_per_uid;
        uint32_t max_descriptors;  /* per connection */
        uint32_t max_output_bytes; /* queued, per connection */
        uint32_t max_output_bytes_per_uid;
        uint32_t max_output_bytes_total;
        Share max_descriptors_per_uid; /* fds held for one uid; percent of RLIMIT_NOFILE */
        uint32_t reserved_fds;         /* of RLIMIT_NOFILE, never given to clients */
        int64_t handshake_timeout_ns;
        IdList allow_users, allow_groups; /* empty: everyone the socket admits */
        IdList admin_users, admin_groups; /* may see every connection (root always) */
        int log_level;
} Config;

/* Fills in the defaults.  Returns 0 or -ENOMEM. */
int config_init(Config *c);
void config_done(Config *c);

/* Deep copy.  Returns 0 or -ENOMEM. */
int config_copy(Config *dst, const Config *src);

/*
 * Reads path over *c.  On a bad file returns -EINVAL (or -errno when it
 * cannot be read) and writes "FILE:LINE: message" naming the key into err;
 * *c is then unchanged.
 */
int config_load(Config *c, const char *path, char *err, size_t errlen);

/* Writes the effective configuration as INI to f. */
void config_print(const Config *c, FILE *f);

/* What a Share comes to out of `whole`. */
uint64_t share_of(Share s, uint64_t whole);

/* Whether id is in the list. */
bool idlist_contains(const IdList *l, uint32_t id);
