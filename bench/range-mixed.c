/* SPDX-License-Identifier: MIT */
#include "range-mixed.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "alloc/mem_alloc.h"
#include "alloc/range.h"
#include "bench-util.h"
#include "opae-list.h"

#define KIB UINT64_C(1024)
#define SPAN_PER_LIVE (48 * KIB)
#define REF_LIVE 1000

const char *const mix_col_names[MIX_COLS] = {"unaligned q=1", "aligned q=1", "unaligned q=4K", "aligned q=4K"};
static const uint64_t col_quantum[MIX_COLS] = {1, 1, 4 * KIB, 4 * KIB};
static const bool col_aligned[MIX_COLS] = {false, true, false, true};

struct live {
        uint64_t start;
        uint8_t log2size;
};

/*
 * The floor: the least any allocator must do on this churn.  A free finds the
 * range by its start in an open-addressing table of (start, size) pairs, at
 * most half full (one random read), and deletes it by shifting back the
 * entries behind it; an allocation takes the next address of a bump pointer
 * (no placement, no coalescing) and records it at its slot (one random
 * write).  The slot is the same double mix of the start as the arena's hash.
 * The benchmark's own step (the random pick and its entry in the live array,
 * itself one miss at a million ranges) is in the floor as in every column.
 */
struct floor_slot {
        uint64_t start, size; /* size 0: empty */
};

struct floor_table {
        struct floor_slot *slots;
        uint64_t mask, bump;
        unsigned shift;
};

static uint64_t floor_home(const struct floor_table *f, uint64_t start) {
        uint64_t z = start * UINT64_C(0x9E3779B97F4A7C15);
        z ^= z >> 29;
        z *= UINT64_C(0xBF58476D1CE4E5B9);
        return z >> f->shift;
}

static int floor_init(struct floor_table *f, uint64_t n) {
        unsigned lg = 64 - (unsigned)__builtin_clzll(2 * n - 1); /* at least 2n slots */
        *f = (struct floor_table){.mask = (UINT64_C(1) << lg) - 1, .shift = 64 - lg};
        /* On huge pages from 4 MiB on, as the arena's own tables (common/range-mem.c): the same machine for both. */
        size_t bytes = (f->mask + 1) * sizeof(*f->slots), huge = (size_t)2 << 20;
        if (bytes < 2 * huge) {
                f->slots = calloc(1, bytes);
                return f->slots ? 0 : -ENOMEM;
        }
        f->slots = aligned_alloc(huge, bytes);
        if (!f->slots)
                return -ENOMEM;
        (void)madvise(f->slots, bytes, MADV_HUGEPAGE);
        memset(f->slots, 0, bytes);
        return 0;
}

static uint64_t floor_get(struct floor_table *f, uint64_t size) {
        uint64_t x = f->bump, j = floor_home(f, x);
        f->bump += size;
        while (f->slots[j].size)
                j = (j + 1) & f->mask;
        f->slots[j] = (struct floor_slot){x, size};
        return x;
}

static int floor_put(struct floor_table *f, uint64_t start) {
        uint64_t j = floor_home(f, start);
        for (; f->slots[j].start != start; j = (j + 1) & f->mask)
                if (!f->slots[j].size)
                        return -ENOENT;
        /* Each entry behind the hole whose home is not between the hole and it moves into the hole. */
        for (uint64_t k = (j + 1) & f->mask; f->slots[k].size; k = (k + 1) & f->mask)
                if (((k - floor_home(f, f->slots[k].start)) & f->mask) >= ((k - j) & f->mask)) {
                        f->slots[j] = f->slots[k];
                        j = k;
                }
        f->slots[j].size = 0;
        return 0;
}

/* One allocator and its live ranges; exactly one of arena, ma, opae, floor is set. */
struct mix {
        struct range_arena *arena;
        struct mem_alloc ma;
        struct opae_list opae;
        struct floor_table floor;
        bool use_ma, use_opae, use_floor, aligned;
        struct live *live; /* one array, so that the benchmark's own step costs one cache miss */
        uint64_t n, next;
};

static struct mix refs[MIX_COLS], ref_floor;

