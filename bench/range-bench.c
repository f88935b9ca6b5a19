/* SPDX-License-Identifier: MIT */
/*
 * range-bench: nanoseconds per alloc+free pair of the range allocator against
 * a first-fit sorted free list, measured in the same run on the same state.
 *
 * The state: N live one-quantum ranges with a one-quantum hole between each
 * two (fragmentation), then a large free tail.  A pair allocates 2..9 quanta
 * (too big for any hole) and frees it again.  "constrained" adds a 64 KiB
 * alignment, a 1 MiB boundary and a window that starts in the middle of the
 * holes.  "churn" frees a random live range and allocates a new one-quantum
 * range: every step touches a different part of the arena, so at large N it
 * measures cache misses as much as the algorithm.
 */

#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc/range.h"
#include "bench-util.h"
#include "firstfit.h"
#include "range-mixed.h"

#define Q UINT64_C(4096)
#define TAIL (UINT64_C(256) << 20)
#define NSIZES 1024

enum kind { UNCONSTRAINED, CONSTRAINED, CHURN };

struct workload {
        const char *name;
        enum kind kind;
};

static const struct workload workloads[] = {
        {"unconstrained", UNCONSTRAINED},
        {"constrained", CONSTRAINED},
        {"churn", CHURN},
};
#define NWORK (sizeof(workloads) / sizeof(workloads[0]))

struct row {
        uint64_t live;
        double range_ns[NWORK], ff_ns[NWORK];
        uint64_t range_pairs[NWORK], ff_pairs[NWORK];
        double meta_per_seg;
        double ref_ns; /* unconstrained pairs on the 1k-live reference arena, interleaved with this row's */
};

static uint64_t sizes[NSIZES];

static struct range_req range_req_for(uint64_t live, enum kind kind) {
        if (kind != CONSTRAINED)
                return (struct range_req){0};
        return (struct range_req){
                .align = 64 * 1024, .boundary = 1 << 20, .low = live * Q, .high = 2 * live * Q + TAIL / 2};
}

static struct range_arena *build_range(uint64_t live) {
        struct range_arena *a;
        uint64_t x;
        int r = range_arena_new(&a, Q);
        if (r < 0 || (r = range_add(a, 0, 2 * live * Q + TAIL)) < 0)
                die("building the arena", r);
        for (uint64_t i = 0; i < 2 * live; i++)
                if ((r = range_alloc(a, Q, NULL, &x)) < 0 || x != i * Q)
                        die("filling the arena", r < 0 ? r : -EPROTO);
        for (uint64_t i = 0; i < live; i++)
                if ((r = range_free(a, 2 * i * Q, Q)) < 0)
                        die("punching holes", r);
        return a;
}

static void build_ff(struct firstfit *f, uint64_t live) {
        int r = ff_init(f, (uint32_t)(live + 16));
        if (r < 0)
                die("building the first-fit list", r);
        for (uint64_t i = 0; i < live; i++)
                ff_append(f, 2 * i * Q, Q);
        ff_append(f, 2 * live * Q, TAIL);
}

/* The allocator under test and its state, for one workload. */
struct subject {
        struct range_arena *arena; /* or: */
        struct firstfit *ff;
        struct range_req req;
        uint64_t *live; /* churn: the live ranges */
        uint64_t nlive;
        uint64_t next; /* the next step */
};

static uint64_t *churn_slot(struct subject *s, uint64_t step) {
        uint64_t z = (step + 1) * UINT64_C(0x9E3779B97F4A7C15);
        z = (z ^ (z >> 31)) * UINT64_C(0xBF58476D1CE4E5B9);
        return &s->live[(z ^ (z >> 29)) % s->nlive];
}

static void range_pairs(void *subject, uint64_t first, unsigned count) {
        struct subject *s = subject;
        uint64_t x;
        for (uint64_t n = first; n < first + count; n++) {
                uint64_t size = sizes[n % NSIZES];
                int r = range_alloc(s->arena, size, &s->req, &x);
                if (r < 0 || (r = range_free(s->arena, x, size)) < 0)
                        die("range pair", r);
        }
}

static void range_churn(void *subject, uint64_t first, unsigned count) {
        struct subject *s = subject;
        for (uint64_t n = first; n < first + count; n++) {
                uint64_t *slot = churn_slot(s, n);
                int r = range_free(s->arena, *slot, Q);
                if (r < 0 || (r = range_alloc(s->arena, Q, NULL, slot)) < 0)
                        die("range churn", r);
        }
}

static struct ff_req ff_req_of(const struct range_req *r) {
        return (struct ff_req){.align = r->align, .boundary = r->boundary, .low = r->low, .high = r->high};
}

