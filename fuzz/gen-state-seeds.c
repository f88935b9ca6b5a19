/* SPDX-License-Identifier: MIT */
/*
 * Writes fuzz-state's seeds (fuzz/corpus/state/): the memfds a keep (daemon/keep.c) holds after
 * a few stories of core operations (one with a pool added after the snapshot), trimmed of the zeros after the log; each
 * once as it is (byte 0 = 0) and once for the checksums to be put right after mutation (byte 0 = 1).  Story 5 has
 * regions of pool c in the snapshot and in the log, and is saved twice more with byte 0's bit 2 (the core without c:
 * those regions are lost, state-lost.c).
 *   build-fuzz/fuzz/gen-state-seeds fuzz/corpus/state
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "seed-file.h"
#include "core-impl.h"
#include "fuzz-state.h"
#include "keep.h"
#include "state.h"

static struct client cl[3];

/* fpga pools: raw bytes only (a falloc heap needs memory) */
static uint32_t alloc(struct core *c, int i, const char *pool, uint32_t flags, const char *name) {
        struct alloc_request a = {.pool = pool, .size = 8192, .numa_node = -1, .flags = flags, .name = name};
        struct core_result res;
        uint32_t slot = 0;

        if (core_alloc(c, &cl[i], 0, &a, &slot, &res) != GRANT_REGION) {
                fprintf(stderr, "gen-state-seeds: %s\n", res.msg);
                exit(1);
        }
        return slot;
}

static void save(const char *dir, const char *name, struct keep *k, int modes) {
        uint8_t h[STATE_HEADER_LEN];
        uint64_t body;
        char name_mode[256];

        /* Up to the log's end: the zeros after it are the memfd's room to grow. */
        if (pread(keep_fd(k), h, sizeof(h), 0) != (ssize_t)sizeof(h))
                exit(1);
        memcpy(&body, h + 16, 8);
        size_t len = STATE_HEADER_LEN + body + keep_log_bytes(k);
        uint8_t *b = malloc(len + 1);
        if (!b || pread(keep_fd(k), b + 1, len, 0) != (ssize_t)len)
                exit(1);
        for (int mode = 0; mode < modes; mode++) {
                if (mode == 2 || mode == 3)
                        continue; /* a torn tail is fuzzed from the others */
                snprintf(name_mode, sizeof(name_mode), "%s-%d", name, mode);
                b[0] = (uint8_t)mode;
                seed_file_write(dir, name_mode, b, len + 1);
        }
        free(b);
}

int main(int argc, char **argv) {
        struct core_result res;
        struct keep *k;

        if (argc != 2) {
                fprintf(stderr, "usage: gen-state-seeds DIR\n");
                return 2;
        }
        for (int story = 0; story < 6; story++) {
                /* Story 4: pool c comes after the snapshot, as a reload adds it (LOG_POOL). */
                struct core *c = fuzz_state_core_pools(story == 4 ? 2 : 3);
                char name[32];
                uint64_t serial = 20;
                for (int i = 0; i < 3; i++) {
                        cl[i] = (struct client){.serial = 10 + (uint64_t)i, .uid = 1000 + (uid_t)i, .pid = 100 + i};
                        memset(cl[i].secret, 'a' + i, sizeof(cl[i].secret));
                        if (i < 2)
                                core_client_add(c, &cl[i], &res);
                }
                alloc(c, 0, "a", F_PERSIST, "kept");
                if (story & 1) /* a snapshot with something in it, then the log */
                        alloc(c, 1, "b", F_PERSIST, NULL);
                if (story == 5) { /* held, named and PERSIST in pool c, lost with it */
                        uint32_t l = alloc(c, 0, "c", F_PERSIST, "lost-c");
                        core_attach(c, &cl[1], 0, &(struct attach_request){.name = "lost-c"}, &l, &res);
                        alloc(c, 1, "c", 0, NULL);
                }
                keep_new(&k, c, serial, 1);
                if (story == 5) /* and in the log */
                        alloc(c, 0, "c", 0, "lost-log");
                if (story == 4) {
                        fuzz_state_add_pool(c, 2);
                        alloc(c, 0, "c", F_PERSIST, "in-c");
                }
                uint32_t s = alloc(c, 1, "a", 0, "shared");
                core_attach(c, &cl[0], 0, &(struct attach_request){.name = "shared"}, &s, &res);
                s = alloc(c, 0, "b", F_UNSEALED | F_PERSIST, "draft");
                if (story & 2) {
                        core_seal(c, &cl[0], region_id(&c->regions, s), &res);
                        core_client_add(c, &cl[2], &res);
                        core_client_set_name(c, &cl[2], "late");
                        alloc(c, 2, "a", 0, NULL);
                        keep_turn(k, ++serial, name, sizeof(name));
                }
                core_detach(c, &cl[1], region_id(&c->regions, names_find(&c->names, "shared")), &res);
                core_client_remove(c, &cl[1]);
                snprintf(name, sizeof(name), "story%d", story);
                save(argv[1], name, k, story == 5 ? 6 : 2);
                keep_free(k);
                for (int i = 0; i < 3; i++)
                        if (cl[i].user)
                                core_client_remove(c, &cl[i]);
                core_free(c);
        }
        return 0;
}
