/* SPDX-License-Identifier: MIT */
/*
 * What keeping the state costs (issue 18; daemon/keep.c, the log in daemon/state.c):
 *   (a) an alloc+free pair in the core with a keep and without, interleaved trials in one run,
 *       with 1k and 100k regions live (each pair appends its records; a loop turn after each, so
 *       compactions are counted in);
 *   (b) restoring: a kept memfd read into a fresh core at 1k, 100k and 1M regions (snapshot
 *       only), and 1M changes replayed from the log after an empty snapshot, and 1M regions with a
 *       free hole after each (the free space in a million pieces, as after churn).
 *   state-bench [--json] [--seconds S]
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench-util.h"
#include "core.h"
#include "keep.h"
#include "state.h"

#define BATCH 1024

static const struct limits lim = {.max_connections = 16,
                                  .max_connections_per_uid = 16,
                                  .max_regions_per_connection = UINT32_MAX,
                                  .max_waiters_per_connection = 1,
                                  .max_waiters_per_uid = 1024,
                                  .max_names = 1u << 20,
                                  .max_names_per_uid = 1u << 20,
                                  .max_persist_per_uid = 1u << 20,
                                  .max_region_fds_per_uid = 1u << 20};

struct subject {
        struct core *core;
        struct keep *keep; /* NULL: the core keeps nothing */
        struct client cl;
        uint64_t serial;
        uint64_t compactions;
        double compact_s; /* seconds in the turns that compacted */
};

/* A core with one fpga pool (address space only: 4 TiB, room for any count of 4 KiB regions). */
static struct core *new_core(void) {
        static struct span s = {.base = 1ull << 42, .size = 1ull << 42};
        struct pool_conf pc = {
                .kind = POOL_FPGA, .has_kind = true, .quantum = 4096, .ranges = &s, .nranges = 1, .mode = 0666};
        struct core *c;
        char err[256];
        int r;

        if ((r = core_new(&c, &lim)) < 0)
                die("core_new", r);
        snprintf(pc.name, sizeof(pc.name), "a");
        if ((r = core_pool_add(c, &pc, err, sizeof(err))) < 0)
                die(err, r);
        return c;
}

/* live regions; holes: a free 4 KiB after each (twice as many made, every other one freed). */
static void subject_new(struct subject *s, uint32_t live, bool keep, bool holes) {
        static const uint64_t sizes[BATCH] = {[0 ... BATCH - 1] = 4096};
        struct alloc_request a = {.pool = "a", .numa_node = -1, .flags = F_NOWAIT};
        uint32_t slots[BATCH], made = holes ? 2 * live : live;
        struct core_result res;

        *s = (struct subject){.core = new_core(), .cl = {.serial = 1, .uid = 1000, .pid = 1}, .serial = 2};
        if (core_client_add(s->core, &s->cl, &res) != E_OK)
                die(res.msg, 0);
        for (uint32_t n = 0; n < made; n += BATCH) {
                uint32_t k = made - n < BATCH ? made - n : BATCH;
                if (core_alloc_batch(s->core, &s->cl, &a, sizes, k, slots, &res) != E_OK)
                        die(res.msg, 0);
                for (uint32_t i = 1; holes && i < k; i += 2) {
                        struct region_info r;
                        core_region_info(s->core, slots[i], &r);
                        if (core_free_region(s->core, &s->cl, r.id, &res) != E_OK)
                                die(res.msg, 0);
                }
        }
        if (keep && keep_new(&s->keep, s->core, s->serial, 1) < 0)
                die("keep_new", -errno);
}

static void subject_free(struct subject *s) {
        core_client_remove(s->core, &s->cl);
        keep_free(s->keep);
        core_free(s->core);
}

