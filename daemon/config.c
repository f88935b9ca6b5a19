/* SPDX-License-Identifier: MIT */
/*
 * The configuration file (docs/configuration.md): INI, parsed by libinih.
 * Every key is checked as it is read, and the first problem stops the load
 * with "FILE:LINE: what is wrong; what to write instead".  Nothing is applied
 * here: the caller gets a whole struct config or an error.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config-parse.h"
#include "config-values.h"
#include "log.h"
#include "text.h"

#define MAX_POOLS 256
#define BOM "\xef\xbb\xbf"
/* What libinih's buffer holds of a line, less its CRLF and NUL (INI_MAX_LINE is 200 on Debian 12). */
#define LINE_MAX_CHARS (INI_MAX_LINE - 3)

static int vfail(struct parse *ps, int line, const char *fmt, va_list ap) {
        int n;

        if (ps->failed)
                return 0;
        ps->failed = true;
        n = snprintf(ps->err, ps->errsize, "%s:%d: ", ps->path, line);
        if (n >= 0 && (size_t)n < ps->errsize)
                vsnprintf(ps->err + n, ps->errsize - n, fmt, ap);
        return 0;
}

int conf_fail(struct parse *ps, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vfail(ps, ps->line, fmt, ap);
        va_end(ap);
        return 0;
}

int conf_fail_at(struct parse *ps, int line, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vfail(ps, line, fmt, ap);
        va_end(ap);
        return 0;
}

/* The NAME of the last header, a [pool NAME]. */
static const char *header_pool_name(const struct parse *ps) {
        const char *name = ps->header + 5;

        while (*name == ' ')
                name++;
        return name;
}

/* libinih calls the handler only for keys: a [pool NAME] with none would vanish without a word. */
static void check_empty_pool(struct parse *ps) {
        if (ps->pool_header && ps->current != ps->sections)
                conf_fail_at(ps, ps->section_line,
                             "[pool %s] has no keys; give it a kind and a size (or ranges), or remove it",
                             header_pool_name(ps));
}

/*
 * Pool names are stricter than region names: they head config sections and appear in log lines,
 * journal fields and allocctl's tables.
 */
