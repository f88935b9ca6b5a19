/* SPDX-License-Identifier: MIT */
/*
 * The configuration file (docs/configuration.md): INI, parsed by libinih.
 * Every key is checked as it is read, and the first problem stops the load
 * with "FILE:LINE: what is wrong; what to write instead".  Nothing is applied
 * here: the caller gets a whole struct config or an error.
 */
#include <errno.h>
#include <ctype.h>
#include <ini.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config-values.h"
#include "config.h"
#include "log.h"

#define MAX_POOLS 256
#define MAX_RANGES 64

struct parse {
        struct config *conf;
        const char *path;
        FILE *f;
        int line;         /* the line the reader handed out last */
        int section_line; /* the last [section] header */
        int sections;     /* headers read so far */
        int current;      /* the header the handler saw last */
        bool long_line;
        char *err;
        size_t errsize;
        bool failed;
        /* keys seen in the current section, to refuse repeats */
        char section[NAME_MAX_LEN + 16];
        char seen[32][32]; /* longer than any key */
        int nseen;
        bool pool_header; /* the last header is a [pool NAME]: reader's, to find pools without keys */
        char pool_header_name[64];
        int daemon_line; /* where [daemon] started, 0 before it */
};

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

static int fail(struct parse *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct parse *ps, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vfail(ps, ps->line, fmt, ap);
        va_end(ap);
        return 0;
}

static int fail_at(struct parse *ps, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_at(struct parse *ps, int line, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vfail(ps, line, fmt, ap);
        va_end(ap);
        return 0;
}

/* libinih calls the handler only for keys: a [pool NAME] with none would vanish without a word. */
static void check_empty_pool(struct parse *ps) {
        if (ps->pool_header && ps->current != ps->sections)
                fail_at(ps, ps->section_line,
                        "[pool %s] has no keys; give it a kind and a size (or ranges), or remove it",
                        ps->pool_header_name);
}

/*
 * fgets for libinih that counts lines, notices lines too long for its buffer, and refuses NUL
 * bytes (fgets cannot say where a line with one ends, so the count would drift).
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
        if (n == 0)
                return NULL;
        str[n] = '\0';
        ps->line++;
        if (memchr(str, '\0', n)) {
                fail(ps, "a NUL byte; a configuration file is text");
                return NULL;
        }
        if (str[n - 1] != '\n' && !feof(ps->f) && !ps->long_line) {
                ps->long_line = true;
                fail(ps, "line longer than %d characters; split the value or shorten it", num - 3);
                return NULL;
        }
        /* libinih skips a UTF-8 byte-order mark before the first line: so must the section count. */
        if (ps->line == 1 && !strncmp(s, "\xef\xbb\xbf", 3))
                s += 3;
        while (isspace((unsigned char)*s))
                s++;
        if (*s == '[') {
                check_empty_pool(ps);
                ps->pool_header = !strncmp(s, "[pool ", 6);
                /* Only a [pool header is read past its first bytes: a shorter line may end there. */
                if (ps->pool_header)
                        snprintf(ps->pool_header_name, sizeof(ps->pool_header_name), "%.*s", (int)strcspn(s + 6, "]\n"),
                                 s + 6);
                ps->section_line = ps->line;
                ps->sections++;
        }
        return str;
}

