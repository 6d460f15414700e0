/*
 * netpolld's configuration: built-in defaults, overlaid by an INI file
 * (parsed with inih), overlaid by command-line flags.  Every key is
 * documented in conf/netpolld.conf and netpolld.conf(5).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_DEFAULT_SOCKET "/run/netpolld/netpolld.sock"

typedef struct Config {
        char *socket_path;
        uint32_t max_connections;
        uint32_t max_descriptors; /* per connection */
        uint32_t max_output_bytes; /* queued, per connection */
        int log_level;
} Config;

/* Fills in the defaults.  Returns 0 or -ENOMEM. */
int config_init(Config *c);
void config_done(Config *c);

/*
 * Reads path over *c.  On a bad file returns -EINVAL (or -errno when it
 * cannot be read) and writes a "FILE:LINE: message" into err; *c is then
 * unchanged.
 */
int config_load(Config *c, const char *path, char *err, size_t errlen);

/* Writes the effective configuration as INI to f. */
void config_print(const Config *c, FILE *f);
