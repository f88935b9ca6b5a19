/* SPDX-License-Identifier: MIT */
#include "firstfit.h"

#include <errno.h>
#include <stdlib.h>

int ff_init(struct firstfit *f, uint32_t max_nodes) {
        *f = (struct firstfit){.cap = max_nodes + 1};
        f->nodes = calloc(f->cap, sizeof(*f->nodes));
        return f->nodes ? 0 : -ENOMEM;
}

void ff_destroy(struct firstfit *f) {
        free(f->nodes);
        f->nodes = NULL;
}

static uint32_t node_get(struct firstfit *f) {
        uint32_t i = f->spare;
        if (i)
                f->spare = f->nodes[i].next;
        else
                i = ++f->used;
        return i;
}

static void node_put(struct firstfit *f, uint32_t i) {
        f->nodes[i].next = f->spare;
        f->spare = i;
}

static void link_after(struct firstfit *f, uint32_t p, uint32_t i) {
        uint32_t n = p ? f->nodes[p].next : f->head;
        f->nodes[i].prev = p;
        f->nodes[i].next = n;
        if (p)
                f->nodes[p].next = i;
        else
                f->head = i;
        if (n)
                f->nodes[n].prev = i;
}

static void unlink_node(struct firstfit *f, uint32_t i) {
        uint32_t p = f->nodes[i].prev, n = f->nodes[i].next;
        if (p)
                f->nodes[p].next = n;
        else
                f->head = n;
        if (n)
                f->nodes[n].prev = p;
}

void ff_append(struct firstfit *f, uint64_t start, uint64_t size) {
        uint32_t i = node_get(f);
        f->nodes[i].start = start;
        f->nodes[i].size = size;
        link_after(f, f->head ? f->last : 0, i);
        f->last = i;
}

int ff_alloc(struct firstfit *f, uint64_t size, const struct ff_req *req, uint64_t *ret) {
        uint64_t align = req && req->align ? req->align : 1, boundary = req ? req->boundary : 0;
        uint64_t low = req ? req->low : 0, high = req && req->high ? req->high : UINT64_MAX;
        for (uint32_t i = f->head; i; i = f->nodes[i].next) {
                struct ff_node *b = &f->nodes[i];
                uint64_t lo = b->start > low ? b->start : low, end = b->start + b->size;
                uint64_t hi = end < high ? end : high;
                uint64_t x = (lo + align - 1) & ~(align - 1);
                if (boundary && (x ^ (x + size - 1)) & ~(boundary - 1))
                        x = ((x | (boundary - 1)) + 1 + align - 1) & ~(align - 1);
                if (x < lo || x >= hi || hi - x < size)
                        continue;
                if (x + size < end) {
                        uint32_t r = node_get(f);
                        if (r >= f->cap)
                                return -ENOMEM;
                        f->nodes[r].start = x + size;
                        f->nodes[r].size = end - (x + size);
                        link_after(f, i, r);
                }
                if (x > b->start)
                        b->size = x - b->start;
                else {
                        unlink_node(f, i);
                        node_put(f, i);
                }
                *ret = x;
                return 0;
        }
        return -ENOSPC;
}

void ff_free(struct firstfit *f, uint64_t start, uint64_t size) {
        uint32_t p = 0, n = f->head;
        while (n && f->nodes[n].start < start) {
                p = n;
                n = f->nodes[n].next;
        }
        if (p && f->nodes[p].start + f->nodes[p].size == start) {
                f->nodes[p].size += size;
                if (n && start + size == f->nodes[n].start) {
                        f->nodes[p].size += f->nodes[n].size;
                        unlink_node(f, n);
                        node_put(f, n);
                }
        } else if (n && start + size == f->nodes[n].start) {
                f->nodes[n].start = start;
                f->nodes[n].size += size;
        } else {
                uint32_t i = node_get(f);
                f->nodes[i].start = start;
                f->nodes[i].size = size;
                link_after(f, p, i);
        }
}