static int parse_ranges(struct parse *ps, struct pool_conf *pc, const char *value) {
        char buf[1024], *save = NULL, *tok;

        if (strlen(value) >= sizeof(buf))
                return fail(ps, "ranges: too long");
        strcpy(buf, value);
        for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                char *plus, *b, *e;
                struct span sp;

                while (isspace((unsigned char)*tok))
                        tok++;
                for (e = tok + strlen(tok); e > tok && isspace((unsigned char)e[-1]);)
                        *--e = '\0';
                plus = strchr(tok, '+');
                if (!plus)
                        return fail(ps, "ranges: '%s' is not BASE+SIZE (e.g. 0x100000000+4G)", tok);
                *plus = '\0';
                b = tok;
                for (e = b + strlen(b); e > b && isspace((unsigned char)e[-1]);)
                        *--e = '\0';
                e = plus + 1;
                while (isspace((unsigned char)*e))
                        e++;
                if (parse_uint(b, UINT64_MAX, &sp.base) < 0)
                        return fail(ps, "ranges: base '%s' is not a number (decimal or 0x hex)", b);
                if (parse_size(e, &sp.size) < 0 || sp.size == 0)
                        return fail(ps, "ranges: size '%s' is not a size above zero (e.g. 4096, 64M, 0x1000)", e);
                if (sp.base > UINT64_MAX - sp.size)
                        return fail(ps, "ranges: %s+%s passes the end of the 64-bit address space", b, e);
                if (pc->nranges == MAX_RANGES)
                        return fail(ps, "ranges: more than %d ranges", MAX_RANGES);
                struct span *n = realloc(pc->ranges, (pc->nranges + 1) * sizeof(*n));
                if (!n)
                        return fail(ps, "out of memory");
                pc->ranges = n;
                pc->ranges[pc->nranges++] = sp;
        }
        if (pc->nranges == 0)
                return fail(ps, "ranges: empty; write BASE+SIZE, e.g. ranges = 0x100000000+4G");
        return 1;
}

static void pool_conf_defaults(struct pool_conf *pc) {
        memset(pc, 0, sizeof(*pc));
        pc->numa_node = -1;
        pc->device = -1;
        pc->owner = geteuid();
        pc->group = getegid();
        pc->mode = 0660;
        pc->register_flags = REGISTER_PORTABLE | REGISTER_DEVICEMAP;
}

#define KIND_BIT(k) (1u << (k))
#define ALL_KINDS (KIND_BIT(POOL_HOST) | KIND_BIT(POOL_FPGA) | KIND_BIT(POOL_PINNED) | KIND_BIT(POOL_GPU))
#define MEMORY_KINDS (KIND_BIT(POOL_HOST) | KIND_BIT(POOL_PINNED) | KIND_BIT(POOL_GPU))

enum {
        KEY_KIND,
        KEY_SIZE,
        KEY_QUANTUM,
        KEY_HUGEPAGES,
        KEY_LOCK,
        KEY_NUMA_NODE,
        KEY_RANGES,
        KEY_OWNER,
        KEY_GROUP,
        KEY_MODE,
        KEY_QUOTA,
        KEY_BACKEND,
        KEY_FLAGS,
        KEY_DEVICE,
};

/* Every pool key and the kinds it belongs to; check_pool refuses a key set for another kind. */
static const struct {
        const char *name;
        unsigned kinds;
} pool_keys[] = {
        [KEY_KIND] = {"kind", ALL_KINDS},
        [KEY_SIZE] = {"size", MEMORY_KINDS},
        [KEY_QUANTUM] = {"quantum", ALL_KINDS},
        [KEY_HUGEPAGES] = {"hugepages", KIND_BIT(POOL_HOST) | KIND_BIT(POOL_PINNED)},
        [KEY_LOCK] = {"lock", KIND_BIT(POOL_HOST) | KIND_BIT(POOL_PINNED)},
        [KEY_NUMA_NODE] = {"numa_node", KIND_BIT(POOL_HOST) | KIND_BIT(POOL_PINNED)},
        [KEY_RANGES] = {"ranges", KIND_BIT(POOL_FPGA)},
        [KEY_OWNER] = {"owner", ALL_KINDS},
        [KEY_GROUP] = {"group", ALL_KINDS},
        [KEY_MODE] = {"mode", ALL_KINDS},
        [KEY_QUOTA] = {"quota_per_uid", ALL_KINDS},
        [KEY_BACKEND] = {"backend", KIND_BIT(POOL_PINNED)},
        [KEY_FLAGS] = {"flags", KIND_BIT(POOL_PINNED)},
        [KEY_DEVICE] = {"device", KIND_BIT(POOL_GPU)},
};
#define NPOOL_KEYS (sizeof(pool_keys) / sizeof(pool_keys[0]))