static void pairs(void *subject, uint64_t first, unsigned count) {
        struct subject *s = subject;
        struct alloc_request a = {.pool = "a", .size = 4096, .numa_node = -1, .flags = F_NOWAIT};
        struct core_result res;
        char err[256];
        uint32_t slot;

        (void)first;
        for (unsigned i = 0; i < count; i++) {
                if (core_alloc(s->core, &s->cl, 0, &a, &slot, &res) != GRANT_REGION)
                        die(res.msg, 0);
                struct region_info r;
                core_region_info(s->core, slot, &r);
                if (core_free_region(s->core, &s->cl, r.id, &res) != E_OK)
                        die(res.msg, 0);
                if (!s->keep)
                        continue;
                double t0 = now();
                int turned = keep_turn(s->keep, s->serial, err, sizeof(err));
                if (turned < 0)
                        die(err, 0);
                if (turned > 0) {
                        s->compactions++;
                        s->compact_s += now() - t0;
                }
        }
}

/* ns per pair without and with a keep, the median of TRIALS interleaved trials each. */
/* compact_ms: a compaction's time; in_compaction: the ns of a pair spent in them, spread over every pair. */
static void pair_cost(uint32_t live, double *plain, double *kept, double *compact_ms, double *in_compaction) {
        struct subject s[2];
        double t[2][TRIALS];
        uint64_t next[2] = {0}, total[2] = {0};

        subject_new(&s[0], live, false, false);
        subject_new(&s[1], live, true, false);
        for (int k = 0; k < TRIALS; k++)
                for (int i = 0; i < 2; i++)
                        t[i][k] = time_trial(pairs, &s[i], 256, &next[i], &total[i]);
        *plain = median(t[0], TRIALS);
        *kept = median(t[1], TRIALS);
        *compact_ms = s[1].compactions ? s[1].compact_s * 1e3 / (double)s[1].compactions : 0;
        *in_compaction = s[1].compact_s * 1e9 / (double)total[1];
        subject_free(&s[0]);
        subject_free(&s[1]);
}

/* Seconds to read fd into a fresh core (the median of 3), and the memfd's bytes in use. */
static double restore_time(struct keep *k, uint64_t *bytes) {
        char err[512];
        double t[3];
        uint64_t serial;
        struct state_info info;

        for (int i = 0; i < 3; i++) {
                struct core *c = new_core();
                double t0 = now();
                if (state_read_fd_info(c, keep_fd(k), &serial, &info, err, sizeof(err)) < 0)
                        die(err, 0);
                t[i] = now() - t0;
                core_free(c); /* its placeholders with it */
        }
        *bytes = keep_log_bytes(k);
        return median(t, 3);
}

enum from { SNAPSHOT, LOG, FULL, HOLES };

/*
 * (b): n regions in a snapshot; or, LOG, an empty snapshot and n allocations in its log; or, FULL,
 * n regions in a snapshot and as much log as a keep lets grow before it compacts (the worst case:
 * alloc+free pairs, which leave the regions as they were); or, HOLES, n regions in a snapshot with
 * a free 4 KiB after each (a pool after churn: the free space in n pieces).
 */
static double restore_cost(uint32_t n, enum from from, uint64_t *log_bytes, uint64_t *file_bytes) {
        bool log_only = from == LOG, full = from == FULL;
        struct subject s;
        struct stat sb;
        double t;

        if (log_only) {
                subject_new(&s, 0, true, false);
                keep_set_log_min(s.keep, SIZE_MAX);
                static const uint64_t sizes[BATCH] = {[0 ... BATCH - 1] = 4096};
                struct alloc_request a = {.pool = "a", .numa_node = -1, .flags = F_NOWAIT};
                uint32_t slots[BATCH];
                struct core_result res;
                for (uint32_t k = 0; k < n; k += BATCH)
                        if (core_alloc_batch(s.core, &s.cl, &a, sizes, BATCH, slots, &res) != E_OK)
                                die(res.msg, 0);
        } else {
                subject_new(&s, n, true, from == HOLES);
        }
        while (full && keep_log_bytes(s.keep) < 2 * (size_t)n * 90 - 4096) /* LOG_RATIO snapshots of ~90 B a region */
                pairs(&s, 0, 64);
        t = restore_time(s.keep, log_bytes);
        fstat(keep_fd(s.keep), &sb);
        *file_bytes = (uint64_t)sb.st_size;
        subject_free(&s);
        return t;
}

#define USAGE "Usage: state-bench [--json] [--seconds S]"

