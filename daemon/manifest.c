/*
 * The in-place upgrade's list of fds (manifest.h).
 */
#include "manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../common/cleanup.h"

int manifest_begin(Manifest *m)
{
        *m = (Manifest){ .fd = memfd_create("netpolld-manifest", 0) }; /* inherited */
        if (m->fd < 0)
                return -errno;
        int d = dup(m->fd);
        m->f = d >= 0 ? fdopen(d, "w") : NULL;
        if (!m->f) {
                safe_close(d);
                m->fd = safe_close(m->fd);
                return -ENOMEM;
        }
        return 0;
}

void manifest_add(Manifest *m, int fd, const char *name)
{
        fprintf(m->f, "%d %s\n", fd, name);
        (void)fcntl(fd, F_SETFD, 0);
}

int manifest_end(Manifest *m, char *env, size_t envlen)
{
        int r = fclose(m->f) == 0 ? 0 : -EIO;

        m->f = NULL;
        if (r < 0) {
                m->fd = safe_close(m->fd);
                return r;
        }
        snprintf(env, envlen, MANIFEST_ENV "=%d", m->fd);
        return 0;
}

static int parse(char *buf, int **ret_fds, char ***ret_names, size_t *ret_n)
{
        int *fds = NULL;
        char **names = NULL;
        size_t n = 0;

        for (char *line = buf, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                char name[64];
                int fd;
                if (sscanf(line, "%d %63s", &fd, name) != 2 || fd < 0)
                        continue;
                int *f = realloc(fds, (n + 1) * sizeof(*fds));
                if (f)
                        fds = f;
                char **nm = f ? realloc(names, (n + 1) * sizeof(*names)) : NULL;
                if (nm)
                        names = nm;
                char *dup = nm ? strdup(name) : NULL;
                if (!dup) {
                        for (size_t i = 0; i < n; i++)
                                free(names[i]);
                        free(names);
                        free(fds);
                        return -ENOMEM;
                }
                fds[n] = fd;
                names[n++] = dup;
        }
        *ret_fds = fds;
        *ret_names = names;
        *ret_n = n;
        return 0;
}

int manifest_take(int **ret_fds, char ***ret_names, size_t *ret_n)
{
        const char *e = getenv(MANIFEST_ENV);
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 0;
        int r = 0;

        if (!e)
                return 0;
        int mfd = atoi(e);
        unsetenv(MANIFEST_ENV);
        for (;;) {
                if (len + 4096 > cap) {
                        cap = cap ? cap * 2 : 65536;
                        char *b = realloc(buf, cap + 1);
                        if (!b) {
                                r = -ENOMEM;
                                break;
                        }
                        buf = b;
                }
                ssize_t k = pread(mfd, buf + len, cap - len, (off_t)len);
                if (k <= 0) {
                        r = k < 0 ? -errno : 0;
                        break;
                }
                len += (size_t)k;
        }
        safe_close(mfd);
        if (r < 0)
                return r;
        buf[len] = '\0';
        r = parse(buf, ret_fds, ret_names, ret_n);
        return r < 0 ? r : 1;
}