static const char *const kind_names[] = {
        [POOL_HOST] = "host",
        [POOL_FPGA] = "fpga",
        [POOL_PINNED] = "pinned",
        [POOL_GPU] = "gpu",
};

const char *pool_kind_name(enum pool_kind k) {
        return (unsigned)k < sizeof(kind_names) / sizeof(kind_names[0]) ? kind_names[k] : "?";
}

/* "a, b, c": the keys a kind takes, for messages. */
static void keys_of(unsigned kinds, char *buf, size_t size) {
        size_t n = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < NPOOL_KEYS && n < size; i++)
                if (pool_keys[i].kinds & kinds)
                        n += (size_t)snprintf(buf + n, size - n, "%s%s", n ? ", " : "", pool_keys[i].name);
}

/* "portable, devicemap": cuMemHostRegister's flags for a pinned pool's clients. */
static int parse_register_flags(struct parse *ps, struct pool_conf *pc, const char *value) {
        char buf[256], *save = NULL, *tok;

        if (strlen(value) >= sizeof(buf))
                return fail(ps, "flags: too long");
        strcpy(buf, value);
        pc->register_flags = 0;
        for (tok = strtok_r(buf, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
                if (!strcmp(tok, "portable"))
                        pc->register_flags |= REGISTER_PORTABLE;
                else if (!strcmp(tok, "devicemap"))
                        pc->register_flags |= REGISTER_DEVICEMAP;
                else if (!strcmp(tok, "none"))
                        ;
                else if (!strcmp(tok, "writecombined"))
                        return fail(ps, "flags = writecombined: write-combined memory comes only from cuMemHostAlloc, "
                                        "which cannot be shared between processes; allocate it in the process that "
                                        "uses it with cuMemHostAlloc(CU_MEMHOSTALLOC_WRITECOMBINED) and drop it here");
                else
                        return fail(ps, "flags: unknown flag '%s'; use portable, devicemap or none", tok);
        }
        return 1;
}

static int pool_key(struct parse *ps, struct pool_conf *pc, const char *key, const char *value) {
        char list[256];
        size_t k;
        uint64_t v;
        int b;

        for (k = 0; k < NPOOL_KEYS && strcmp(key, pool_keys[k].name); k++)
                ;
        if (k == NPOOL_KEYS) {
                keys_of(ALL_KINDS, list, sizeof(list));
                return fail(ps, "unknown key '%s' in [%s]; pool keys are %s", key, ps->section, list);
        }
        pc->keys |= 1u << k;
        switch (k) {
        case KEY_KIND:
                for (b = 0; b < (int)(sizeof(kind_names) / sizeof(kind_names[0])); b++)
                        if (!strcmp(value, kind_names[b]))
                                break;
                if (b == (int)(sizeof(kind_names) / sizeof(kind_names[0])))
                        return fail(ps, "kind = %s: unknown; use host, pinned, gpu or fpga", value);
                pc->kind = (enum pool_kind)b;
                pc->has_kind = true;
                break;
        case KEY_SIZE:
                if (parse_size(value, &pc->size) < 0 || pc->size == 0)
                        return fail(ps, "size = %s: not a size above zero (e.g. 64M, 2G)", value);
                break;
        case KEY_QUANTUM:
                if (parse_size(value, &v) < 0 || v == 0 || (v & (v - 1)))
                        return fail(ps, "quantum = %s: not a power of two (e.g. 4K)", value);
                pc->quantum = v;
                break;
        case KEY_HUGEPAGES:
                if (!strcmp(value, "no") || !strcmp(value, "0"))
                        pc->hugepage = 0;
                else if (parse_size(value, &v) == 0 && (v == 2u << 20 || v == 1u << 30))
                        pc->hugepage = v;
                else
                        return fail(ps, "hugepages = %s: use 2M, 1G or no", value);
                break;
        case KEY_LOCK:
                if ((b = parse_bool(value)) < 0)
                        return fail(ps, "lock = %s: use yes or no", value);
                pc->lock = b;
                break;
        case KEY_NUMA_NODE:
                if (parse_uint(value, 1023, &v) < 0)
                        return fail(ps, "numa_node = %s: not a node number (0-1023)", value);
                pc->numa_node = (int)v;
                break;
        case KEY_RANGES:
                return parse_ranges(ps, pc, value);
        case KEY_OWNER:
                if (parse_user(value, &pc->owner) < 0)
                        return fail(ps, "owner = %s: no such user (a name or a numeric uid)", value);
                break;
        case KEY_GROUP:
                if (parse_group(value, &pc->group) < 0)
                        return fail(ps, "group = %s: no such group (a name or a numeric gid)", value);
                break;
        case KEY_MODE: {
                char *end;
                errno = 0;
                unsigned long m = strtoul(value, &end, 8);
                if (errno || *end || !*value || m > 0777 || (m & 0111))
                        return fail(ps,
                                    "mode = %s: an octal mode of read (attach) and write (allocate) bits, "
                                    "e.g. 0660; execute bits mean nothing here",
                                    value);
                pc->mode = (mode_t)m;
                break;
        }
        case KEY_QUOTA:
                if (parse_size(value, &pc->quota_per_uid) < 0)
                        return fail(ps, "quota_per_uid = %s: not a size (e.g. 1G; 0 for none)", value);
                break;
        case KEY_BACKEND:
                if (!strcmp(value, "auto"))
                        pc->backend = BACKEND_AUTO;
                else if (!strcmp(value, "memfd"))
                        pc->backend = BACKEND_MEMFD;
                else if (!strcmp(value, "vmm"))
                        pc->backend = BACKEND_VMM;
                else
                        return fail(ps,
                                    "backend = %s: use auto, memfd (cuMemHostRegister in each client) or vmm "
                                    "(cuMemCreate on a host NUMA node, CUDA 12.2 or later)",
                                    value);
                break;
        case KEY_FLAGS:
                return parse_register_flags(ps, pc, value);
        case KEY_DEVICE:
                if (parse_uint(value, 1023, &v) < 0)
                        return fail(ps, "device = %s: not a CUDA device ordinal (0, 1, ...)", value);
                pc->device = (int)v;
                break;
        }
        return 1;
}

static int limit_key(struct parse *ps, const char *key, const char *value) {
        static const struct {
                const char *key;
                size_t off;
        } keys[] = {
                {"max_connections", offsetof(struct limits, max_connections)},
                {"max_regions_per_connection", offsetof(struct limits, max_regions_per_connection)},
                {"max_waiters_per_connection", offsetof(struct limits, max_waiters_per_connection)},
                {"max_names", offsetof(struct limits, max_names)},
                {"max_connections_per_uid", offsetof(struct limits, max_connections_per_uid)},
                {"max_names_per_uid", offsetof(struct limits, max_names_per_uid)},
                {"max_persist_per_uid", offsetof(struct limits, max_persist_per_uid)},
        };
        struct limits *l = &ps->conf->limits;
        uint64_t v;
        int lv;

        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
                if (strcmp(key, keys[i].key))
                        continue;
                if (parse_uint(value, 1u << 24, &v) < 0 || v == 0)
                        return fail(ps, "%s = %s: a number from 1 to %u", key, value, 1u << 24);
                *(uint32_t *)((char *)l + keys[i].off) = (uint32_t)v;
                return 1;
        }
        if (!strcmp(key, "wait_timeout") || !strcmp(key, "hello_timeout")) {
                uint32_t *ms = !strcmp(key, "wait_timeout") ? &l->wait_timeout_ms : &l->hello_timeout_ms;
                if (parse_duration_ms(value, ms) < 0 || (ms == &l->hello_timeout_ms && *ms == 0))
                        return fail(ps, "%s = %s: a duration such as 30s, 500ms or 2min%s", key, value,
                                    ms == &l->hello_timeout_ms ? ", above 0" : "");
        } else if (!strcmp(key, "log_level")) {
                if ((lv = log_level_parse(value)) < 0)
                        return fail(ps, "log_level = %s: use error, warning, notice, info or debug", value);
                ps->conf->log_level = lv;
        } else {
                return fail(ps,
                            "unknown key '%s' in [daemon]; keys are max_connections, max_connections_per_uid, "
                            "max_regions_per_connection, max_waiters_per_connection, max_names, max_names_per_uid, "
                            "max_persist_per_uid, wait_timeout, hello_timeout, log_level",
                            key);
        }
        return 1;
}