/* The step's random number: the same sequence for every allocator. */
static uint64_t mix_rand(uint64_t step) {
        uint64_t z = (step + 1) * UINT64_C(0x9E3779B97F4A7C15);
        z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
        return z ^ (z >> 31);
}

static uint64_t mix_get(struct mix *m, unsigned lg) {
        uint64_t size = UINT64_C(1) << lg, x;
        struct range_req req = {.align = size};
        if (m->use_floor)
                return floor_get(&m->floor, size);
        int r = m->use_opae ? opae_get(&m->opae, &x, size)
                : m->use_ma ? mem_alloc_get(&m->ma, &x, size)
                            : range_alloc(m->arena, size, m->aligned ? &req : NULL, &x);
        if (r < 0)
                die("mixed churn: allocating", r);
        return x;
}

static void mix_put(struct mix *m, uint64_t i) {
        const struct live *l = &m->live[i];
        int r = m->use_floor  ? floor_put(&m->floor, l->start)
                : m->use_opae ? opae_put(&m->opae, l->start)
                : m->use_ma   ? mem_alloc_put(&m->ma, l->start)
                              : range_free(m->arena, l->start, UINT64_C(1) << l->log2size);
        if (r < 0)
                die("mixed churn: freeing", r);
}

static void mix_steps(void *subject, uint64_t first, unsigned count) {
        struct mix *m = subject;
        for (uint64_t s = first; s < first + count; s++) {
                /* A multiply, not a division: a 64-bit divide was a sixth of a pair at 1k live. */
                uint64_t z = mix_rand(s), i = ((z & 0xFFFFFFFF) * m->n) >> 32;
                mix_put(m, i);
                m->live[i].log2size = (uint8_t)(12 + (z >> 32) % 5);
                m->live[i].start = mix_get(m, m->live[i].log2size);
        }
}

enum flavour { ARENA, MEM_ALLOC, OPAE, FLOOR };

/* Fills n live ranges, then churns until the arena's shape no longer depends on the fill. */
static void mix_build(struct mix *m, int col, uint64_t n, enum flavour fl) {
        *m = (struct mix){.aligned = col_aligned[col],
                          .use_ma = fl == MEM_ALLOC,
                          .use_opae = fl == OPAE,
                          .use_floor = fl == FLOOR,
                          .n = n};
        uint64_t span = n * SPAN_PER_LIVE;
        int r;
        if (m->use_floor) {
                r = floor_init(&m->floor, n);
        } else if (m->use_opae) {
                opae_init(&m->opae);
                r = opae_add_free(&m->opae, 0, span);
        } else if (m->use_ma) {
                mem_alloc_init(&m->ma);
                r = mem_alloc_add_free(&m->ma, 0, span);
        } else if ((r = range_arena_new(&m->arena, col_quantum[col])) >= 0)
                r = range_add(m->arena, 0, span);
        m->live = malloc(n * sizeof(*m->live));
        if (r < 0 || !m->live)
                die("mixed churn: building", r < 0 ? r : -ENOMEM);
        for (uint64_t i = 0; i < n; i++) {
                m->live[i].log2size = (uint8_t)(12 + mix_rand(UINT64_MAX - i) % 5);
                m->live[i].start = mix_get(m, m->live[i].log2size);
        }
        uint64_t warm = n < 100000 ? 200000 : 2 * n;
        if (m->use_opae)
                warm = 2 * n; /* OPAE's steps are linear in n */
        mix_steps(m, 0, (unsigned)warm);
        m->next = warm;
}

static void mix_free(struct mix *m) {
        if (m->use_floor)
                free(m->floor.slots);
        else if (m->use_opae)
                opae_destroy(&m->opae);
        else if (m->use_ma)
                mem_alloc_destroy(&m->ma);
        else
                range_arena_free(m->arena);
        free(m->live);
}

void mix_init(void) {
        for (int c = 0; c < MIX_COLS; c++)
                mix_build(&refs[c], c, REF_LIVE, ARENA);
        mix_build(&ref_floor, 0, REF_LIVE, FLOOR);
}

void mix_done(void) {
        for (int c = 0; c < MIX_COLS; c++)
                mix_free(&refs[c]);
        mix_free(&ref_floor);
}

