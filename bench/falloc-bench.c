/* SPDX-License-Identifier: MIT */
/*
 * falloc-bench: chunk get+free pairs per second of the falloc heap against
 * glibc's malloc/free of the chunk size and against a free list behind a
 * mutex, at 1 and 2 threads, measured in the same run, interleaved (5 trials
 * of each, the median).  Each thread keeps 8 chunks live in a ring: a pair
 * frees the oldest and gets a new one, and writes its first byte.  Then the
 * GPU part (falloc-gpu.c): every thread of a full-device grid against CUDA's
 * device malloc/free and against the floor of any bitmap heap (a bit set and
 * cleared), with issue 17's targets; skipped without a GPU.
 *
 *   falloc-bench [--json] [--seconds S] [--chunk BYTES]
 */
#include <getopt.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <alloc/falloc.h>

#include "bench-util.h"
#include "falloc-gpu.h"

#define RING 8
#define HEAP_BYTES (64u << 20)
/* Issue 17's GPU targets (an H200). */
#define GPU_VS_MALLOC 50.0
#define GPU_PAIRS_PER_SECOND 2e9

enum subject { FALLOC, MALLOC, MUTEX_LIST, NSUBJECTS };
static const char *const subject_names[NSUBJECTS] = {"falloc", "malloc", "mutex-list"};

static size_t chunk = FALLOC_DEFAULT_CHUNK;
static fallocDeviceHeap *heap;
static atomic_bool stop;

/* The baseline a heap is usually replaced with: one lock around a list of chunks. */
struct node {
        struct node *next;
};
static struct {
        pthread_mutex_t lock;
        struct node *head;
} list = {PTHREAD_MUTEX_INITIALIZER, NULL};

static void *get(enum subject s) {
        struct node *n;
        switch (s) {
        case FALLOC:
                return fallocGetChunk(heap);
        case MALLOC:
                return malloc(chunk);
        default:
                pthread_mutex_lock(&list.lock);
                n = list.head;
                if (n)
                        list.head = n->next;
                pthread_mutex_unlock(&list.lock);
                return n;
        }
}

static void put(enum subject s, void *p) {
        struct node *n = p;
        switch (s) {
        case FALLOC:
                fallocFreeChunk(p, heap);
                break;
        case MALLOC:
                free(p);
                break;
        default:
                pthread_mutex_lock(&list.lock);
                n->next = list.head;
                list.head = n;
                pthread_mutex_unlock(&list.lock);
        }
}

struct run {
        enum subject s;
        uint64_t pairs;
};

static void *thread_main(void *arg) {
        struct run *r = arg;
        void *ring[RING];
        uint64_t pairs = 0;
        for (int i = 0; i < RING; i++)
                ring[i] = get(r->s);
        while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
                for (int i = 0; i < RING; i++) {
                        put(r->s, ring[i]);
                        ring[i] = get(r->s);
                        if (!ring[i])
                                die("a chunk source ran dry", 0);
                        *(volatile char *)ring[i] = (char)i;
                }
                pairs += RING;
        }
        for (int i = 0; i < RING; i++)
                put(r->s, ring[i]);
        r->pairs = pairs;
        return NULL;
}

/* Pairs per second of nthreads threads on subject s for seconds. */
static double measure(enum subject s, int nthreads, double seconds) {
        pthread_t t[2];
        struct run r[2] = {{s, 0}, {s, 0}};
        struct timespec ts = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
        atomic_store(&stop, false);
        double t0 = now();
        for (int i = 0; i < nthreads; i++)
                if (pthread_create(&t[i], NULL, thread_main, &r[i]))
                        die("pthread_create", 0);
        nanosleep(&ts, NULL);
        atomic_store(&stop, true);
        for (int i = 0; i < nthreads; i++)
                pthread_join(t[i], NULL);
        double el = now() - t0;
        return (r[0].pairs + r[1].pairs) / el;
}

#define USAGE "Usage: falloc-bench [--json] [--seconds S] [--chunk BYTES]"

static void usage(void) {
        fprintf(stderr, USAGE "\n"
                              "  --seconds S    per subject and thread count (default 1), split over 5 trials\n"
                              "  --chunk BYTES  the chunk size (default 2046, rounded up to 2048)\n");
        exit(2);
}