/* Pool names are stricter than region names: they appear in config sections, logs and journal fields. */
static bool valid_pool_name(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > NAME_MAX_LEN)
                return false;
        for (; *s; s++)
                if (!isalnum((unsigned char)*s) && !strchr("-_.:", *s))
                        return false;
        return true;
}

static int handler(void *user, const char *section, const char *key, const char *value) {
        struct parse *ps = user;
        struct config *conf = ps->conf;

        if (!*section)
                return fail(ps, "'%s' is outside any section; put it under [daemon] or [pool NAME]", key);
        if (ps->current != ps->sections) {
                ps->current = ps->sections;
                snprintf(ps->section, sizeof(ps->section), "%s", section);
                ps->nseen = 0;
                if (!strncmp(section, "pool ", 5)) {
                        const char *name = section + 5;
                        while (*name == ' ')
                                name++;
                        if (!valid_pool_name(name))
                                return fail(ps, "[%s]: a pool name is 1-%d letters, digits, '-', '_', '.' or ':'",
                                            section, NAME_MAX_LEN);
                        for (size_t i = 0; i < conf->npools; i++)
                                if (!strcmp(conf->pools[i].name, name))
                                        return fail(ps, "[pool %s] appears twice (first at line %d)", name,
                                                    conf->pools[i].line);
                        if (conf->npools == MAX_POOLS)
                                return fail(ps, "more than %d pools", MAX_POOLS);
                        struct pool_conf *n = realloc(conf->pools, (conf->npools + 1) * sizeof(*n));
                        if (!n)
                                return fail(ps, "out of memory");
                        conf->pools = n;
                        pool_conf_defaults(&n[conf->npools]);
                        snprintf(n[conf->npools].name, sizeof(n->name), "%s", name);
                        n[conf->npools].line = ps->section_line;
                        conf->npools++;
                } else if (strcmp(section, "daemon") != 0) {
                        return fail(ps, "unknown section [%s]; sections are [daemon] and [pool NAME]", section);
                } else if (ps->daemon_line) {
                        return fail_at(ps, ps->section_line, "[daemon] appears twice (first at line %d); merge them",
                                       ps->daemon_line);
                } else {
                        ps->daemon_line = ps->section_line;
                }
        }
        for (int i = 0; i < ps->nseen; i++)
                if (!strcmp(ps->seen[i], key))
                        return fail(ps, "'%s' is set twice in [%s]", key, section);
        if (ps->nseen < 32 && strlen(key) < sizeof(ps->seen[0]))
                strcpy(ps->seen[ps->nseen++], key);

        if (!strcmp(section, "daemon"))
                return limit_key(ps, key, value);
        if (conf->npools == 0) /* the section count and libinih disagree: never guess a pool */
                return fail(ps, "cannot tell which section '%s' belongs to; check the line above it", key);
        return pool_key(ps, &conf->pools[conf->npools - 1], key, value);
}