int main(int argc, char **argv) {
        static const uint32_t live[] = {1000, 100000}, restore[] = {1000, 100000, 1000000};
        static const char *const from[] = {"snapshot", "snapshot",          "snapshot",
                                           "log",      "snapshot+full log", "snapshot, holes"};
        double plain[2], kept[2], compact[2], share[2], rt[6];
        uint64_t logb[6], fileb[6];
        bool json = false;

        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--json"))
                        json = true;
                else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
                        if (!bench_arg_seconds(USAGE, argv[++i], 0.001, 3600, &min_seconds))
                                return 2;
                } else {
                        fprintf(stderr, "%s\n", USAGE);
                        return 2;
                }
        }
        for (int i = 0; i < 2; i++)
                pair_cost(live[i], &plain[i], &kept[i], &compact[i], &share[i]);
        for (int i = 0; i < 3; i++)
                rt[i] = restore_cost(restore[i], SNAPSHOT, &logb[i], &fileb[i]);
        rt[3] = restore_cost(1000000, LOG, &logb[3], &fileb[3]);
        rt[4] = restore_cost(1000000, FULL, &logb[4], &fileb[4]);
        rt[5] = restore_cost(1000000, HOLES, &logb[5], &fileb[5]);
        if (json) {
                json_object *root = json_object_new_object(), *pa = json_object_new_array(),
                            *re = json_object_new_array();
                json_object_object_add(root, "benchmark", json_object_new_string("state-bench"));
                for (int i = 0; i < 2; i++) {
                        json_object *r = json_object_new_object();
                        json_object_object_add(r, "live_regions", json_object_new_uint64(live[i]));
                        json_object_object_add(r, "ns_plain", json_object_new_double(plain[i]));
                        json_object_object_add(r, "ns_kept", json_object_new_double(kept[i]));
                        json_object_object_add(r, "ns_added", json_object_new_double(kept[i] - plain[i]));
                        json_object_object_add(r, "ratio", json_object_new_double(kept[i] / plain[i]));
                        json_object_object_add(r, "ms_per_compaction", json_object_new_double(compact[i]));
                        json_object_object_add(r, "ns_in_compaction", json_object_new_double(share[i]));
                        json_object_array_add(pa, r);
                }
                for (int i = 0; i < 6; i++) {
                        json_object *r = json_object_new_object();
                        json_object_object_add(r, "regions", json_object_new_uint64(i < 3 ? restore[i] : 1000000));
                        json_object_object_add(r, "from", json_object_new_string(from[i]));
                        json_object_object_add(r, "seconds", json_object_new_double(rt[i]));
                        json_object_object_add(r, "log_bytes", json_object_new_uint64(logb[i]));
                        json_object_object_add(r, "memfd_bytes", json_object_new_uint64(fileb[i]));
                        json_object_array_add(re, r);
                }
                json_object_object_add(root, "alloc_free_pair", pa);
                json_object_object_add(root, "restore", re);
                puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
                json_object_put(root);
                return 0;
        }
        printf("(a) an alloc+free pair in the core, ns (median of %d interleaved trials of %.2f s each)\n\n", TRIALS,
               min_seconds / TRIALS);
        printf("%-14s %9s %9s %9s %7s %14s %15s\n", "live regions", "no keep", "kept", "added", "ratio",
               "compaction ms", "of which compac.");
        for (int i = 0; i < 2; i++)
                printf("%-14u %9.0f %9.0f %9.0f %6.2fx %14.2f %15.0f\n", live[i], plain[i], kept[i], kept[i] - plain[i],
                       kept[i] / plain[i], compact[i], share[i]);
        printf("\n(b) restore: the memfd read into a fresh core (median of 3)\n\n");
        printf("%-10s %-18s %12s %14s %14s\n", "regions", "from", "seconds", "log bytes", "memfd bytes");
        for (int i = 0; i < 6; i++)
                printf("%-10u %-18s %12.4f %14llu %14llu\n", i < 3 ? restore[i] : 1000000, from[i], rt[i],
                       (unsigned long long)logb[i], (unsigned long long)fileb[i]);
        return 0;
}