static bool header_ok(struct parse *ps) {
        if (!ps->pool_header) {
                if (strcmp(ps->header, "daemon") != 0)
                        return conf_fail(ps, "unknown section [%s]; sections are [daemon] and [pool NAME]", ps->header);
                /* At the header, not at its first key: libinih never calls the handler for an empty one. */
                if (ps->daemon_line)
                        return conf_fail(ps, "[daemon] appears twice (first at line %d); merge them", ps->daemon_line);
                ps->daemon_line = ps->line;
                return true;
        }
        const char *name = header_pool_name(ps);
        size_t n = strlen(name);

        if (n > POOL_NAME_MAX_LEN)
                return conf_fail(ps, "[pool %s]: a name of %zu characters; a pool name is at most %d, shorten it", name,
                                 n, POOL_NAME_MAX_LEN);
        if (n == 0 || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:") != n)
                return conf_fail(ps, "[%s]: a pool name is 1-%d ASCII letters, digits, '-', '_', '.' or ':'",
                                 ps->header, POOL_NAME_MAX_LEN);
        for (size_t i = 0; i < ps->conf->npools; i++)
                if (!strcmp(ps->conf->pools[i].name, name))
                        return conf_fail(ps, "[pool %s] appears twice (first at line %d); merge them", name,
                                         ps->conf->pools[i].line);
        return true;
}

/*
 * libinih drops whatever follows a header's ']': "[pool a] kind = gpu" lost its key, and
 * "[pool a]]" was [pool a].  Only blanks and a ';' comment after a blank may follow.
 */
static bool header_alone(struct parse *ps, const char *line) {
        const char *end = line + 1 + strcspn(line + 1, "]\r\n"), *t = end + 1;

        if (*end != ']')
                return true; /* no ']': libinih's syntax error */
        while (*t == ' ' || *t == '\t')
                t++;
        if (!*t || *t == '\r' || *t == '\n' || (*t == ';' && t > end + 1))
                return true;
        return conf_fail(ps,
                         "[%s]: '%.*s' after the ']'; a section header stands alone on its line (a ; comment may "
                         "follow a blank), and each key on a line of its own",
                         ps->header, (int)strcspn(t, "\r\n"), t);
}

/*
 * A line longer than LINE_MAX_CHARS, or one that reaches past libinih's buffer (cut: the rest is
 * still to be read): the rest of it is skipped if what was read is, or ends in, a comment (';' or '#' first, or ';'
 * after a space); otherwise it is refused.
 */
static bool long_line(struct parse *ps, const char *s, size_t n, bool cut, int limit) {
        size_t i = strspn(s, " \t\r\v\f");
        bool comment = i < n && (s[i] == ';' || s[i] == '#');
        char key[32];
        int ch;

        for (i++; i < n && !comment; i++)
                comment = s[i] == ';' && isspace((unsigned char)s[i - 1]);
        if (comment) {
                while (cut && (ch = getc(ps->f)) != EOF && ch != '\n')
                        if (ch == '\0')
                                return conf_fail(ps, "a NUL byte; a configuration file is text");
                return true;
        }
        /* The key, as libinih will read it: before '=' or ':', without the spaces around it. */
        s += strspn(s, " \t");
        i = strcspn(s, "=:");
        snprintf(key, sizeof(key), "%.*s", s[i] ? (int)i : 0, s);
        for (char *e = key + strlen(key); e > key && isspace((unsigned char)e[-1]);)
                *--e = '\0';
        if (pool_key_is_list(key))
                return conf_fail(ps,
                                 "line longer than %d characters; split the list over several '%s =' lines, each "
                                 "adds to it",
                                 limit, key);
        return conf_fail(ps, "line longer than %d characters; shorten it (only a comment may be longer)", limit);
}

/*
 * fgets for libinih that counts lines, skips the rest of a comment too long for its buffer, refuses
 * any other long line and NUL bytes (fgets cannot say where a line with one ends, so the count would
 * drift), and reads each [section] header whole: libinih keeps only its first 49 characters, which
 * would make two long pool names one.
 */
static char *reader(char *str, int num, void *stream) {
        struct parse *ps = stream;
        size_t n = 0;
        char *s = str;
        int ch = 0;

        while (n + 1 < (size_t)num && (ch = getc(ps->f)) != EOF) {
                str[n++] = (char)ch;
                if (ch == '\n')
                        break;
        }
        /* getc's EOF is an error too (EIO): what was read is part of the file, never the whole of it. */
        if (ch == EOF && ferror(ps->f) && !ps->read_err)
                ps->read_err = errno ? errno : EIO;
        if (n == 0 || ps->failed || ps->read_err)
                return NULL;
        str[n] = '\0';
        ps->line++;
        if (memchr(str, '\0', n)) {
                conf_fail(ps, "a NUL byte; a configuration file is text");
                return NULL;
        }
        /* libinih skips a UTF-8 byte-order mark before the first line: so must the section count. */
        if (ps->line == 1 && !strncmp(s, BOM, 3))
                s += 3;
        bool cut = str[n - 1] != '\n' && (ch = getc(ps->f)) != EOF;
        if (cut)
                ungetc(ch, ps->f);
        /* The same limit whatever ends the line (LF, CRLF, the end of the file). */
        size_t len = n - (size_t)(s - str);
        if (len && s[len - 1] == '\n')
                len--;
        if (len && s[len - 1] == '\r')
                len--;
        /* A byte-order mark takes 3 bytes of the buffer from the first line. */
        int limit = LINE_MAX_CHARS - (int)(s - str);
        if ((cut || len > (size_t)limit) && !long_line(ps, s, len, cut, limit))
                return NULL;
        while (isspace((unsigned char)*s))
                s++;
        /* libinih splits a line at its first '=' or ':'; allocd.conf(5) has only '='. */
        if (*s != ';' && *s != '#' && *s != '[' && s[strcspn(s, "=:")] == ':') {
                conf_fail(ps, "'%.*s': write KEY = VALUE ('=', not ':', follows a key)", (int)strcspn(s, "\r\n"), s);
                return NULL;
        }
        if (*s == '[') {
                /* The text libinih takes for the section; a header with no ']' is its syntax error. */
                char next[sizeof(ps->header)];
                snprintf(next, sizeof(next), "%.*s", (int)strcspn(s + 1, "]\r\n"), s + 1);
                /* An empty [pool a] and [pool a] again: the same refusal as when the first had keys. */
                if (ps->pool_header && ps->current != ps->sections && !strncmp(next, "pool ", 5) &&
                    !strcmp(header_pool_name(ps), next + 5 + strspn(next + 5, " "))) {
                        conf_fail(ps, "[pool %s] appears twice (first at line %d); merge them", header_pool_name(ps),
                                  ps->section_line);
                        return NULL;
                }
                check_empty_pool(ps);
                memcpy(ps->header, next, sizeof(next));
                ps->pool_header = !strncmp(ps->header, "pool ", 5);
                ps->section_line = ps->line;
                ps->sections++;
                if (ps->failed || !header_ok(ps) || !header_alone(ps, s))
                        return NULL;
        }
        return str;
}

const struct limit_key limit_keys[] = {
        {"max_connections", "", offsetof(struct limits, max_connections)},
        {"max_connections_per_uid", "", offsetof(struct limits, max_connections_per_uid)},
        {"max_regions_per_connection", "", offsetof(struct limits, max_regions_per_connection)},
        {"max_waiters_per_connection", "", offsetof(struct limits, max_waiters_per_connection)},
        {"max_waiters_per_uid", "", offsetof(struct limits, max_waiters_per_uid)},
        {"max_names", "", offsetof(struct limits, max_names)},
        {"max_names_per_uid", "", offsetof(struct limits, max_names_per_uid)},
        {"max_persist_per_uid", "", offsetof(struct limits, max_persist_per_uid)},
        {"max_region_fds_per_uid", "", offsetof(struct limits, max_region_fds_per_uid)},
        {"wait_timeout", "ms", offsetof(struct limits, wait_timeout_ms)},
        {"hello_timeout", "ms", offsetof(struct limits, hello_timeout_ms)},
        {"spin", "us", offsetof(struct limits, spin_us)},
        {"reclaim_grace", "ms", offsetof(struct limits, reclaim_grace_ms)},
};
const size_t nlimit_keys = sizeof(limit_keys) / sizeof(limit_keys[0]);
/* A limit added to struct limits and not here could not be set, and would change unsaid at a reload. */
_Static_assert(sizeof(limit_keys) / sizeof(limit_keys[0]) * sizeof(uint32_t) == sizeof(struct limits),
               "every limit is in limit_keys");

/* Sets the limit k names to value, read in k's unit; conf_fail's value if it is no such value. */
static int limit_set(struct parse *ps, const struct limit_key *k, const char *value) {
        uint32_t *at = (uint32_t *)((char *)&ps->conf->limits + k->off);
        uint64_t v;
        int r;

        if (!*k->unit) {
                if (parse_uint(value, 1u << 24, &v) < 0 || v == 0)
                        return conf_fail(ps, "%s = %s: must be a whole number from 1 to %u", k->key, value, 1u << 24);
                *at = (uint32_t)v;
        } else if (!strcmp(k->unit, "us")) {
                /* Unlike the other durations, a bare number is no second here: 50 is more likely meant as 50us. */
                bool bare = *value && strspn(value, "0123456789") == strlen(value);
                if ((r = parse_duration_us(value, SPIN_MAX_US, at)) < 0)
                        return conf_fail(ps, "%s = %s: %s; use e.g. 50us or 1ms (at most %dms), or 0 to sleep at once",
                                         k->key, value,
                                         r == -ERANGE ? "too long"
                                         : bare       ? "a number without a unit (spin takes us or ms)"
                                                      : "not a duration",
                                         SPIN_MAX_US / 1000);
        } else {
                r = parse_duration_ms(value, at);
                if (r == -ERANGE)
                        return conf_fail(ps,
                                         "%s = %s: longer than 49 days, the longest allocd can wait; use e.g. 30s, "
                                         "500ms or 2min",
                                         k->key, value);
                if (r < 0)
                        return conf_fail(
                                ps, "%s = %s: not a duration; use e.g. 30s, 500ms or 2min (a bare number is seconds)",
                                k->key, value);
                if (at == &ps->conf->limits.hello_timeout_ms && *at == 0)
                        return conf_fail(ps,
                                         "%s = %s: a connection needs time to say Hello; use a duration above 0, "
                                         "e.g. 10s",
                                         k->key, value);
        }
        return 1;
}

static int limit_key(struct parse *ps, const char *key, const char *value) {
        int lv;

        for (size_t i = 0; i < nlimit_keys; i++)
                if (!strcmp(key, limit_keys[i].key))
                        return limit_set(ps, &limit_keys[i], value);
        if (!strcmp(key, "log_level")) {
                if ((lv = log_level_parse(value)) < 0)
                        return conf_fail(ps, "log_level = %s: use error, warning, notice, info or debug", value);
                ps->conf->log_level = lv;
        } else {
                char keys[512] = "";
                /* From the table: a limit added there is named here too. */
                for (size_t i = 0; i < nlimit_keys; i++)
                        snprintf(keys + strlen(keys), sizeof(keys) - strlen(keys), "%s, ", limit_keys[i].key);
                return conf_fail(ps, "unknown key '%s' in [daemon]; keys are %slog_level", key, keys);
        }
        return 1;
}

static int handler(void *user, const char *section, const char *key, const char *value) {
        struct parse *ps = user;
        struct config *conf = ps->conf;

        if (!*section)
                return conf_fail(ps, "'%s' is outside any section; put it under [daemon] or [pool NAME]", key);
        /* libinih's section is the reader's header, cut short: anything else, and never guess a pool. */
        if (!ps->sections || strncmp(section, ps->header, strlen(section)) != 0)
                return conf_fail(ps, "cannot tell which section '%s' belongs to; check the line above it", key);
        if (ps->current != ps->sections) {
                ps->current = ps->sections;
                ps->nseen = 0;
                if (ps->pool_header) {
                        if (conf->npools == MAX_POOLS)
                                return conf_fail_at(ps, ps->section_line, "[%s]: more than %d pools", ps->header,
                                                    MAX_POOLS);
                        struct pool_conf *n = realloc(conf->pools, (conf->npools + 1) * sizeof(*n));
                        if (n)
                                conf->pools = n;
                        struct pool_src *src = n ? realloc(ps->src, (conf->npools + 1) * sizeof(*src)) : NULL;
                        if (!src)
                                return conf_fail(ps, "out of memory");
                        ps->src = src;
                        memset(&src[conf->npools], 0, sizeof(*src));
                        pool_conf_defaults(&n[conf->npools]);
                        snprintf(n[conf->npools].name, sizeof(n->name), "%s", header_pool_name(ps));
                        n[conf->npools].line = ps->section_line;
                        conf->npools++;
                }
        }
        int i;
        for (i = 0; i < ps->nseen && strcmp(ps->seen[i], key); i++)
                ;
        /* A list key (ranges) may come again: each line adds to the list. */
        if (i < ps->nseen && !(ps->pool_header && pool_key_is_list(key)))
                return conf_fail(ps, "'%s' is set twice in [%s] (first at line %d); keep one", key, ps->header,
                                 ps->seen_line[i]);
        if (i == ps->nseen && ps->nseen < 32 && strlen(key) < sizeof(ps->seen[0])) {
                ps->seen_line[ps->nseen] = ps->line;
                strcpy(ps->seen[ps->nseen++], key);
        }
        bool failed = ps->failed;
        int r = ps->pool_header ? pool_key(ps, conf->npools - 1, key, value) : limit_key(ps, key, value);
        /*
         * libinih keeps a '#' after a value as part of it (only " ;" starts an inline comment), so
         * "kind = host  # shared" would be refused as an unknown kind "host  # shared": say why.
         */
        if (!failed && ps->failed && (strstr(value, " #") || strstr(value, "\t#"))) {
                size_t n = strlen(ps->err);
                snprintf(ps->err + n, ps->errsize - n,
                         " ('#' after a value is part of it; a comment after a value starts with ';')");
        }
        return r;
}

static void limits_default(struct config *conf) {
        conf->limits = (struct limits){
                .max_connections = 1024,
                .max_regions_per_connection = 65536,
                .max_waiters_per_connection = 64,
                .max_waiters_per_uid = 256,
                .max_names = 65536,
                .max_connections_per_uid = 256,
                .max_names_per_uid = 16384,
                .max_persist_per_uid = 4096,
                .max_region_fds_per_uid = 1024,
                .wait_timeout_ms = 30000,
                .hello_timeout_ms = 10000,
                .spin_us = SPIN_DEFAULT_US,
                .reclaim_grace_ms = RECLAIM_GRACE_DEFAULT_MS,
        };
        conf->log_level = LOG_LEVEL_INFO;
}

int config_load(struct config *conf, const char *path, char *err, size_t errsize) {
        struct parse ps = {.conf = conf, .path = path, .err = err, .errsize = errsize};
        int r;

        memset(conf, 0, sizeof(*conf));
        limits_default(conf);
        /* Not blocking on a FIFO, and nothing but a regular file: a reload must never hang the loop. */
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) {
                r = -errno;
                snprintf(err, errsize, "%s: %s%s", path, strerror(-r),
                         r == -ENOENT
                                 ? "; check the path (--config FILE), or run with --no-config for the built-in pools"
                         : r == -EACCES ? "; make it readable by the user allocd runs as"
                                        : "");
                if (fd >= 0)
                        close(fd);
                return r;
        }
        if (!S_ISREG(st.st_mode)) {
                snprintf(err, errsize, "%s: not a regular file; --config takes the configuration file itself", path);
                close(fd);
                return -EINVAL;
        }
        if (!(ps.f = fdopen(fd, "r"))) {
                r = -errno;
                snprintf(err, errsize, "%s: %s", path, strerror(errno));
                close(fd);
                return r;
        }
        ini_allow_multiline = false;
        ini_stop_on_first_error = true;
        errno = 0;
        r = ini_parse_stream(reader, &ps, handler, &ps);
        fclose(ps.f);
        if (ps.read_err && !ps.failed) {
                ps.failed = true;
                snprintf(err, errsize, "%s: reading it failed: %s (after %d lines); nothing of it was used", path,
                         strerror(ps.read_err), ps.line);
        }
        if (r == 0 && !ps.failed)
                check_empty_pool(&ps);
        if (r > 0 && !ps.failed) {
                ps.line = r;
                conf_fail(&ps, "syntax error: expected [section], key = value, or a comment starting with # or ;");
        } else if (r < 0 && !ps.failed) {
                conf_fail(&ps, "out of memory while reading the file");
        }
        for (size_t i = 0; i < conf->npools && !ps.failed; i++) {
                check_pool(&ps, i);
                if (conf->pools[i].kind == POOL_PINNED)
                        conf->pools[i].lock = true; /* always, so a reload sees no change */
        }
        /* allocd, --check-config and SIGHUP alike: an emptied or truncated file is almost always a mistake. */
        if (!ps.failed && conf->npools == 0) {
                ps.failed = true;
                snprintf(err, errsize,
                         "%s: configures no pools; add a [pool NAME] section (allocd.conf(5)), or run allocd with "
                         "--no-config for the built-in pools",
                         path);
        }
        for (size_t i = 0; i < conf->npools; i++)
                pool_src_clear(&ps.src[i]);
        free(ps.src);
        if (ps.failed) {
                /* The message quotes the file: a CR or an escape sequence in it must not reach a terminal. */
                char *quoted = malloc(errsize);
                if (quoted) {
                        text_escape_controls(err, quoted, errsize);
                        memcpy(err, quoted, errsize);
                        free(quoted);
                }
                config_clear(conf);
                return -EINVAL;
        }
        return 0;
}