/* A memory pool's size: set, and whole pages of the kind it is made of. */
static int check_size(struct parse *ps, const struct pool_conf *pc) {
        long page = sysconf(_SC_PAGESIZE);
        uint64_t unit = pc->hugepage ? pc->hugepage : (uint64_t)page;

        if (pc->size == 0)
                return fail(ps, "[pool %s] is a %s pool without a size; add e.g. size = 256M", pc->name,
                            pool_kind_name(pc->kind));
        /* A gpu pool is rounded up to the device's allocation granularity when it is created. */
        if (pc->kind != POOL_GPU && pc->size % unit)
                return fail(ps, "[pool %s]: size %" PRIu64 " is not a multiple of the %s page size %" PRIu64, pc->name,
                            pc->size, pc->hugepage ? "huge" : "", unit);
        if (pc->kind != POOL_GPU && pc->quantum && pc->quantum < (uint64_t)page)
                return fail(ps, "[pool %s]: quantum below the page size (%ld) is not supported for %s pools", pc->name,
                            page, pool_kind_name(pc->kind));
        return 1;
}

/* Checks that belong to a whole pool section rather than one key. */
static int check_pool(struct parse *ps, const struct pool_conf *pc) {
        char list[256];

        ps->line = pc->line;
        if (!pc->has_kind)
                return fail(ps, "[pool %s] has no kind; add kind = host, pinned, gpu or fpga", pc->name);
        for (size_t k = 0; k < NPOOL_KEYS; k++) {
                if ((pc->keys & (1u << k)) && !(pool_keys[k].kinds & KIND_BIT(pc->kind))) {
                        keys_of(KIND_BIT(pc->kind), list, sizeof(list));
                        return fail(ps, "[pool %s]: %s is not a key of %s pools; they take %s", pc->name,
                                    pool_keys[k].name, pool_kind_name(pc->kind), list);
                }
        }
        switch (pc->kind) {
        case POOL_HOST:
                return check_size(ps, pc);
        case POOL_PINNED:
                if ((pc->keys & (1u << KEY_LOCK)) && !pc->lock)
                        return fail(ps, "[pool %s]: a pinned pool is always locked; remove lock = no", pc->name);
                if (pc->hugepage && pc->backend == BACKEND_VMM)
                        return fail(ps,
                                    "[pool %s]: hugepages is for backend = memfd; the vmm backend takes the "
                                    "driver's own page size",
                                    pc->name);
                return check_size(ps, pc);
        case POOL_GPU:
                if (pc->device < 0)
                        return fail(ps, "[pool %s] is a gpu pool without a device; add e.g. device = 0", pc->name);
                return check_size(ps, pc);
        case POOL_FPGA:
                break;
        }
        if (pc->nranges == 0)
                return fail(ps, "[pool %s] is an fpga pool without ranges; add e.g. ranges = 0x0+4G", pc->name);
        uint64_t q = pc->quantum ? pc->quantum : FPGA_DEFAULT_QUANTUM;
        for (size_t i = 0; i < pc->nranges; i++)
                if (pc->ranges[i].base % q || pc->ranges[i].size % q)
                        return fail(ps,
                                    "[pool %s]: range %#" PRIx64 "+%#" PRIx64
                                    " is not a multiple of the quantum %#" PRIx64,
                                    pc->name, pc->ranges[i].base, pc->ranges[i].size, q);
        return 1;
}

static void limits_default(struct config *conf) {
        conf->limits = (struct limits){
                .max_connections = 1024,
                .max_regions_per_connection = 65536,
                .max_waiters_per_connection = 64,
                .max_names = 65536,
                .max_connections_per_uid = 256,
                .max_names_per_uid = 16384,
                .max_persist_per_uid = 4096,
                .wait_timeout_ms = 30000,
                .hello_timeout_ms = 10000,
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
                snprintf(err, errsize, "%s: %s", path, strerror(errno));
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
        r = ini_parse_stream(reader, &ps, handler, &ps);
        fclose(ps.f);
        if (r == 0)
                check_empty_pool(&ps);
        if (r > 0 && !ps.failed) {
                ps.line = r;
                fail(&ps, "syntax error: expected [section], key = value, or a comment starting with # or ;");
        } else if (r < 0 && !ps.failed) {
                fail(&ps, "cannot parse (%d)", r);
        }
        for (size_t i = 0; i < conf->npools && !ps.failed; i++) {
                check_pool(&ps, &conf->pools[i]);
                if (conf->pools[i].kind == POOL_PINNED)
                        conf->pools[i].lock = true; /* always, so a reload sees no change */
        }
        if (ps.failed) {
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
