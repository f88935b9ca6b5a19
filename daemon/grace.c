/* SPDX-License-Identifier: MIT */
/*
 * What becomes of the connections a restored state brought back as
 * placeholders (issue 18) while no client reclaims them.
 *
 * A client reconnects at its next call, which may be long in coming: a job
 * that allocated at its start and then only uses its memory makes none.  Its
 * regions must stay while it lives, since it still maps them, and go when it
 * ends, as its hang-up would have released them.  So each placeholder's
 * process is watched through a pidfd (readable once the process has ended):
 * one that ended while allocd was down is released at once, one that ends
 * later when it does.  The pid is the one the connection's peer credentials
 * gave, and the state keeps with it when that process started (proc.c): a pid
 * another process took while allocd was down (a long standby gives time to
 * cycle pids) shows another start, and its placeholder goes as that of a
 * process ended.  The start is read after the pidfd is open and trusted only
 * if the pidfd then says its process still runs: the pid cannot change hands
 * in between, so the start read is the watched process's.  A state of an
 * older allocd has no start: such a pid is trusted, and a reused one keeps the
 * placeholder until its new process ends (held too long, never too short); the
 * start of the process watched is kept then, so that only the first restart
 * after an upgrade has to trust the pid, not every later one.
 *
 * Only where the process cannot be watched (no pid: a peer in a pid namespace
 * allocd cannot see; or pidfd_open failed) does reclaim_grace decide: such a
 * placeholder is released reclaim_grace after the state was restored.  One
 * timer serves them all, since every placeholder comes from the one restore:
 * the clock starts when grace_arm first finds placeholders, and a reload that
 * changes reclaim_grace moves the deadline, not the start.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <unistd.h>

#include "grace.h"
#include "log.h"
#include "proc.h"

/* The process of one placeholder, watched until it ends or the placeholder is reclaimed. */
struct watch {
        uv_poll_t poll;
        int fd; /* the pidfd */
        uint64_t serial;
        struct watch *next;
};

static uv_loop_t *loop;
static struct core *core;
static void (*changed)(void);
static uv_timer_t timer;
static uint64_t since; /* uv_now() when placeholders were first seen; 0: not yet */
static struct watch *watches;

static void released(const struct absent_info *a, const char *why) {
        logx(LOG_LEVEL_NOTICE, CLIENT_CTX(a),
             "connection %" PRIu64 " (" CLIENT_FMT " '%s') %s: released its %u %s (%" PRIu64 " bytes it created)",
             a->serial, CLIENT_ARGS(a), a->name, why, a->refs, plural(a->refs, "reference", "references"), a->bytes);
}

static void expire(uv_timer_t *t) {
        struct absent_info a;
        char why[128];

        (void)t;
        snprintf(why, sizeof(why), "was not reclaimed within reclaim_grace = %ums after the restart",
                 core_limits(core)->reclaim_grace_ms);
        while (core_absent_release(core, &a))
                released(&a, why);
        changed();
}

static void watch_free(uv_handle_t *h) {
        struct watch *w = h->data;

        close(w->fd);
        free(w);
}

/* Takes w off the list and closes it. */
static void unwatch(struct watch *w) {
        for (struct watch **p = &watches; *p; p = &(*p)->next)
                if (*p == w) {
                        *p = w->next;
                        break;
                }
        uv_poll_stop(&w->poll);
        uv_close((uv_handle_t *)&w->poll, watch_free);
}

static void ended(uv_poll_t *p, int status, int events) {
        struct watch *w = p->data;
        struct absent_info a;

        (void)events;
        if (status < 0) /* not an end: keep it (too long rather than too short) until reclaimed or disconnected */
                logx(LOG_LEVEL_WARNING, NULL,
                     "connection %" PRIu64 ": watching its process failed (%s); its regions stay until it reconnects "
                     "or allocctl disconnect serial:%" PRIu64 " releases them",
                     w->serial, uv_strerror(status), w->serial);
        else if (core_absent_release_serial(core, w->serial, &a)) {
                released(&a, "was not reclaimed before its process ended");
                changed();
        }
        unwatch(w);
}

/*
 * Said, since reclaim_grace then releases regions a live process maps, and the line saying so would
 * otherwise be the first word of it.  Said again at each reload, which tries again.
 */
static void unwatched(uint64_t serial, pid_t pid, const char *why) {
        logx(LOG_LEVEL_WARNING, NULL,
             "connection %" PRIu64 " (client pid %d): its process cannot be watched (%s); its regions go at "
             "reclaim_grace = %ums after the restart unless it reconnects first",
             serial, (int)pid, why, core_limits(core)->reclaim_grace_ms);
}