int config_default(struct config *conf) {
        memset(conf, 0, sizeof(*conf));
        limits_default(conf);
        conf->pools = calloc(2, sizeof(*conf->pools));
        if (!conf->pools)
                return -ENOMEM;
        conf->npools = 2;
        pool_conf_defaults(&conf->pools[0]);
        strcpy(conf->pools[0].name, "host");
        conf->pools[0].kind = POOL_HOST;
        conf->pools[0].has_kind = true;
        conf->pools[0].size = 256u << 20;
        pool_conf_defaults(&conf->pools[1]);
        strcpy(conf->pools[1].name, "fpga0");
        conf->pools[1].kind = POOL_FPGA;
        conf->pools[1].has_kind = true;
        conf->pools[1].ranges = malloc(sizeof(struct span));
        if (!conf->pools[1].ranges) {
                config_clear(conf);
                return -ENOMEM;
        }
        /* 4 GiB of device address space at 4 GiB, as OPAE's examples lay out a card's memory. */
        conf->pools[1].ranges[0] = (struct span){.base = 1ull << 32, .size = 1ull << 32};
        conf->pools[1].nranges = 1;
        return 0;
}

void config_clear(struct config *conf) {
        for (size_t i = 0; i < conf->npools; i++)
                free(conf->pools[i].ranges);
        free(conf->pools);
        conf->pools = NULL;
        conf->npools = 0;
}