static void ff_pairs(void *subject, uint64_t first, unsigned count) {
        struct subject *s = subject;
        struct ff_req req = ff_req_of(&s->req);
        uint64_t x;
        for (uint64_t n = first; n < first + count; n++) {
                uint64_t size = sizes[n % NSIZES];
                int r = ff_alloc(s->ff, size, &req, &x);
                if (r < 0)
                        die("first-fit pair", r);
                ff_free(s->ff, x, size);
        }
}

static void ff_churn(void *subject, uint64_t first, unsigned count) {
        struct subject *s = subject;
        for (uint64_t n = first; n < first + count; n++) {
                uint64_t *slot = churn_slot(s, n);
                ff_free(s->ff, *slot, Q);
                int r = ff_alloc(s->ff, Q, NULL, slot);
                if (r < 0)
                        die("first-fit churn", r);
        }
}

/* The flatness reference: a 1,000-live arena, timed beside every row (see measure()). */
static struct range_arena *reference;

static void measure(struct row *row) {
        struct range_arena *a = build_range(row->live);
        struct range_stats st;
        range_stats(a, &st);
        row->meta_per_seg = (double)st.meta_bytes / (double)(st.free_segments + st.used_segments);
        struct firstfit f;
        build_ff(&f, row->live);
        /* The live ranges sit at the odd quanta; churn moves them, each allocator its own. */
        uint64_t *r_live = malloc(row->live * sizeof(uint64_t)), *f_live = malloc(row->live * sizeof(uint64_t));
        if (!r_live || !f_live)
                die("live-range lists", -ENOMEM);
        for (uint64_t i = 0; i < row->live; i++)
                r_live[i] = f_live[i] = (2 * i + 1) * Q;
        for (size_t w = 0; w < NWORK; w++) {
                bool churn = workloads[w].kind == CHURN;
                struct range_req req = range_req_for(row->live, workloads[w].kind);
                struct subject rs = {.arena = a, .req = req, .live = r_live, .nlive = row->live};
                struct subject fs = {.ff = &f, .req = req, .live = f_live, .nlive = row->live};
                /* Interleaved trials, so that a slow spell of the machine hits both sides. */
                double r_ns[TRIALS], f_ns[TRIALS], ref_ns[TRIALS];
                struct subject ref = {.arena = reference};
                uint64_t ref_steps = 0;
                for (int t = 0; t < TRIALS; t++) {
                        r_ns[t] =
                                time_trial(churn ? range_churn : range_pairs, &rs, 256, &rs.next, &row->range_pairs[w]);
                        f_ns[t] = time_trial(churn ? ff_churn : ff_pairs, &fs, 1, &fs.next, &row->ff_pairs[w]);
                        if (workloads[w].kind == UNCONSTRAINED)
                                ref_ns[t] = time_trial(range_pairs, &ref, 256, &ref.next, &ref_steps);
                }
                row->range_ns[w] = median(r_ns, TRIALS);
                row->ff_ns[w] = median(f_ns, TRIALS);
                if (workloads[w].kind == UNCONSTRAINED)
                        row->ref_ns = median(ref_ns, TRIALS);
        }
        free(r_live);
        free(f_live);
        ff_destroy(&f);
        range_arena_free(a);
}

static const struct row *find_row(const struct row *rows, size_t n, uint64_t live) {
        for (size_t i = 0; i < n; i++)
                if (rows[i].live == live)
                        return &rows[i];
        return NULL;
}

static void cpu_model(char *buf, size_t size) {
        FILE *fp = fopen("/proc/cpuinfo", "re");
        char line[256];
        snprintf(buf, size, "unknown");
        while (fp && fgets(line, sizeof(line), fp))
                if (strncmp(line, "model name", 10) == 0) {
                        char *v = strchr(line, ':');
                        if (v) {
                                snprintf(buf, size, "%s", v + 2);
                                buf[strcspn(buf, "\n")] = 0;
                        }
                        break;
                }
        if (fp)
                fclose(fp);
}

#define USAGE "Usage: range-bench [--json] [--cpu N] [--seconds S] [--live N[,N...]] [--only classic|mixed]"

static void usage(FILE *out) {
        fprintf(out,
                USAGE "\n"
                      "  --json         print JSON instead of a table\n"
                      "  --cpu N        pin to CPU N (default: not pinned; the CPUs used are reported)\n"
                      "  --seconds S    minimum time per measurement, over %d trials (default 0.3)\n"
                      "  --live LIST    live-range counts (default 1000,10000,100000,1000000)\n"
                      "  --only PART    only the classic workloads (first table) or only the mixed churn (second)\n",
                TRIALS);
}