void mix_measure(struct mix_row *row) {
        struct mix cols[MIX_COLS], opae, ours, fl;
        double ns[MIX_COLS][TRIALS], ref_ns[MIX_COLS][TRIALS], o_ns[TRIALS], m_ns[TRIALS], f_ns[TRIALS],
                fref_ns[TRIALS];
        uint64_t ref_steps = 0;
        mix_build(&fl, 0, row->live, FLOOR);
        for (int c = 0; c < MIX_COLS; c++) {
                struct range_stats st;
                mix_build(&cols[c], c, row->live, ARENA);
                range_stats(cols[c].arena, &st);
                row->meta_per_seg[c] = (double)st.meta_bytes / (double)(st.free_segments + st.used_segments);
        }
        row->opae = row->live <= OPAE_MAX_LIVE;
        if (row->opae) {
                mix_build(&opae, 1, row->live, OPAE);
                mix_build(&ours, 1, row->live, MEM_ALLOC);
        }
        /* Interleaved trials, so that a slow spell of the machine hits every side. */
        for (int t = 0; t < TRIALS; t++) {
                for (int c = 0; c < MIX_COLS; c++) {
                        ns[c][t] = time_trial(mix_steps, &cols[c], 256, &cols[c].next, &row->steps[c]);
                        ref_ns[c][t] = time_trial(mix_steps, &refs[c], 256, &refs[c].next, &ref_steps);
                }
                f_ns[t] = time_trial(mix_steps, &fl, 256, &fl.next, &row->floor_steps);
                fref_ns[t] = time_trial(mix_steps, &ref_floor, 256, &ref_floor.next, &ref_steps);
                if (row->opae) {
                        o_ns[t] = time_trial(mix_steps, &opae, 1, &opae.next, &row->opae_steps);
                        m_ns[t] = time_trial(mix_steps, &ours, 256, &ours.next, &row->ours_steps);
                }
        }
        for (int c = 0; c < MIX_COLS; c++) {
                row->ns[c] = median(ns[c], TRIALS);
                row->ref_ns[c] = median(ref_ns[c], TRIALS);
                mix_free(&cols[c]);
        }
        row->floor_ns = median(f_ns, TRIALS);
        row->floor_ref_ns = median(fref_ns, TRIALS);
        mix_free(&fl);
        if (row->opae) {
                row->opae_ns = median(o_ns, TRIALS);
                row->ours_ns = median(m_ns, TRIALS);
                mix_free(&opae);
                mix_free(&ours);
        }
}

static const struct mix_row *mix_find(const struct mix_row *rows, size_t n, uint64_t live) {
        for (size_t i = 0; i < n; i++)
                if (rows[i].live == live)
                        return &rows[i];
        return NULL;
}

size_t mix_targets(const struct mix_row *rows, size_t n, struct target *t) {
        size_t nt = 0;
        double worst = 0, flat = 0;
        const struct mix_row *hi = mix_find(rows, n, 1000000), *mid = mix_find(rows, n, 10000);
        for (size_t i = 0; i < n; i++)
                for (int c = 0; c < MIX_COLS; c++) {
                        if (rows[i].ns[c] > worst)
                                worst = rows[i].ns[c];
                        if (hi == &rows[i] && rows[i].ns[c] / rows[i].ref_ns[c] > flat)
                                flat = rows[i].ns[c] / rows[i].ref_ns[c];
                }
        if (n)
                t[nt++] = (struct target){"mixed churn ns/pair, worst column and size", worst, 200, true};
        if (hi)
                t[nt++] = (struct target){"mixed churn 1M live / 1k live, worst column", flat, 1.5, true};
        if (mid)
                t[nt++] = (struct target){"OPAE mem_alloc / ours at 10k live", mid->opae_ns / mid->ours_ns, 220, false};
        return nt;
}

