/* SPDX-License-Identifier: MIT */
/*
 * The grace time of a restart (issue 18): a placeholder that no client has
 * reclaimed reclaim_grace after the state was restored is released, as the
 * hang-up of its connection would have released it, and the log says what
 * went.  One timer serves them all, since every placeholder comes from the
 * one restore: the clock starts when grace_arm first finds placeholders, and
 * a reload that changes reclaim_grace moves the deadline, not the start.
 */
#include <inttypes.h>

#include "grace.h"
#include "log.h"

static uv_loop_t *loop;
static struct core *core;
static void (*changed)(void);
static uv_timer_t timer;
static uint64_t since; /* uv_now() when placeholders were first seen; 0: not yet */

static void expire(uv_timer_t *t) {
        struct absent_info a;

        (void)t;
        while (core_absent_release(core, &a))
                logx(LOG_LEVEL_NOTICE, CLIENT_CTX(&a),
                     "connection %" PRIu64 " (" CLIENT_FMT " '%s') was not reclaimed within reclaim_grace = %ums "
                     "after the restart: released its %u %s (%" PRIu64 " bytes it created)",
                     a.serial, CLIENT_ARGS(&a), a.name, core_limits(core)->reclaim_grace_ms, a.refs,
                     plural(a.refs, "reference", "references"), a.bytes);
        changed();
}

void grace_init(uv_loop_t *l, struct core *c, void (*changed_cb)(void)) {
        loop = l;
        core = c;
        changed = changed_cb;
        since = 0;
        uv_timer_init(loop, &timer);
        grace_arm();
}

void grace_arm(void) {
        uint64_t now, due;

        if (!loop || !core_nabsent(core))
                return;
        /* The loop's clock is that of its last turn, or of its start before the pools and the restore. */
        uv_update_time(loop);
        now = uv_now(loop);
        if (!since)
                since = now ? now : 1;
        due = since + core_limits(core)->reclaim_grace_ms;
        uv_timer_start(&timer, expire, due > now ? due - now : 0, 0);
}

void grace_close(void) {
        uv_timer_stop(&timer);
        uv_close((uv_handle_t *)&timer, NULL);
        loop = NULL;
}