int main(int argc, char **argv) {
        /* clang-format off */
        static const struct option opts[] = {
                {"json", no_argument, NULL, 'j'},          {"cpu", required_argument, NULL, 'c'},
                {"seconds", required_argument, NULL, 's'}, {"live", required_argument, NULL, 'l'},
                {"only", required_argument, NULL, 'o'},    {"help", no_argument, NULL, 'h'},
                {0},
        };
        /* clang-format on */
        int cpu = 0;
        bool json = false, pin = false, classic = true, mixed = true;
        uint64_t lives[16] = {1000, 10000, 100000, 1000000};
        size_t nrows = 4;
        int c;
        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1)
                switch (c) {
                case 'j':
                        json = true;
                        break;
                case 'c':
                        if (!bench_arg_cpu(USAGE, optarg, &cpu))
                                return 2;
                        pin = true;
                        break;
                case 's':
                        if (!bench_arg_seconds(USAGE, optarg, 0.001, 3600, &min_seconds))
                                return 2;
                        break;
                case 'l': {
                        const char *want = "1 to 16 counts from 1 to 100000000, separated by commas";
                        char *copy = strdup(optarg), *save = NULL;
                        if (!copy)
                                die("--live", -ENOMEM);
                        nrows = 0;
                        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
                                if (nrows == 16 || !parse_u64(tok, 1, 100000000, &lives[nrows++])) {
                                        free(copy);
                                        return bad_arg(USAGE, "--live", optarg, want);
                                }
                        free(copy);
                        if (nrows == 0)
                                return bad_arg(USAGE, "--live", optarg, want);
                        break;
                }
                case 'o':
                        if (strcmp(optarg, "classic") != 0 && strcmp(optarg, "mixed") != 0)
                                return bad_arg(USAGE, "--only", optarg, "classic or mixed");
                        classic = strcmp(optarg, "classic") == 0;
                        mixed = !classic;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        if (optind < argc) {
                fprintf(stderr, "range-bench: unexpected argument '%s'\n", argv[optind]);
                usage(stderr);
                return 2;
        }
        if (pin) {
                cpu_set_t set;
                CPU_ZERO(&set);
                CPU_SET(cpu, &set);
                if (sched_setaffinity(0, sizeof(set), &set) < 0) {
                        fprintf(stderr, "range-bench: cannot pin to CPU %llu: %m (CPUs allowed: see nproc)\n",
                                (unsigned long long)cpu);
                        return 2;
                }
        }

        uint64_t v = 42;
        for (int i = 0; i < NSIZES; i++) {
                v = v * 6364136223846793005ULL + 1442695040888963407ULL;
                sizes[i] = (2 + (v >> 33) % 8) * Q;
        }

        int cpu_first = sched_getcpu();
        struct row rows[16] = {0};
        struct mix_row mrows[16] = {0};
        size_t ncrows = classic ? nrows : 0, nmrows = mixed ? nrows : 0;
        reference = classic ? build_range(1000) : NULL;
        for (size_t i = 0; i < ncrows; i++) {
                rows[i].live = lives[i];
                measure(&rows[i]);
        }
        reference = range_arena_free(reference);
        if (mixed)
                mix_init();
        for (size_t i = 0; i < nmrows; i++) {
                mrows[i].live = lives[i];
                mix_measure(&mrows[i]);
        }
        if (mixed)
                mix_done();
        int cpu_last = sched_getcpu();

        char model[128], placement[96];
        cpu_model(model, sizeof(model));
        if (pin)
                snprintf(placement, sizeof(placement), "pinned to CPU %llu", (unsigned long long)cpu);
        else
                snprintf(placement, sizeof(placement), "not pinned (started on CPU %d, ended on CPU %d)", cpu_first,
                         cpu_last);

        /* The targets of the issue, checked against what this run measured. */
        struct target targets[8 + MIX_TARGETS];
        size_t nt = 0;
        const struct row *hi = find_row(rows, ncrows, 1000000), *mid = find_row(rows, ncrows, 10000);
        double worst_unc = 0;
        for (size_t i = 0; i < ncrows; i++)
                if (rows[i].range_ns[0] > worst_unc)
                        worst_unc = rows[i].range_ns[0];
        if (ncrows)
                targets[nt++] = (struct target){"unconstrained ns/pair, worst size", worst_unc, 150, true};
        if (hi)
                targets[nt++] = (struct target){"unconstrained 1M live / 1k live (interleaved)",
                                                hi->range_ns[0] / hi->ref_ns, 2, true};
        if (hi)
                targets[nt++] = (struct target){"constrained ns/pair at 1M live", hi->range_ns[1], 2000, true};
        if (mid)
                targets[nt++] = (struct target){"first-fit / range at 10k live, unconstrained",
                                                mid->ff_ns[0] / mid->range_ns[0], 100, false};
        if (mid)
                targets[nt++] = (struct target){"first-fit / range at 10k live, constrained",
                                                mid->ff_ns[1] / mid->range_ns[1], 100, false};
        nt += mix_targets(mrows, nmrows, targets + nt);

        if (json) {
                json_object *root = json_object_new_object(), *jrows = json_object_new_array(),
                            *jt = json_object_new_array();
                json_object_object_add(root, "benchmark", json_object_new_string("range-bench"));
                json_object_object_add(root, "cpu_model", json_object_new_string(model));
                json_object_object_add(root, "placement", json_object_new_string(placement));
                json_object_object_add(root, "quantum", json_object_new_uint64(Q));
                for (size_t i = 0; i < ncrows; i++) {
                        json_object *r = json_object_new_object();
                        json_object_object_add(r, "live", json_object_new_uint64(rows[i].live));
                        json_object_object_add(r, "meta_bytes_per_segment",
                                               json_object_new_double(rows[i].meta_per_seg));
                        json_object_object_add(r, "reference_1k_ns", json_object_new_double(rows[i].ref_ns));
                        json_object_object_add(r, "vs_1k",
                                               json_object_new_double(rows[i].range_ns[0] / rows[i].ref_ns));
                        for (size_t w = 0; w < NWORK; w++) {
                                json_object *m = json_object_new_object();
                                json_object_object_add(m, "range_ns", json_object_new_double(rows[i].range_ns[w]));
                                json_object_object_add(m, "firstfit_ns", json_object_new_double(rows[i].ff_ns[w]));
                                json_object_object_add(m, "ratio",
                                                       json_object_new_double(rows[i].ff_ns[w] / rows[i].range_ns[w]));
                                json_object_object_add(m, "range_pairs",
                                                       json_object_new_uint64(rows[i].range_pairs[w]));
                                json_object_object_add(m, "firstfit_pairs",
                                                       json_object_new_uint64(rows[i].ff_pairs[w]));
                                json_object_object_add(r, workloads[w].name, m);
                        }
                        json_object_array_add(jrows, r);
                }
                json_object_object_add(root, "rows", jrows);
                json_object_object_add(root, "mixed_churn", mix_json(mrows, nmrows));
                for (size_t i = 0; i < nt; i++) {
                        json_object *t = json_object_new_object();
                        json_object_object_add(t, "what", json_object_new_string(targets[i].what));
                        json_object_object_add(t, "value", json_object_new_double(targets[i].value));
                        json_object_object_add(t, "limit", json_object_new_double(targets[i].limit));
                        json_object_object_add(t, "at_most", json_object_new_boolean(targets[i].at_most));
                        bool met = targets[i].at_most ? targets[i].value <= targets[i].limit
                                                      : targets[i].value >= targets[i].limit;
                        json_object_object_add(t, "met", json_object_new_boolean(met));
                        json_object_array_add(jt, t);
                }
                json_object_object_add(root, "targets", jt);
                puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
                json_object_put(root);
                return 0;
        }

        printf("range-bench: %s, %s\n", model, placement);
        if (ncrows) {
                printf("\nns per alloc+free pair, quantum 4 KiB; ");
                printf("constrained = align 64 KiB, boundary 1 MiB, window from the middle of the holes; each figure "
                       "is the\n"
                       "median of %d interleaved trials; churn = free a random live range, allocate one quantum;\n"
                       "metadata = all arena heap / segments, growth slack included; flat = unconstrained ns\n"
                       "divided by the same pairs on a 1,000-live arena timed in the same trials\n\n",
                       TRIALS);
                printf("%12s |", "");
                for (size_t w = 0; w < NWORK; w++)
                        printf(" %28s |", workloads[w].name);
                printf(" %10s | %6s\n%12s |", "metadata", "flat", "live ranges");
                for (size_t w = 0; w < NWORK; w++)
                        printf(" %9s %10s %7s |", "range", "first-fit", "ratio");
                printf(" %10s | %6s\n", "B/segment", "vs 1k");
                for (size_t i = 0; i < ncrows; i++) {
                        const struct row *r = &rows[i];
                        printf("%12llu |", (unsigned long long)r->live);
                        for (size_t w = 0; w < NWORK; w++)
                                printf(" %9.1f %10.0f %6.0fx |", r->range_ns[w], r->ff_ns[w],
                                       r->ff_ns[w] / r->range_ns[w]);
                        printf(" %10.1f | %5.2fx\n", r->meta_per_seg, r->range_ns[0] / r->ref_ns);
                }
        }
        if (nmrows)
                mix_print(mrows, nmrows);
        printf("\n");
        for (size_t i = 0; i < nt; i++) {
                bool met = targets[i].at_most ? targets[i].value <= targets[i].limit
                                              : targets[i].value >= targets[i].limit;
                printf("target %-46s %10.2f %s %-6g %s\n", targets[i].what, targets[i].value,
                       targets[i].at_most ? "<=" : ">=", targets[i].limit, met ? "met" : "MISSED");
        }
        return 0;
}
