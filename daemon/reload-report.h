/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_RELOAD_REPORT_H
#define ALLOCD_RELOAD_REPORT_H

/*
 * What the last reload did, in words (reload-report.c): reload.c says what it does as it does it,
 * and has it described for the journal and STATUS= (reload_summary, reload.h).
 */

#include <stdbool.h>

#include "config.h"

enum reload_said {
        SAID_ADDED,        /* a new pool made */
        SAID_FAILED,       /* a new pool not made, and why */
        SAID_DRAINING,     /* taken out, holding regions */
        SAID_REMOVED,      /* taken out, holding none */
        SAID_BACK,         /* put back unchanged: serving again */
        SAID_WAITING,      /* put back changed: made once the draining pool empties */
        SAID_RULES,        /* a running pool's access rules or quota changed */
        SAID_RESTART_ONLY, /* a running pool's keys that wait for a restart changed */
};

/* A reload begins, now (report_when); refused: why the file was refused, or NULL. */
void report_begin(const char *refused);
/* Pool name's outcome (why: SAID_FAILED's reason); name NULL for SAID_RULES and SAID_RESTART_ONLY. */
void report_pool(enum reload_said what, const char *name, const char *why);
/* The limits changed from was to now, each said as "key old -> new". */
void report_limits(const struct limits *was, const struct limits *now);
/* The log level changed. */
void report_level(int was, int level);
/*
 * The outcome in words, with npending pools (their names in pending) still being made; full: with each
 * failed pool's reason and what changed besides pools (the journal's).
 */
void report_describe(char *buf, size_t size, bool full, unsigned npending, const char *pending);
/* STATUS='s part (reload_summary), what: report_describe's short words. */
void report_summarize(const char *what);
/* The last reload's local time, HH:MM:SS; "": no reload yet. */
const char *report_when(void);

#endif
