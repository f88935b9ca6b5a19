/* SPDX-License-Identifier: MIT */
/*
 * Logging.  Under systemd (stderr is the journal stream named by
 * $JOURNAL_STREAM) each line goes to the journal with POOL=, REGION=,
 * CLIENT_PID= and CLIENT_UID= fields, so `journalctl POOL=host` finds a pool's story;
 * otherwise it is one line on stderr.
 *
 * Lines about a client (those whose context says so) are what a client
 * can make allocd write as fast as it sends: a refused reclaim, a denied
 * Alloc, a connection over a limit.  At most CLIENT_BURST of them about one
 * uid's clients are written each CLIENT_INTERVAL_MS, so that no client floods
 * the journal (whose own rate limit would then drop allocd's other lines),
 * hides another uid's lines, or spends the loop on it.
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
#include <time.h>

#include <systemd/sd-journal.h>

#include "config.h"
#include "log.h"

#define CLIENT_BURST 1000
#define CLIENT_INTERVAL_MS 10000
#define CLIENT_UIDS 16

static int log_level = LOG_LEVEL_INFO;
static bool to_journal;
static uint64_t client_window; /* when the current CLIENT_INTERVAL_MS began */
static struct client_uid {
        uid_t uid;
        unsigned lines, dropped;
} client_uid[CLIENT_UIDS + 1];
static unsigned client_nuids;

void log_init(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        to_journal = e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
                     st.st_dev == dev && st.st_ino == ino;
}

static const char *level_names[] = {[LOG_LEVEL_ERR] = "error",
                                    [LOG_LEVEL_WARNING] = "warning",
                                    [LOG_LEVEL_NOTICE] = "notice",
                                    [LOG_LEVEL_INFO] = "info",
                                    [LOG_LEVEL_DEBUG] = "debug"};

int log_set_level(int level) {
        int was = log_level;

        log_level = level;
        return was;
}

const char *log_level_name(int level) {
        return level >= LOG_LEVEL_ERR && level <= LOG_LEVEL_DEBUG ? level_names[level] : "?";
}

int log_level_parse(const char *s) {
        for (int i = LOG_LEVEL_ERR; i <= LOG_LEVEL_DEBUG; i++)
                if (!strcmp(s, level_names[i]))
                        return i;
        return -1;
}

/*
 * Whether a line about a client of uid may be written now: one of that uid's first CLIENT_BURST in this
 * CLIENT_INTERVAL_MS, so that one uid's flood does not leave out the lines about another's clients.  The first
 * CLIENT_UIDS uids of an interval are counted apart, any more together.  Says when a uid's lines begin to be left
 * out, and before the first line about a client after the interval, how many were.  Only the loop thread logs about
 * clients; worker threads (a pool made on SIGHUP, zeroing) log other lines, which do not come here.
 */
static bool client_line_allowed(uid_t uid) {
        struct timespec ts;
        uint64_t now;
        unsigned i, dropped = 0, uids = 0;

        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
        now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
        if (now - client_window >= CLIENT_INTERVAL_MS) {
                for (i = 0; i <= CLIENT_UIDS; i++) {
                        dropped += client_uid[i].dropped;
                        uids += client_uid[i].dropped > 0;
                }
                if (dropped)
                        log_warn("%u lines about clients of %u uid(s) were not logged (at most %d a uid in %d s)",
                                 dropped, uids, CLIENT_BURST, CLIENT_INTERVAL_MS / 1000);
                client_window = now;
                client_nuids = 0;
                memset(client_uid, 0, sizeof(client_uid));
        }
        for (i = 0; i < client_nuids && client_uid[i].uid != uid; i++)
                ;
        if (i == client_nuids && client_nuids < CLIENT_UIDS)
                client_uid[client_nuids++].uid = uid;
        struct client_uid *u = &client_uid[i]; /* i == CLIENT_UIDS: the uids beyond the first, together */
        if (u->lines < CLIENT_BURST) {
                u->lines++;
                return true;
        }
        if (u->dropped++ == 0) {
                if (i < CLIENT_UIDS)
                        log_warn("more than %d lines about clients of uid %u in %d s: the rest are left out until "
                                 "then, and counted",
                                 CLIENT_BURST, (unsigned)uid, CLIENT_INTERVAL_MS / 1000);
                else
                        log_warn("more than %d lines about clients of uids beyond the first %d in %d s: the rest are "
                                 "left out until then, and counted",
                                 CLIENT_BURST, CLIENT_UIDS, CLIENT_INTERVAL_MS / 1000);
        }
        return false;
}

void log_at(const char *file, const char *line, const char *func, int level, const struct log_ctx *ctx, const char *fmt,
            ...) {
        static const char *prefix[] = {[LOG_LEVEL_ERR] = "error: ", [LOG_LEVEL_WARNING] = "warning: "};
        char msg[1536]; /* a client context and a refusal of up to CORE_MSG_MAX */
        va_list ap;

        if (level > log_level || (ctx && ctx->client && !client_line_allowed(ctx->uid)))
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);

        if (!to_journal) {
                fprintf(stderr, "allocd: %s%s\n", level <= LOG_LEVEL_WARNING ? prefix[level] : "", msg);
                return;
        }
        char f[5][NAME_MAX_LEN + 32];
        struct iovec iov[7];
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
        if (ctx && ctx->client) { /* beside CLIENT_PID=, or alone where the client's pid is 0 */
                snprintf(f[4], sizeof(f[4]), "CLIENT_UID=%u", (unsigned)ctx->uid);
                iov[n++] = (struct iovec){f[4], strlen(f[4])};
        }
        sd_journal_sendv_with_location(file, line, func, iov, n);
}
