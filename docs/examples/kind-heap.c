/* SPDX-License-Identifier: MIT */
/*
 * kind-heap: a memkind-style heap over an allocd pool (alloc_kind(3)).
 *
 *   kind-heap [POOL]         (default pool: host, one of allocd's built-in pools)
 *
 * Builds a linked list of 100,000 small nodes and a growing array in the
 * kind, frees a node by pointer alone (the kind is found from it), and shows
 * what the kind holds from allocd and how few requests that took: the
 * allocations are carved in this process, in regions allocctl dump lists.
 */
#include <alloc/kind.h>
#include <stdio.h>
#include <string.h>

struct node {
        struct node *next;
        int value;
};

int main(int argc, char **argv) {
        const char *pool = argc > 1 ? argv[1] : "host";
        struct alloc_client *c;
        struct alloc_memkind *kind;
        struct alloc_kind_stats st;
        struct node *list = NULL;
        int *array = NULL;
        long sum = 0;

        if (alloc_connect(&c, NULL, "kind-heap") < 0 || alloc_kind_create(c, pool, NULL, &kind) < 0) {
                fprintf(stderr, "kind-heap: %s\n", alloc_last_error());
                return 1;
        }
        for (int i = 0; i < 100000; i++) {
                struct node *n = alloc_kind_malloc(kind, sizeof(*n));
                int *grown = alloc_kind_realloc(kind, array, (size_t)(i + 1) * sizeof(int));
                if (!n || !grown) {
                        fprintf(stderr, "kind-heap: %s\n", alloc_last_error());
                        return 1;
                }
                *n = (struct node){.next = list, .value = i};
                list = n;
                array = grown;
                array[i] = i;
        }
        for (struct node *n = list; n; n = n->next)
                sum += n->value - array[n->value];
        /* Free by pointer alone: the kind is found from the pointer, as memkind_free(NULL, ptr) does. */
        printf("kind-heap: the list's head belongs to %s kind\n", alloc_kind_detect(list) == kind ? "this" : "another");
        printf("kind-heap: a stack variable belongs to %s\n", alloc_kind_detect(&sum) ? "a kind" : "no kind");
        while (list) {
                struct node *next = list->next;
                alloc_kind_free(NULL, list);
                list = next;
        }
        alloc_kind_stats(kind, &st);
        printf("kind-heap: 200000 allocations, checksum %ld; %llu regions (%llu bytes) held from pool %s, %llu "
               "requests to allocd\n",
               sum, (unsigned long long)st.regions, (unsigned long long)st.region_bytes, pool,
               (unsigned long long)st.round_trips);
        alloc_kind_free(kind, array);
        alloc_kind_destroy(kind);
        alloc_disconnect(c);
        return 0;
}
