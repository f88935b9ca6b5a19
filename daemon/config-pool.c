/* SPDX-License-Identifier: MIT */
/*
 * A [pool NAME] section: each key as it is read (pool_key), then the checks that need the whole
 * section (check_pool).  Every refusal quotes the key as the file wrote it, at its line, and says
 * what is accepted; struct pool_src keeps what the file wrote for the checks that come later.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config-parse.h"
#include "config-values.h"
#include "text.h"

#define MAX_RANGES 64

#define SIZE_FORM                                                                                                      \
        "a size is a whole number in decimal with an optional unit K, M, G, T, P or E (either case, powers of 1024; "  \
        "B or iB may follow), e.g. 64M, or in 0x hex without a unit"

#define KIND_BIT(k) (1u << (k))
#define ALL_KINDS (KIND_BIT(POOL_HOST) | KIND_BIT(POOL_FPGA) | KIND_BIT(POOL_PINNED) | KIND_BIT(POOL_GPU))
#define MEMORY_KINDS (KIND_BIT(POOL_HOST) | KIND_BIT(POOL_PINNED) | KIND_BIT(POOL_GPU))

/*
 * Every pool key and the kinds it belongs to; check_pool refuses a key set for another kind.  A list
 * key may be given again and again in a section, each line adding to the list: a line is at most 197
 * characters, and an fpga card may have dozens of windows.
 */
static const struct {
        const char *name;
        unsigned kinds;
        bool list;
} pool_keys[NPOOL_KEYS] = {
        [KEY_KIND] = {"kind", ALL_KINDS, false},
        [KEY_SIZE] = {"size", MEMORY_KINDS, false},
        [KEY_QUANTUM] = {"quantum", ALL_KINDS, false},
        [KEY_HUGEPAGES] = {"hugepages", KIND_BIT(POOL_HOST) | KIND_BIT(POOL_PINNED), false},
        [KEY_LOCK] = {"lock", KIND_BIT(POOL_HOST) | KIND_BIT(POOL_PINNED), false},
        [KEY_NUMA_NODE] = {"numa_node", KIND_BIT(POOL_HOST) | KIND_BIT(POOL_PINNED), false},
        [KEY_RANGES] = {"ranges", KIND_BIT(POOL_FPGA), true},
        [KEY_OWNER] = {"owner", ALL_KINDS, false},
        [KEY_GROUP] = {"group", ALL_KINDS, false},
        [KEY_MODE] = {"mode", ALL_KINDS, false},
        [KEY_QUOTA] = {"quota_per_uid", ALL_KINDS, false},
        [KEY_BACKEND] = {"backend", KIND_BIT(POOL_PINNED), false},
        [KEY_FLAGS] = {"flags", KIND_BIT(POOL_PINNED), true},
        [KEY_DEVICE] = {"device", KIND_BIT(POOL_GPU), false},
        [KEY_ISOLATION] = {"isolation", MEMORY_KINDS, false},
        [KEY_NAMES] = {"names", ALL_KINDS, true},
};

static const char *const kind_names[] = {
        [POOL_HOST] = "host",
        [POOL_FPGA] = "fpga",
        [POOL_PINNED] = "pinned",
        [POOL_GPU] = "gpu",
};
#define NKINDS (sizeof(kind_names) / sizeof(kind_names[0]))

const char *pool_kind_name(enum pool_kind k) {
        return (unsigned)k < NKINDS ? kind_names[k] : "?";
}

uint64_t pool_conf_quantum(const struct pool_conf *pc) {
        return pc->quantum             ? pc->quantum
               : pc->kind == POOL_FPGA ? FPGA_DEFAULT_QUANTUM
                                       : (uint64_t)sysconf(_SC_PAGESIZE);
}

void pool_conf_defaults(struct pool_conf *pc) {
        memset(pc, 0, sizeof(*pc));
        pc->numa_node = -1;
        pc->device = -1;
        pc->owner = geteuid();
        pc->group = getegid();
        pc->mode = 0660;
        pc->register_flags = REGISTER_PORTABLE | REGISTER_DEVICEMAP;
}

void pool_src_clear(struct pool_src *src) {
        for (size_t k = 0; k < NPOOL_KEYS; k++)
                free(src->key[k].text);
        for (size_t i = 0; i < src->nranges; i++)
                free(src->ranges[i].text);
        free(src->ranges);
}

