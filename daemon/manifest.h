/*
 * The fds an in-place upgrade (SIGUSR2, pollctl upgrade) passes through
 * execve(2), and their names: "FD NAME" lines in a memfd whose number the
 * new instance finds in NETPOLLD_MANIFEST_FD.
 */
#pragma once

#include <stddef.h>
#include <stdio.h>

#define MANIFEST_ENV "NETPOLLD_MANIFEST_FD"

typedef struct Manifest {
        int fd; /* the memfd, inherited by the exec */
        FILE *f;
} Manifest;

/* A new, empty manifest.  0 or -errno. */
int manifest_begin(Manifest *m);
/* Lists fd under name and makes it inheritable. */
void manifest_add(Manifest *m, int fd, const char *name);
/* Done: env (envlen bytes) gets the environment entry to pass.  0 or
 * -errno (the manifest is gone either way). */
int manifest_end(Manifest *m, char *env, size_t envlen);

/* The manifest a previous instance left, consumed (its fds' names in
 * *ret_names, each and the array malloc'd; the fds are left as passed).
 * 1 taken, 0 there is none, or -errno. */
int manifest_take(int **ret_fds, char ***ret_names, size_t *ret_n);