void mix_print(const struct mix_row *rows, size_t n) {
        printf("\nmixed churn: free a random live range of 4-64 KiB (powers of two), allocate one of a random\n"
               "such size; span = 48 KiB x live; aligned = align to the size; vs 1k = the same column on a\n"
               "1,000-live arena timed in the same trials; floor = the least any allocator must do on this\n"
               "churn (find the freed range by its start in a hash table, record the new one; no placement,\n"
               "no coalescing); OPAE = OPAE's mem_alloc list (bench/opae-list.c) against our mem_alloc on\n"
               "the same churn, up to %d live\n\n",
               OPAE_MAX_LIVE);
        printf("%12s |", "live ranges");
        for (int c = 0; c < MIX_COLS; c++)
                printf(" %14s  vs 1k  /floor |", mix_col_names[c]);
        printf(" %8s  vs 1k | %10s %9s %7s\n", "floor", "OPAE", "mem_alloc", "ratio");
        for (size_t i = 0; i < n; i++) {
                const struct mix_row *r = &rows[i];
                printf("%12llu |", (unsigned long long)r->live);
                for (int c = 0; c < MIX_COLS; c++)
                        printf(" %14.1f %5.2fx %6.2fx |", r->ns[c], r->ns[c] / r->ref_ns[c], r->ns[c] / r->floor_ns);
                printf(" %8.1f %5.2fx |", r->floor_ns, r->floor_ns / r->floor_ref_ns);
                if (r->opae)
                        printf(" %10.0f %9.1f %6.0fx\n", r->opae_ns, r->ours_ns, r->opae_ns / r->ours_ns);
                else
                        printf(" %10s %9s %7s\n", "-", "-", "-");
        }
        const struct mix_row *hi = mix_find(rows, n, 1000000);
        if (hi)
                printf("\nthe floor at 1M live: %.1f ns per pair, %.2fx its cost at 1k: the 200 ns target is %s\n",
                       hi->floor_ns, hi->floor_ns / hi->floor_ref_ns,
                       hi->floor_ns > 150   ? "at or below this machine's memory latency"
                       : hi->floor_ns > 100 ? "within this machine's reach only just"
                                            : "within this machine's reach");
}

struct json_object *mix_json(const struct mix_row *rows, size_t n) {
        json_object *jrows = json_object_new_array();
        for (size_t i = 0; i < n; i++) {
                const struct mix_row *r = &rows[i];
                json_object *o = json_object_new_object();
                json_object_object_add(o, "live", json_object_new_uint64(r->live));
                json_object *f = json_object_new_object();
                json_object_object_add(f, "ns", json_object_new_double(r->floor_ns));
                json_object_object_add(f, "reference_1k_ns", json_object_new_double(r->floor_ref_ns));
                json_object_object_add(f, "vs_1k", json_object_new_double(r->floor_ns / r->floor_ref_ns));
                json_object_object_add(f, "steps", json_object_new_uint64(r->floor_steps));
                json_object_object_add(o, "floor", f);
                for (int c = 0; c < MIX_COLS; c++) {
                        json_object *m = json_object_new_object();
                        json_object_object_add(m, "range_ns", json_object_new_double(r->ns[c]));
                        json_object_object_add(m, "reference_1k_ns", json_object_new_double(r->ref_ns[c]));
                        json_object_object_add(m, "vs_1k", json_object_new_double(r->ns[c] / r->ref_ns[c]));
                        json_object_object_add(m, "vs_floor", json_object_new_double(r->ns[c] / r->floor_ns));
                        json_object_object_add(m, "steps", json_object_new_uint64(r->steps[c]));
                        json_object_object_add(m, "meta_bytes_per_segment", json_object_new_double(r->meta_per_seg[c]));
                        json_object_object_add(o, mix_col_names[c], m);
                }
                if (r->opae) {
                        json_object *m = json_object_new_object();
                        json_object_object_add(m, "opae_ns", json_object_new_double(r->opae_ns));
                        json_object_object_add(m, "mem_alloc_ns", json_object_new_double(r->ours_ns));
                        json_object_object_add(m, "ratio", json_object_new_double(r->opae_ns / r->ours_ns));
                        json_object_object_add(m, "opae_steps", json_object_new_uint64(r->opae_steps));
                        json_object_object_add(m, "mem_alloc_steps", json_object_new_uint64(r->ours_steps));
                        json_object_object_add(o, "opae", m);
                }
                json_object_array_add(jrows, o);
        }
        return jrows;
}
