/* SPDX-License-Identifier: MIT */
/*
 * systemd's file descriptor store, as allocd uses it (docs/ARCHITECTURE.md, "Across a restart").
 * systemd keeps what is stored across `systemctl restart` and a crash of allocd (not across stop
 * and start) and passes it back with LISTEN_FDS and LISTEN_FDNAMES, beside allocd.socket's
 * socket.  Names are allocd's only way of telling one fd from another, so they say what a
 * successor must know before it touches the fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "fdstore.h"

bool fdstore_enabled(unsigned *max) {
        const char *ns = getenv("NOTIFY_SOCKET"), *fs = getenv("FDSTORE");
        char *end;
        unsigned long v = fs ? strtoul(fs, &end, 10) : 0;

        if (!ns || !*ns || !fs || end == fs || *end || v == 0 || v > 65536)
                v = 0;
        if (max)
                *max = (unsigned)v;
        return v > 0;
}

bool fdstore_name_valid(const char *name) {
        size_t n = strlen(name);

        if (n == 0 || n > 255)
                return false;
        for (const char *p = name; *p; p++)
                if (*p < ' ' || *p > '~' || *p == ':')
                        return false;
        return true;
}

int fdstore_put(int fd, const char *name) {
        char msg[300];

        if (!fdstore_name_valid(name))
                return -EINVAL;
        snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
        int r = sd_pid_notify_with_fds(0, 0, msg, &fd, 1);
        return r < 0 ? r : r == 0 ? -ENOTCONN : 0;
}

int fdstore_remove(const char *name) {
        char msg[300];

        if (!fdstore_name_valid(name))
                return -EINVAL;
        snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", name);
        int r = sd_pid_notify(0, 0, msg);
        return r < 0 ? r : r == 0 ? -ENOTCONN : 0;
}

static void strv_free(char **v) {
        for (size_t i = 0; v && v[i]; i++)
                free(v[i]);
        free(v);
}

int fdstore_passed(struct passed_fd **ret, size_t *nret) {
        char **names = NULL;
        int n = sd_listen_fds_with_names(1, &names);
        struct passed_fd *fds = n > 0 ? calloc((size_t)n, sizeof(*fds)) : NULL;

        *ret = NULL;
        *nret = 0;
        if (n > 0 && !fds) {
                for (int i = 0; i < n; i++)
                        close(SD_LISTEN_FDS_START + i);
                n = -ENOMEM;
        }
        for (int i = 0; fds && i < n; i++) {
                fds[i].fd = SD_LISTEN_FDS_START + i;
                snprintf(fds[i].name, sizeof(fds[i].name), "%s", names && names[i] ? names[i] : "unknown");
        }
        strv_free(names);
        if (n <= 0)
                return n;
        *ret = fds;
        *nret = (size_t)n;
        return 0;
}

void fdstore_passed_free(struct passed_fd *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (fds[i].fd >= 0)
                        close(fds[i].fd);
        free(fds);
}

/* By name, then by index: of two fds of one name the one passed first is found first, as a scan finds it. */
static int by_name(const void *a, const void *b, void *fds) {
        const struct passed_fd *f = fds;
        size_t i = *(const size_t *)a, j = *(const size_t *)b;
        int c = strcmp(f[i].name, f[j].name);
        return c ? c : (i > j) - (i < j);
}

int fdstore_passed_sort(const struct passed_fd *fds, size_t n, size_t **ret) {
        size_t *order = malloc((n ? n : 1) * sizeof(*order));

        if (!order)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                order[i] = i;
        qsort_r(order, n, sizeof(*order), by_name, (void *)fds);
        *ret = order;
        return 0;
}

ssize_t fdstore_passed_find(const struct passed_fd *fds, const size_t *order, size_t n, const char *name) {
        size_t lo = 0, hi = n;

        if (!order) {
                for (size_t i = 0; i < n; i++)
                        if (fds[i].fd >= 0 && !strcmp(fds[i].name, name))
                                return (ssize_t)i;
                return -1;
        }
        while (lo < hi) { /* the first of that name or after it */
                size_t mid = lo + (hi - lo) / 2;
                if (strcmp(fds[order[mid]].name, name) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        for (; lo < n && !strcmp(fds[order[lo]].name, name); lo++)
                if (fds[order[lo]].fd >= 0)
                        return (ssize_t)order[lo];
        return -1;
}

void fdstore_pool_name(char *buf, size_t size, const struct stored_pool *sp) {
        char q[32] = "";

        if (sp->quantum && sp->quantum != (uint64_t)sysconf(_SC_PAGESIZE))
                snprintf(q, sizeof(q), "q%" PRIu64, sp->quantum);
        int n = snprintf(buf, size, "pool.%s%s.%" PRIu64 "%s.", pool_kind_name(sp->kind), sp->vmm ? "-vmm" : "",
                         sp->size, q);

        for (const char *p = sp->name; *p && n >= 0 && (size_t)n + 1 < size; p++)
                buf[n++] = *p == ':' ? '%' : *p;
        if (n >= 0 && (size_t)n < size)
                buf[n] = '\0';
}

bool fdstore_pool_parse(const char *name, struct stored_pool *sp) {
        static const enum pool_kind kinds[] = {POOL_HOST, POOL_FPGA, POOL_PINNED, POOL_GPU};
        const char *k = name + 5, *dot, *s;
        char *end;
        size_t n;

        if (strncmp(name, "pool.", 5) || !(dot = strchr(k, '.')))
                return false;
        memset(sp, 0, sizeof(*sp));
        n = (size_t)(dot - k);
        if (n > 4 && !strncmp(dot - 4, "-vmm", 4)) {
                sp->vmm = true;
                n -= 4;
        }
        sp->kind = (enum pool_kind) - 1;
        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
                if (strlen(pool_kind_name(kinds[i])) == n && !strncmp(k, pool_kind_name(kinds[i]), n))
                        sp->kind = kinds[i];
        s = dot + 1;
        errno = 0;
        sp->size = strtoull(s, &end, 10);
        if (*end == 'q' && end != s) {
                s = end + 1;
                sp->quantum = strtoull(s, &end, 10);
                if (end == s || !sp->quantum)
                        return false;
        }
        if (sp->kind == (enum pool_kind) - 1 || end == s || *end != '.' || errno || !end[1] ||
            strlen(end + 1) > POOL_NAME_MAX_LEN)
                return false;
        for (size_t i = 0; end[1 + i]; i++)
                sp->name[i] = end[1 + i] == '%' ? ':' : end[1 + i];
        return true;
}

bool fdstore_pool_matches(const struct pool_conf *pc, const struct stored_pool *sp, int fd) {
        bool vmm = pc->kind == POOL_PINNED && sp->vmm;
        uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
        struct stat st;

        if (pc->kind != sp->kind || pc->size != sp->size || pc->isolation != ISOLATION_POOL)
                return false;
        /* A larger quantum cannot take the regions of a smaller one: the stored pool drains (CUDA's too). */
        if (pool_conf_quantum(pc) > (sp->quantum ? sp->quantum : page))
                return false;
        if (!sp->vmm && sp->kind != POOL_GPU && fd >= 0 && fstat(fd, &st) == 0 &&
            (uint64_t)st.st_blksize != (pc->hugepage ? pc->hugepage : page))
                return false;
        return pc->kind != POOL_PINNED || pc->backend == BACKEND_AUTO || (pc->backend == BACKEND_VMM) == vmm;
}

void fdstore_region_name(char *buf, size_t size, uint64_t id) {
        snprintf(buf, size, "region-%" PRIu64, id);
}
