/* SPDX-License-Identifier: MIT */
/*
 * Staying awake after a request (allocd.conf's spin, docs/PERFORMANCE.md).
 *
 * A client's next request often comes within microseconds of its reply (a
 * free after an alloc, the next of a burst), and a loop that slept in
 * epoll_wait meanwhile costs a wake-up: tens of microseconds on an idle CPU,
 * more on a VM whose vCPU the host halted.  While this idle handle is active
 * libuv polls with a timeout of 0, so the loop keeps turning, and each turn's
 * epoll_wait sees a request the moment it arrives.  Each request served
 * starts the window again; spin after the last one the handle stops, and the
 * loop sleeps as before.  So an idle allocd spends nothing, and a busy one
 * at most spin of CPU per burst of requests.  Each turn yields the CPU, so
 * that a client on the same CPU, whose reply this loop just sent, runs.
 */
#include <sched.h>

#include "awake.h"

static uv_idle_t idle;
static uint64_t until; /* uv_hrtime() at which the loop may sleep again */

static void idle_cb(uv_idle_t *h) {
        if (uv_hrtime() >= until)
                uv_idle_stop(h);
        else
                sched_yield();
}

void awake_init(uv_loop_t *loop) {
        uv_idle_init(loop, &idle);
}

void awake_served(uint32_t spin_us) {
        if (!spin_us)
                return;
        until = uv_hrtime() + (uint64_t)spin_us * 1000;
        if (!uv_is_active((uv_handle_t *)&idle))
                uv_idle_start(&idle, idle_cb);
}

void awake_close(void) {
        uv_idle_stop(&idle);
        uv_close((uv_handle_t *)&idle, NULL);
}