static size_t key_index(const char *key) {
        size_t k;

        for (k = 0; k < NPOOL_KEYS && strcmp(key, pool_keys[k].name); k++)
                ;
        return k;
}

bool pool_key_is_list(const char *key) {
        size_t k = key_index(key);

        return k < NPOOL_KEYS && pool_keys[k].list;
}

/* "a, b, c": the keys a kind takes, for messages. */
static void keys_of(unsigned kinds, char *buf, size_t size) {
        size_t n = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < NPOOL_KEYS && n < size; i++)
                if (pool_keys[i].kinds & kinds)
                        n += (size_t)snprintf(buf + n, size - n, "%s%s", n ? ", " : "", pool_keys[i].name);
}

static int bad_size(struct parse *ps, const char *key, const char *value, int r) {
        char why[256];

        size_problem(value, r, why, sizeof(why));
        return conf_fail(ps, "%s = %s: %s; " SIZE_FORM, key, value, why);
}

/* One BASE+SIZE of a ranges line, trimmed; appended to the pool with where it was written. */
static int add_range(struct parse *ps, size_t pool, char *tok) {
        struct pool_conf *pc = &ps->conf->pools[pool];
        struct pool_src *src = &ps->src[pool];
        char *plus, *b, *e, why[256];
        struct span sp;
        int r;

        plus = strchr(tok, '+');
        if (!plus)
                return conf_fail(ps, "ranges: '%s' is not BASE+SIZE; write e.g. ranges = 0x100000000+4G", tok);
        if (pc->nranges == MAX_RANGES)
                return conf_fail(ps, "ranges: %s is window %d of [pool %s]; a pool takes at most %d", tok,
                                 MAX_RANGES + 1, pc->name, MAX_RANGES);
        struct written w = {ps->line, strdup(tok)};
        struct written *nw = realloc(src->ranges, (src->nranges + 1) * sizeof(*nw));
        struct span *ns = nw ? realloc(pc->ranges, (pc->nranges + 1) * sizeof(*ns)) : NULL;
        if (nw)
                src->ranges = nw;
        if (ns)
                pc->ranges = ns;
        if (!w.text || !ns) {
                free(w.text);
                return conf_fail(ps, "out of memory");
        }
        *plus = '\0';
        b = tok;
        for (e = b + strlen(b); e > b && isspace((unsigned char)e[-1]);)
                *--e = '\0';
        for (e = plus + 1; isspace((unsigned char)*e); e++)
                ;
        /* Messages from here on quote the window whole: w.text keeps it. */
        src->ranges[src->nranges++] = w;
        if ((r = parse_uint(b, UINT64_MAX, &sp.base)) < 0)
                return conf_fail(ps, "ranges: %s: the base '%s' is %s; write it in decimal or 0x hex", w.text, b,
                                 r == -ERANGE ? "past 2^64" : "not a number");
        if ((r = parse_size(e, &sp.size)) < 0) {
                size_problem(e, r, why, sizeof(why));
                return conf_fail(ps, "ranges: %s: the size '%s': %s; " SIZE_FORM, w.text, e, why);
        }
        if (sp.size == 0)
                return conf_fail(ps, "ranges: %s: a window of size 0; give it a size above zero", w.text);
        if (sp.base > UINT64_MAX - sp.size)
                return conf_fail(ps, "ranges: %s passes the end of the 64-bit address space", w.text);
        pc->ranges[pc->nranges++] = sp;
        return 1;
}

static int parse_ranges(struct parse *ps, size_t pool, const char *value) {
        char *buf = strdup(value), *save = NULL, *tok, *e;
        int r = 1, n = 0;

        if (!buf)
                return conf_fail(ps, "out of memory");
        for (tok = strtok_r(buf, ",", &save); tok && r; tok = strtok_r(NULL, ",", &save), n++) {
                while (isspace((unsigned char)*tok))
                        tok++;
                for (e = tok + strlen(tok); e > tok && isspace((unsigned char)e[-1]);)
                        *--e = '\0';
                r = add_range(ps, pool, tok);
        }
        free(buf);
        if (r && n == 0)
                return conf_fail(ps, "ranges: empty; write BASE+SIZE, e.g. ranges = 0x100000000+4G");
        return r;
}