/*
 * Why the process of pidfd fd, pid's now, is not the one that started at *start, or NULL if it is: it has
 * ended, or another process has the pid.  A start unread (a pid in another namespace, /proc unmounted) or a
 * poll that fails trusts it.  *start 0 (a state of an older allocd) trusts it too, and becomes the start of
 * the process the pidfd holds, so that the next restart can tell a reused pid: were the pid reused already,
 * that is the process the placeholder stays for anyway.
 */
static const char *gone(int fd, pid_t pid, uint64_t *start) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        uint64_t now = proc_stat(pid, NULL, 0);
        int r = poll(&p, 1, 0);

        if (r > 0)
                return "was not reclaimed before its process ended";
        if (r < 0)
                return NULL;
        if (!*start) {
                *start = now;
                return NULL;
        }
        return now && now != *start ? "was not reclaimed: its process ended while allocd was down (its pid is "
                                      "another process's now)"
                                    : NULL;
}

/* Watches the process of placeholder serial; a process that is gone already releases it now. */
static void watch(uint64_t serial, pid_t pid, uint64_t start) {
        struct absent_info a;
        struct watch *w;
        const char *why_gone;
        char why[96];
        int fd;

        if (pid <= 0) {
                unwatched(serial, pid, "no pid: its peer is in a pid namespace allocd cannot see");
                return;
        }
        if ((fd = pidfd_open(pid, 0)) < 0) {
                if (errno != ESRCH) { /* EMFILE, ENOMEM: reclaim_grace decides */
                        snprintf(why, sizeof(why), "pidfd_open: %s", strerror(errno));
                        unwatched(serial, pid, why);
                } else if (core_absent_release_serial(core, serial, &a)) {
                        released(&a, "was not reclaimed: its process ended while allocd was down");
                        changed();
                }
                return;
        }
        if ((why_gone = gone(fd, pid, &start))) {
                close(fd);
                if (core_absent_release_serial(core, serial, &a)) {
                        released(&a, why_gone);
                        changed();
                }
                return;
        }
        if (!(w = calloc(1, sizeof(*w))) || uv_poll_init(loop, &w->poll, fd) < 0) {
                unwatched(serial, pid, w ? "polling its pidfd failed" : "out of memory");
                free(w);
                close(fd);
                return;
        }
        w->fd = fd;
        w->serial = serial;
        w->poll.data = w;
        w->next = watches;
        watches = w;
        uv_poll_start(&w->poll, UV_READABLE, ended);
        core_absent_watched(core, serial, start);
}

static void first_turn(uv_timer_t *t) {
        (void)t;
        grace_arm();
}

void grace_init(uv_loop_t *l, struct core *c, void (*changed_cb)(void)) {
        loop = l;
        core = c;
        changed = changed_cb;
        since = 0;
        watches = NULL;
        uv_timer_init(loop, &timer);
        /*
         * Not now: a placeholder whose process is gone is released at once, and the state restored is
         * adopted only after this (restart_begin), which would keep it without that release: the next
         * restart brought it back, holding a range another region had since taken, and refused the
         * state whole.  Timers run first in the loop's first turn, before any client is served.
         */
        uv_timer_start(&timer, first_turn, 0, 0);
}

void grace_arm(void) {
        uint64_t now, due, serial, start;
        pid_t pid;

        if (!loop || !core_nabsent(core))
                return;
        /* From the last: releasing placeholder i moves the last one, seen already, into its place. */
        for (size_t i = core_nabsent(core); i-- > 0;)
                if (core_absent_at(core, i, &serial, &pid, &start))
                        watch(serial, pid, start);
        /* The loop's clock is that of its last turn, or of its start before the pools and the restore. */
        uv_update_time(loop);
        now = uv_now(loop);
        if (!since)
                since = now ? now : 1;
        due = since + core_limits(core)->reclaim_grace_ms;
        uv_timer_start(&timer, expire, due > now ? due - now : 0, 0);
}

void grace_reclaimed(uint64_t serial) {
        for (struct watch *w = watches; w; w = w->next)
                if (w->serial == serial) {
                        unwatch(w);
                        return;
                }
}

void grace_sweep(void) {
        for (struct watch *w = watches, *next; w; w = next) {
                next = w->next;
                if (!core_absent_has(core, w->serial))
                        unwatch(w);
        }
}

void grace_close(void) {
        uv_timer_stop(&timer);
        uv_close((uv_handle_t *)&timer, NULL);
        while (watches)
                unwatch(watches);
        loop = NULL;
}
