/* SPDX-License-Identifier: MIT */
/* Helpers of the state tests (state-util.h). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core-check.h"
#include "core-impl.h"
#include "state-util.h"
#include "state.h"

struct limits state_limits(void) {
        return (struct limits){.max_connections = 1000,
                               .max_connections_per_uid = 1000,
                               .max_regions_per_connection = 1u << 20,
                               .max_waiters_per_connection = 64,
                               .max_waiters_per_uid = 1024,
                               .max_names = 1u << 20,
                               .max_names_per_uid = 1u << 20,
                               .max_persist_per_uid = 1u << 20,
                               .max_region_fds_per_uid = 1u << 20,
                               .wait_timeout_ms = 1000,
                               .hello_timeout_ms = 1000};
}

struct core *state_core(bool with_b) {
        static struct span s = {.base = 1ull << 32, .size = 64ull << 20};
        struct pool_conf pc = {.kind = POOL_FPGA,
                               .has_kind = true,
                               .quantum = 4096,
                               .ranges = &s,
                               .nranges = 1,
                               .mode = 0666,
                               .numa_node = -1};
        struct limits l = state_limits();
        struct core *c;
        char err[256];

        cr_assert_eq(core_new(&c, &l), 0);
        snprintf(pc.name, sizeof(pc.name), "a");
        cr_assert_eq(core_pool_add(c, &pc, err, sizeof(err)), 0, "%s", err);
        if (with_b) {
                struct pool_conf hc = {
                        .kind = POOL_HOST, .has_kind = true, .size = 16ull << 20, .mode = 0666, .numa_node = -1};
                snprintf(hc.name, sizeof(hc.name), "b");
                cr_assert_eq(core_pool_add(c, &hc, err, sizeof(err)), 0, "%s", err);
        }
        return c;
}

static bool holder(const struct client *cl, uint32_t count, void *data) {
        FILE *f = data;
        fprintf(f, " holder %llu uid %u pid %d x%u", (unsigned long long)cl->serial, cl->uid, cl->pid, count);
        return true;
}

static int by_text(const void *a, const void *b) {
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The accounting, one line each, sorted: the core keeps these lists in the order things happened. */
static void accounting(struct core *c, FILE *f) {
        char *lines[4096];
        size_t n = 0;
        const struct client *cl;

        for (size_t i = 0; i < c->npools; i++)
                for (size_t u = 0; u < c->pools[i]->nusage; u++)
                        if (c->pools[i]->usage[u].bytes && n < 4096 &&
                            asprintf(&lines[n], "usage %s uid %u %llu", c->pools[i]->conf.name,
                                     c->pools[i]->usage[u].uid, (unsigned long long)c->pools[i]->usage[u].bytes) > 0)
                                n++;
        for (const struct user *u = c->users; u; u = u->next)
                if ((u->names || u->persist) && n < 4096 &&
                    asprintf(&lines[n], "user %u names %u persist %u", u->uid, u->names, u->persist) > 0)
                        n++;
        TAILQ_FOREACH(cl, &c->clients, link) {
                if (cl->holds != HOLD_NONE && n < 4096 &&
                    asprintf(&lines[n], "holder %020llu uid %u refs %u bytes %llu", (unsigned long long)cl->serial,
                             cl->uid, cl->nrefs, (unsigned long long)cl->bytes) > 0)
                        n++;
        }
        qsort(lines, n, sizeof(*lines), by_text);
        for (size_t i = 0; i < n; i++) {
                fprintf(f, "%s\n", lines[i]);
                free(lines[i]);
        }
}

char *state_dump(struct core *c) {
        char *text;
        size_t len;
        FILE *f = open_memstream(&text, &len);
        struct core_stats st;

        core_stats(c, &st);
        fprintf(f, "regions %llu names %llu holds %llu used %llu formats %llu\n", (unsigned long long)st.regions,
                (unsigned long long)st.names, (unsigned long long)st.holds, (unsigned long long)st.used,
                (unsigned long long)st.formats);
        for (size_t i = 0; i < core_npools(c); i++) {
                struct range_stats rs;
                struct pool_info pi;
                core_pool_info(core_pool_at(c, i), &pi);
                core_pool_stats(core_pool_at(c, i), &rs);
                fprintf(f, "pool %s regions %llu in_use %llu free_segs %llu\n", pi.name, (unsigned long long)pi.regions,
                        (unsigned long long)rs.in_use, (unsigned long long)rs.free_segments);
        }
        for (uint32_t s = 0; core_region_next(c, &s); s++) {
                struct region_info r;
                core_region_info(c, s, &r);
                fprintf(f,
                        "%#llx %s %#llx+%llu flags %u refs %u uid %u pid %d creator %llu created %llu name %s "
                        "persist %d fmt %u %llu %llu %llu",
                        (unsigned long long)r.id, core_pool_name(r.pool), (unsigned long long)r.offset,
                        (unsigned long long)r.size, r.flags, r.refs, r.uid, r.pid, (unsigned long long)r.creator,
                        (unsigned long long)r.created, r.name ? r.name : "-", r.persist, r.fmt.format,
                        (unsigned long long)r.fmt.heap_size, (unsigned long long)r.fmt.chunk_size,
                        (unsigned long long)r.fmt.chunk_count);
                core_region_holders(c, s, holder, f);
                fputc('\n', f);
        }
        accounting(c, f);
        fclose(f);
        return text;
}