/* "portable, devicemap": cuMemHostRegister's flags for a pinned pool's clients; a second line adds. */
static int parse_register_flags(struct parse *ps, struct pool_conf *pc, const char *value, bool again) {
        char *buf = strdup(value), *save = NULL, *tok;
        int r = 1, ntok = 0;
        bool none = false;

        if (!buf)
                return conf_fail(ps, "out of memory");
        if (!again)
                pc->register_flags = 0;
        for (tok = strtok_r(buf, ", \t", &save); tok && r; tok = strtok_r(NULL, ", \t", &save)) {
                ntok++;
                if (!strcmp(tok, "portable"))
                        pc->register_flags |= REGISTER_PORTABLE;
                else if (!strcmp(tok, "devicemap"))
                        pc->register_flags |= REGISTER_DEVICEMAP;
                else if (!strcmp(tok, "none"))
                        none = true;
                else if (!strcmp(tok, "writecombined"))
                        r = conf_fail(ps,
                                      "flags = writecombined: write-combined memory comes only from cuMemHostAlloc, "
                                      "which cannot be shared between processes; allocate it in the process that "
                                      "uses it with cuMemHostAlloc(CU_MEMHOSTALLOC_WRITECOMBINED) and drop it here");
                else
                        r = conf_fail(ps, "flags = %s: unknown flag '%s'; use portable, devicemap or none", value, tok);
        }
        free(buf);
        /* An empty line would silently mean none, which takes clients' device pointers away: a forgotten value. */
        if (r && !ntok)
                return conf_fail(ps, "flags: empty; write portable, devicemap (the default: both), or none");
        if (r && none && ntok > 1)
                return conf_fail(ps, "flags = %s: none with other flags; write none alone, or the flags alone", value);
        return r;
}

/*
 * "job42/..., shared/..." (globs): the names only this pool may publish (fnmatch(3) patterns; `*` crosses `/`);
 * a second line adds.  A pattern is text as a name is, so that it can match one.
 */
static int parse_names(struct parse *ps, struct pool_conf *pc, const char *value) {
        char *buf = strdup(value), *save = NULL, *tok, *e;
        int r = 1, n = 0;

        if (!buf)
                return conf_fail(ps, "out of memory");
        for (tok = strtok_r(buf, ",", &save); tok && r; tok = strtok_r(NULL, ",", &save), n++) {
                size_t have = strlen(pc->names);
                while (isspace((unsigned char)*tok))
                        tok++;
                for (e = tok + strlen(tok); e > tok && isspace((unsigned char)e[-1]);)
                        *--e = '\0';
                if (!text_valid(tok, NAME_MAX_LEN))
                        r = conf_fail(ps,
                                      "names = %s: '%s' is not a name pattern; write 1-%d bytes of UTF-8 without "
                                      "control characters, e.g. names = job42/*",
                                      value, tok, NAME_MAX_LEN);
                else if (strstr(tok, " #") || strstr(tok, "\t#"))
                        /* Almost always a comment that is not one (config.c says why); such names are rare. */
                        r = conf_fail(ps, "names = %s: the pattern '%s' holds a ' #'", value, tok);
                else if (have + strlen(tok) + 1 > NAME_PATTERNS_MAX)
                        r = conf_fail(ps,
                                      "names: the patterns of [pool %s] pass %d bytes in all; use fewer, wider ones",
                                      pc->name, NAME_PATTERNS_MAX);
                else
                        snprintf(pc->names + have, sizeof(pc->names) - have, "%s\n", tok);
        }
        free(buf);
        if (r && n == 0)
                return conf_fail(ps, "names: empty; write patterns, e.g. names = job42/*, job43/*");
        return r;
}

