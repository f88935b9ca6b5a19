/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_LOG_H
#define ALLOCD_LOG_H

/* Logging (log.c): stderr, or the journal with fields when systemd started us. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum { LOG_LEVEL_ERR = 3, LOG_LEVEL_WARNING = 4, LOG_LEVEL_NOTICE = 5, LOG_LEVEL_INFO = 6, LOG_LEVEL_DEBUG = 7 };

struct log_ctx {
        const char *pool;
        uint64_t region;
        pid_t pid;
        uid_t uid;   /* with client */
        bool client; /* a line a client made allocd write (pid is 0 where its pid namespace is not allocd's): limited */
};

void log_init(void);
int log_set_level(int level); /* returns the level it replaces */
const char *log_level_name(int level);
int log_level_parse(const char *s);
void log_at(const char *file, const char *line, const char *func, int level, const struct log_ctx *ctx, const char *fmt,
            ...) __attribute__((format(printf, 6, 7)));
/* A macro so that the journal's CODE_FILE=, CODE_LINE= and CODE_FUNC= are the caller's, not log.c's. */
#define LOG_STR_(x) #x
#define LOG_STR(x) LOG_STR_(x)
#define logx(level, ctx, ...)                                                                                          \
        log_at("CODE_FILE=" __FILE__, "CODE_LINE=" LOG_STR(__LINE__), __func__, level, ctx, __VA_ARGS__)
/*
 * A line about a client names it so: CLIENT_FMT in the format where the client goes, CLIENT_ARGS(cl)
 * in the arguments, CLIENT_CTX(cl) as the context (any cl with pid and uid: struct client, its placeholder).
 */
#define CLIENT_FMT "client pid %d uid %u"
#define CLIENT_ARGS(cl) (int)(cl)->pid, (unsigned)(cl)->uid
#define CLIENT_CTX(cl) (&(struct log_ctx){.client = true, .uid = (cl)->uid, .pid = (cl)->pid})
#define log_err(...) logx(LOG_LEVEL_ERR, NULL, __VA_ARGS__)
#define log_warn(...) logx(LOG_LEVEL_WARNING, NULL, __VA_ARGS__)
#define log_info(...) logx(LOG_LEVEL_INFO, NULL, __VA_ARGS__)
#define log_debug(...) logx(LOG_LEVEL_DEBUG, NULL, __VA_ARGS__)

/* A count's noun in a line: "1 pool", "2 pools". */
static inline const char *plural(uint64_t n, const char *one, const char *more) {
        return n == 1 ? one : more;
}

#endif