void state_check(struct core *c) {
        struct core_view v = {0};
        int i = 0;
        struct client *cl;

        TAILQ_FOREACH(cl, core_clients(c), link) {
                cr_assert_lt(i, CHECK_CLIENTS_MAX);
                v.clients[i++] = cl;
        }
        core_check(c, &v, true);
}

void state_drop_absent(struct core *c) {
        while (c->nabsent) {
                struct client *k = c->absent[--c->nabsent]; /* the core's until taken off its list */
                core_client_remove(c, k);
                free(k);
        }
}

struct client state_cls[4];

void state_connect(struct core *c, int i, uid_t uid) {
        struct core_result res;

        state_cls[i] = (struct client){.serial = 10 + (uint64_t)i, .uid = uid, .pid = 100 + i};
        snprintf(state_cls[i].name, sizeof(state_cls[i].name), "client%d", i);
        cr_assert_eq(core_client_add(c, &state_cls[i], &res), E_OK, "%s", res.msg);
}

uint32_t state_alloc(struct core *c, int i, const char *pool, uint64_t size, uint32_t flags, const char *name,
                     uint32_t format) {
        struct alloc_request a = {.pool = pool,
                                  .size = size,
                                  .numa_node = -1,
                                  .flags = flags,
                                  .name = name,
                                  .format = format,
                                  .chunk_size = format ? 256 : 0};
        struct core_result res;
        uint32_t slot;

        cr_assert_eq(core_alloc(c, &state_cls[i], 0, &a, &slot, &res), GRANT_REGION, "%s", res.msg);
        if (flags & F_UNSEALED)
                cr_assert_eq(core_seal(c, &state_cls[i], region_id(&c->regions, slot), &res), E_OK, "%s", res.msg);
        return slot;
}

/* A core with many regions: named, PERSIST, tagged, shared, freed ones between, several uids. */
struct core *state_busy(void) {
        struct core *c = state_core(true);
        struct core_result res;
        uint32_t s;

        state_connect(c, 0, 1000);
        state_connect(c, 1, 1001);
        state_connect(c, 2, 1000);
        for (int k = 0; k < 300; k++) {
                char name[32];
                snprintf(name, sizeof(name), "r%d", k);
                s = state_alloc(c, k % 3, k % 2 ? "a" : "b", 4096 * (1 + k % 7), k % 5 == 0 ? F_PERSIST : 0,
                                k % 4 == 0 ? name : NULL, k % 22 == 0 ? FMT_FALLOC : FMT_RAW);
                if (k % 3 == 0) {
                        struct attach_request at = {.name = name};
                        if (k % 4 == 0)
                                cr_assert_eq(core_attach(c, &state_cls[1], 0, &at, &s, &res), GRANT_REGION, "%s",
                                             res.msg);
                }
                if (k % 9 == 4) /* freed: a gap in the slots, a hole in the arena, a gen bumped */
                        cr_assert_eq(core_free_region(c, &state_cls[k % 3], region_id(&c->regions, s), &res), E_OK,
                                     "%s", res.msg);
        }
        state_connect(c, 3, 1002);
        s = state_alloc(c, 3, "a", 8192, F_PERSIST, "orphan", FMT_RAW);
        core_client_remove(c, &state_cls[3]); /* a PERSIST region nobody holds */
        return c;
}

void state_gone(struct core *c) {
        for (int i = 0; i < 3; i++)
                core_client_remove(c, &state_cls[i]);
        core_free(c);
}

void state_checksum_again(uint8_t *buf, size_t len) {
        uint32_t crc = state_crc32c(buf + STATE_HEADER_LEN, len - STATE_HEADER_LEN);

        memcpy(buf + 32, &crc, 4);
        crc = state_crc32c(buf, 36);
        memcpy(buf + 36, &crc, 4);
}