int main(int argc, char **argv) {
        static const struct option longopts[] = {{"json", no_argument, NULL, 'j'},
                                                 {"seconds", required_argument, NULL, 's'},
                                                 {"chunk", required_argument, NULL, 'c'},
                                                 {NULL, 0, NULL, 0}};
        bool json = false;
        double seconds = 1.0, rate[2][NSUBJECTS], trial[NSUBJECTS][TRIALS];
        uint64_t v;
        int o;
        while ((o = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
                if (o == 'j')
                        json = true;
                else if (o == 's') {
                        if (!bench_arg_seconds(USAGE, optarg, 0.001, 3600, &seconds))
                                return 2;
                } else if (o == 'c') {
                        if (!parse_u64(optarg, 16, HEAP_BYTES, &v))
                                return bad_arg(USAGE, "--chunk", optarg, "a number of bytes, at least 16");
                        chunk = (size_t)v;
                } else
                        usage();
        }
        void *mem = aligned_alloc(FALLOC_CHUNKS_ALIGN, HEAP_BYTES), *pool = malloc(HEAP_BYTES);
        if (!mem || !pool || falloc_heap_format(mem, HEAP_BYTES, chunk, &heap) < 0)
                die("cannot make the heap", 0);
        chunk = heap->chunk_size;
        for (size_t off = 0; off + chunk <= HEAP_BYTES; off += chunk)
                put(MUTEX_LIST, (char *)pool + off);

        for (int nt = 1; nt <= 2; nt++) {
                for (int k = 0; k < TRIALS; k++)
                        for (int s = 0; s < NSUBJECTS; s++)
                                trial[s][k] = measure((enum subject)s, nt, seconds / TRIALS);
                for (int s = 0; s < NSUBJECTS; s++)
                        rate[nt - 1][s] = median(trial[s], TRIALS);
        }
        struct falloc_gpu_result g;
        falloc_gpu_bench(chunk, &g);

        if (json) {
                json_object *root = json_object_new_object(), *cpu = json_object_new_array(),
                            *gpu = json_object_new_object();
                json_object_object_add(root, "benchmark", json_object_new_string("falloc-bench"));
                json_object_object_add(root, "chunk_size", json_object_new_uint64(chunk));
                for (int nt = 1; nt <= 2; nt++) {
                        json_object *r = json_object_new_object();
                        json_object_object_add(r, "threads", json_object_new_int(nt));
                        for (int s = 0; s < NSUBJECTS; s++)
                                json_object_object_add(r, subject_names[s], json_object_new_double(rate[nt - 1][s]));
                        json_object_object_add(r, "vs_malloc",
                                               json_object_new_double(rate[nt - 1][FALLOC] / rate[nt - 1][MALLOC]));
                        json_object_object_add(r, "vs_mutex_list",
                                               json_object_new_double(rate[nt - 1][FALLOC] / rate[nt - 1][MUTEX_LIST]));
                        json_object_array_add(cpu, r);
                }
                json_object_object_add(root, "cpu_pairs_per_second", cpu);
                if (g.skipped[0]) {
                        json_object_object_add(gpu, "skipped", json_object_new_string(g.skipped));
                } else {
                        json_object_object_add(gpu, "device", json_object_new_string(g.device));
                        json_object_object_add(gpu, "threads", json_object_new_uint64(g.threads));
                        json_object_object_add(gpu, "falloc", json_object_new_double(g.falloc_rate));
                        json_object_object_add(gpu, "device_malloc", json_object_new_double(g.malloc_rate));
                        json_object_object_add(gpu, "vs_device_malloc",
                                               json_object_new_double(g.falloc_rate / g.malloc_rate));
                        json_object_object_add(gpu, "atomic_floor", json_object_new_double(g.floor_rate));
                        json_object_object_add(gpu, "of_floor", json_object_new_double(g.falloc_rate / g.floor_rate));
                        json_object_object_add(gpu, "target_vs_device_malloc_met",
                                               json_object_new_boolean(g.falloc_rate >= GPU_VS_MALLOC * g.malloc_rate));
                        json_object_object_add(gpu, "target_pairs_per_second_met",
                                               json_object_new_boolean(g.falloc_rate >= GPU_PAIRS_PER_SECOND));
                }
                json_object_object_add(root, "gpu_pairs_per_second", gpu);
                puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
                json_object_put(root);
        } else {
                printf("chunk get+free pairs per second, chunk %zu bytes, %d trials of %.2f s each (median)\n\n", chunk,
                       TRIALS, seconds / TRIALS);
                printf("%-8s %14s %14s %14s %10s %10s\n", "threads", "falloc", "malloc", "mutex-list", "vs malloc",
                       "vs mutex");
                for (int nt = 1; nt <= 2; nt++)
                        printf("%-8d %14.0f %14.0f %14.0f %9.2fx %9.2fx\n", nt, rate[nt - 1][FALLOC],
                               rate[nt - 1][MALLOC], rate[nt - 1][MUTEX_LIST],
                               rate[nt - 1][FALLOC] / rate[nt - 1][MALLOC],
                               rate[nt - 1][FALLOC] / rate[nt - 1][MUTEX_LIST]);
                if (g.skipped[0])
                        printf("\nGPU: skipped: %s\n", g.skipped);
                else {
                        printf("\nGPU (%s, %llu threads): falloc %.3g pairs/s, device malloc %.3g pairs/s, "
                               "atomic floor %.3g pairs/s (falloc is %.2f of it)\n",
                               g.device, (unsigned long long)g.threads, g.falloc_rate, g.malloc_rate, g.floor_rate,
                               g.falloc_rate / g.floor_rate);
                        printf("target GPU falloc / device malloc %14.1f >= %-6g %s\n", g.falloc_rate / g.malloc_rate,
                               GPU_VS_MALLOC, g.falloc_rate >= GPU_VS_MALLOC * g.malloc_rate ? "met" : "MISSED");
                        printf("target GPU falloc pairs/s         %14.3g >= %-6g %s\n", g.falloc_rate,
                               GPU_PAIRS_PER_SECOND, g.falloc_rate >= GPU_PAIRS_PER_SECOND ? "met" : "MISSED");
                }
        }
        free(pool);
        free(mem);
        return 0;
}