int pool_key(struct parse *ps, size_t pool, const char *key, const char *value) {
        struct pool_conf *pc = &ps->conf->pools[pool];
        struct written *w;
        char list[256];
        size_t k = key_index(key);
        uint64_t v;
        int b, r;

        if (k == NPOOL_KEYS) {
                keys_of(ALL_KINDS, list, sizeof(list));
                return conf_fail(ps, "unknown key '%s' in [%s]; pool keys are %s", key, ps->header, list);
        }
        bool again = pc->keys & (1u << k);
        pc->keys |= 1u << k;
        w = &ps->src[pool].key[k];
        free(w->text);
        *w = (struct written){ps->line, strdup(value)};
        if (!w->text)
                return conf_fail(ps, "out of memory");
        switch ((enum pool_key_id)k) {
        case KEY_KIND:
                for (b = 0; b < (int)NKINDS && strcmp(value, kind_names[b]); b++)
                        ;
                if (b == (int)NKINDS)
                        return conf_fail(ps, "kind = %s: unknown; use host, pinned, gpu or fpga", value);
                pc->kind = (enum pool_kind)b;
                pc->has_kind = true;
                break;
        case KEY_SIZE:
                if ((r = parse_size(value, &pc->size)) < 0)
                        return bad_size(ps, key, value, r);
                if (pc->size == 0)
                        return conf_fail(ps, "size = %s: a pool of 0 bytes; give a size above zero (e.g. 64M)", value);
                break;
        case KEY_QUANTUM:
                if ((r = parse_size(value, &v)) < 0)
                        return bad_size(ps, key, value, r);
                if (v == 0 || (v & (v - 1)))
                        return conf_fail(ps, "quantum = %s: not a power of two; use e.g. 4K or 64K", value);
                pc->quantum = v;
                break;
        case KEY_HUGEPAGES:
                if (!strcmp(value, "no") || !strcmp(value, "0"))
                        pc->hugepage = 0;
                else if (parse_size(value, &v) == 0 && (v == 2u << 20 || v == 1u << 30))
                        pc->hugepage = v;
                else
                        return conf_fail(ps, "hugepages = %s: not a huge page size; use 2M, 1G or no", value);
                break;
        case KEY_LOCK:
                if ((b = parse_bool(value)) < 0)
                        return conf_fail(ps, "lock = %s: not a boolean; use yes or no", value);
                pc->lock = b;
                break;
        case KEY_NUMA_NODE:
                if (parse_uint(value, 1023, &v) < 0)
                        return conf_fail(ps, "numa_node = %s: not a node number; use 0 to 1023", value);
                pc->numa_node = (int)v;
                break;
        case KEY_RANGES:
                return parse_ranges(ps, pool, value);
        case KEY_OWNER:
                if (parse_user(value, &pc->owner) < 0)
                        return conf_fail(ps, "owner = %s: no such user; use a user name or a numeric uid", value);
                break;
        case KEY_GROUP:
                if (parse_group(value, &pc->group) < 0)
                        return conf_fail(ps, "group = %s: no such group; use a group name or a numeric gid", value);
                break;
        case KEY_MODE: {
                char *end;
                errno = 0;
                unsigned long m = strtoul(value, &end, 8);
                if (!isdigit((unsigned char)*value) || errno || *end || m > 0777 || (m & 0111))
                        return conf_fail(ps,
                                         "mode = %s: not a pool mode; use an octal mode of read (attach) and write "
                                         "(allocate) bits, e.g. 0660; execute bits mean nothing here",
                                         value);
                pc->mode = (mode_t)m;
                break;
        }
        case KEY_QUOTA:
                if ((r = parse_size(value, &pc->quota_per_uid)) < 0)
                        return bad_size(ps, key, value, r);
                break;
        case KEY_BACKEND:
                if (!strcmp(value, "auto"))
                        pc->backend = BACKEND_AUTO;
                else if (!strcmp(value, "memfd"))
                        pc->backend = BACKEND_MEMFD;
                else if (!strcmp(value, "vmm"))
                        pc->backend = BACKEND_VMM;
                else
                        return conf_fail(ps,
                                         "backend = %s: use auto, memfd (cuMemHostRegister in each client) or vmm "
                                         "(cuMemCreate on a host NUMA node, CUDA 12.2 or later)",
                                         value);
                break;
        case KEY_FLAGS:
                return parse_register_flags(ps, pc, value, again);
        case KEY_ISOLATION:
                if (!strcmp(value, "pool"))
                        pc->isolation = ISOLATION_POOL;
                else if (!strcmp(value, "region"))
                        pc->isolation = ISOLATION_REGION;
                else
                        return conf_fail(ps,
                                         "isolation = %s: use pool (one mapping; every holder reaches the whole "
                                         "pool) or region (each region its own memfd)",
                                         value);
                break;
        case KEY_NAMES:
                return parse_names(ps, pc, value);
        case KEY_DEVICE:
                if (parse_uint(value, 1023, &v) < 0)
                        return conf_fail(ps, "device = %s: not a CUDA device ordinal; use 0, 1, ... (at most 1023)",
                                         value);
                pc->device = (int)v;
                break;
        case NPOOL_KEYS:
                break;
        }
        return 1;
}

