/* SPDX-License-Identifier: MIT */
/*
 * Logging.  Under systemd (stderr is the journal stream named by
 * $JOURNAL_STREAM) each line goes to the journal with POOL=, REGION= and
 * CLIENT_PID= fields, so `journalctl POOL=host` finds a pool's story;
 * otherwise it is one line on stderr.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <syslog.h>

#include <systemd/sd-journal.h>

#include "config.h"
#include "log.h"

static int log_level = LOG_LEVEL_INFO;
static bool to_journal;

void log_init(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        to_journal = e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
                     st.st_dev == dev && st.st_ino == ino;
}

void log_set_level(int level) {
        log_level = level;
}

int log_level_parse(const char *s) {
        static const char *names[] = {[LOG_LEVEL_ERR] = "error",
                                      [LOG_LEVEL_WARNING] = "warning",
                                      [LOG_LEVEL_NOTICE] = "notice",
                                      [LOG_LEVEL_INFO] = "info",
                                      [LOG_LEVEL_DEBUG] = "debug"};

        for (int i = LOG_LEVEL_ERR; i <= LOG_LEVEL_DEBUG; i++)
                if (!strcmp(s, names[i]))
                        return i;
        return -1;
}

void logx(int level, const struct log_ctx *ctx, const char *fmt, ...) {
        static const char *prefix[] = {[LOG_LEVEL_ERR] = "error: ", [LOG_LEVEL_WARNING] = "warning: "};
        char msg[1024];
        va_list ap;

        if (level > log_level)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);

        if (!to_journal) {
                fprintf(stderr, "allocd: %s%s\n", level <= LOG_LEVEL_WARNING ? prefix[level] : "", msg);
                return;
        }
        char f[4][NAME_MAX_LEN + 32];
        struct iovec iov[6];
        int n = 0;

        snprintf(f[0], sizeof(f[0]), "PRIORITY=%d", level);
        iov[n++] = (struct iovec){f[0], strlen(f[0])};
        char m[sizeof(msg) + 8];
        snprintf(m, sizeof(m), "MESSAGE=%s", msg);
        iov[n++] = (struct iovec){m, strlen(m)};
        if (ctx && ctx->pool) {
                snprintf(f[1], sizeof(f[1]), "POOL=%s", ctx->pool);
                iov[n++] = (struct iovec){f[1], strlen(f[1])};
        }
        if (ctx && ctx->region) {
                snprintf(f[2], sizeof(f[2]), "REGION=%" PRIu64, ctx->region);
                iov[n++] = (struct iovec){f[2], strlen(f[2])};
        }
        if (ctx && ctx->pid) {
                snprintf(f[3], sizeof(f[3]), "CLIENT_PID=%d", (int)ctx->pid);
                iov[n++] = (struct iovec){f[3], strlen(f[3])};
        }
        sd_journal_sendv(iov, n);
}