/* A memory pool's size: set, and whole pages of the kind it is made of. */
static int check_size(struct parse *ps, size_t pool) {
        const struct pool_conf *pc = &ps->conf->pools[pool];
        const struct pool_src *src = &ps->src[pool];
        uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), unit = pc->hugepage ? pc->hugepage : page;
        char a[32], b[32];

        if (pc->size == 0)
                return conf_fail_at(ps, pc->line, "[pool %s] is a %s pool without a size; add e.g. size = 256M",
                                    pc->name, pool_kind_name(pc->kind));
        /* A gpu pool is rounded up to the device's allocation granularity when it is created. */
        if (pc->kind != POOL_GPU && pc->size % unit) {
                uint64_t down = pc->size - pc->size % unit;
                size_text(unit, a, sizeof(a));
                size_text(down > UINT64_MAX - unit ? down : down + unit, b, sizeof(b));
                return conf_fail_at(ps, src->key[KEY_SIZE].line, "size = %s: not a multiple of the %s %s; use e.g. %s",
                                    src->key[KEY_SIZE].text, pc->hugepage ? "huge page size" : "page size", a, b);
        }
        /* Its arena takes whole quanta (a gpu pool's size is only known once rounded up to the granularity). */
        if (pc->kind != POOL_GPU && pc->quantum && pc->size % pc->quantum) {
                uint64_t n = pc->size / pc->quantum;
                size_text((n < UINT64_MAX / pc->quantum ? n + 1 : n) * pc->quantum, b, sizeof(b));
                return conf_fail_at(ps, src->key[KEY_SIZE].line,
                                    "size = %s: not a multiple of quantum = %s (line %d); use e.g. %s",
                                    src->key[KEY_SIZE].text, src->key[KEY_QUANTUM].text, src->key[KEY_QUANTUM].line, b);
        }
        if (pc->kind != POOL_GPU && pc->quantum && pc->quantum < page) {
                size_text(page, a, sizeof(a));
                return conf_fail_at(ps, src->key[KEY_QUANTUM].line,
                                    "quantum = %s: below the page size (%s); %s pools take at least the page size",
                                    src->key[KEY_QUANTUM].text, a, pool_kind_name(pc->kind));
        }
        return 1;
}

/* An fpga pool's windows: on its quantum, and no two overlapping. */
static int check_ranges(struct parse *ps, size_t pool) {
        const struct pool_conf *pc = &ps->conf->pools[pool];
        const struct written *w = ps->src[pool].ranges;
        uint64_t q = pool_conf_quantum(pc);
        char qs[64];

        if (pc->nranges == 0)
                return conf_fail_at(ps, pc->line, "[pool %s] is an fpga pool without ranges; add e.g. ranges = 0x0+4G",
                                    pc->name);
        size_text(q, qs, sizeof(qs));
        if (!pc->quantum)
                strcat(qs, ", the default");
        for (size_t i = 0; i < pc->nranges; i++)
                if (pc->ranges[i].base % q || pc->ranges[i].size % q)
                        return conf_fail_at(ps, w[i].line,
                                            "ranges: %s is not on the quantum (%s); its base and size must both be "
                                            "multiples of it",
                                            w[i].text, qs);
        /* At most 64 windows: every pair is cheaper to read than a sort. */
        for (size_t j = 1; j < pc->nranges; j++)
                for (size_t i = 0; i < j; i++) {
                        const struct span *a = &pc->ranges[i], *b = &pc->ranges[j];
                        if (a->base < b->base + b->size && b->base < a->base + a->size)
                                return conf_fail_at(
                                        ps, w[j].line,
                                        "ranges: %s (line %d) overlaps %s (line %d); an fpga pool's windows "
                                        "must not overlap",
                                        w[j].text, w[j].line, w[i].text, w[i].line);
                }
        return 1;
}

/* Checks that belong to a whole pool section rather than one key. */
int check_pool(struct parse *ps, size_t pool) {
        const struct pool_conf *pc = &ps->conf->pools[pool];
        const struct written *key = ps->src[pool].key;
        char list[256];

        if (!pc->has_kind)
                return conf_fail_at(ps, pc->line, "[pool %s] has no kind; add kind = host, pinned, gpu or fpga",
                                    pc->name);
        for (size_t k = 0; k < NPOOL_KEYS; k++) {
                if ((pc->keys & (1u << k)) && !(pool_keys[k].kinds & KIND_BIT(pc->kind))) {
                        keys_of(KIND_BIT(pc->kind), list, sizeof(list));
                        return conf_fail_at(
                                ps, key[k].line,
                                "%s = %s: not a key of %s pools ([pool %s] has kind = %s at line %d); they take %s",
                                pool_keys[k].name, key[k].text, pool_kind_name(pc->kind), pc->name,
                                pool_kind_name(pc->kind), key[KEY_KIND].line, list);
                }
        }
        /* A pinned memfd pool is no CUDA allocation: the reason there is the lock that covers it whole. */
        if (pc->isolation == ISOLATION_REGION && pc->kind != POOL_HOST)
                return conf_fail_at(ps, key[KEY_ISOLATION].line,
                                    "isolation = region: only host pools have it; %s, and a region of it cannot be "
                                    "handed out alone (use a host pool, or a %s pool per tenant)",
                                    pc->kind == POOL_PINNED
                                            ? "a pinned pool is locked whole, and with backend = vmm it is one CUDA "
                                              "allocation, exported whole"
                                            : "a gpu pool is one CUDA allocation, exported whole",
                                    pool_kind_name(pc->kind));
        if (pc->isolation == ISOLATION_REGION && (pc->lock || pc->numa_node >= 0))
                return conf_fail_at(ps, key[pc->lock ? KEY_LOCK : KEY_NUMA_NODE].line,
                                    "%s = %s: not with isolation = region (line %d), whose regions are made one by "
                                    "one; remove one of the two",
                                    pc->lock ? "lock" : "numa_node", key[pc->lock ? KEY_LOCK : KEY_NUMA_NODE].text,
                                    key[KEY_ISOLATION].line);
        /* Each region is a memfd of its own, of huge pages: the kernel sizes it in whole ones only. */
        if (pc->isolation == ISOLATION_REGION && pc->hugepage && (!pc->quantum || pc->quantum % pc->hugepage))
                return conf_fail_at(ps, key[KEY_HUGEPAGES].line,
                                    "hugepages = %s with isolation = region (line %d): each region is a memfd of huge "
                                    "pages, whose size is whole huge pages; add quantum = %s",
                                    key[KEY_HUGEPAGES].text, key[KEY_ISOLATION].line, key[KEY_HUGEPAGES].text);
        /* Every region takes at least a quantum: a smaller quota would refuse every allocation of the pool. */
        uint64_t q = pool_conf_quantum(pc);
        if (pc->quota_per_uid && pc->quota_per_uid < q) {
                size_text(q, list, sizeof(list));
                return conf_fail_at(ps, key[KEY_QUOTA].line,
                                    "quota_per_uid = %s: below the pool's quantum (%s%s), the least a region takes, "
                                    "so every allocation would be refused; use at least %s, or 0 for no quota",
                                    key[KEY_QUOTA].text, list, pc->quantum ? "" : ", the default", list);
        }
        switch (pc->kind) {
        case POOL_HOST:
                return check_size(ps, pool);
        case POOL_PINNED:
                if ((pc->keys & (1u << KEY_LOCK)) && !pc->lock)
                        return conf_fail_at(ps, key[KEY_LOCK].line,
                                            "lock = %s: a pinned pool is always locked; remove the line",
                                            key[KEY_LOCK].text);
                if (pc->hugepage && pc->backend == BACKEND_VMM)
                        return conf_fail_at(
                                ps, key[KEY_HUGEPAGES].line,
                                "hugepages = %s: hugepages is for backend = memfd; the vmm backend (line %d) "
                                "takes the driver's own page size",
                                key[KEY_HUGEPAGES].text, key[KEY_BACKEND].line);
                return check_size(ps, pool);
        case POOL_GPU:
                if (pc->device < 0)
                        return conf_fail_at(ps, pc->line,
                                            "[pool %s] is a gpu pool without a device; add e.g. device = 0", pc->name);
                return check_size(ps, pool);
        case POOL_FPGA:
                return check_ranges(ps, pool);
        }
        return 1;
}
