/* SPDX-License-Identifier: MIT */
#include "opae-list.h"

#include <errno.h>
#include <stdlib.h>

static void ring_init(struct opae_link *h) {
        *h = (struct opae_link){.prev = h, .next = h};
}

static void insert_before(struct opae_link *x, struct opae_link *at) {
        x->prev = at->prev;
        x->next = at;
        at->prev->next = x;
        at->prev = x;
}

static void unlink_one(struct opae_link *x) {
        x->prev->next = x->next;
        x->next->prev = x->prev;
}

static struct opae_link *node_new(uint64_t address, uint64_t size) {
        struct opae_link *l = malloc(sizeof(*l));
        if (l)
                *l = (struct opae_link){.address = address, .size = size};
        return l;
}

void opae_init(struct opae_list *m) {
        ring_init(&m->free);
        ring_init(&m->allocated);
}

static void ring_free(struct opae_link *h) {
        for (struct opae_link *l = h->next, *next; l != h; l = next) {
                next = l->next;
                free(l);
        }
        ring_init(h);
}

void opae_destroy(struct opae_list *m) {
        ring_free(&m->free);
        ring_free(&m->allocated);
}

/* Puts x into the sorted free list, merging it with the blocks it touches (OPAE's add_free). */
static void free_insert(struct opae_list *m, struct opae_link *x) {
        struct opae_link *h = &m->free, *at = h->next;
        while (at != h && at->address < x->address)
                at = at->next;
        insert_before(x, at);
        struct opae_link *p = x->prev, *n = x->next;
        if (p != h && p->address + p->size == x->address) {
                x->address = p->address;
                x->size += p->size;
                unlink_one(p);
                free(p);
        }
        if (n != h && x->address + x->size == n->address) {
                n->address = x->address;
                n->size += x->size;
                unlink_one(x);
                free(x);
        }
}

int opae_add_free(struct opae_list *m, uint64_t address, uint64_t size) {
        struct opae_link *x = node_new(address, size);
        if (!x)
                return -ENOMEM;
        free_insert(m, x);
        return 0;
}

int opae_get(struct opae_list *m, uint64_t *address, uint64_t size) {
        for (struct opae_link *f = m->free.next; f != &m->free; f = f->next) {
                uint64_t x = (f->address + size - 1) & ~(size - 1), end = f->address + f->size;
                if (x + size > end)
                        continue;
                struct opae_link *u;
                if (x == f->address && f->size == size) {
                        unlink_one(f); /* an exact fit moves the node itself */
                        u = f;
                } else if (x == f->address) {
                        if (!(u = node_new(x, size)))
                                return -ENOMEM;
                        f->address += size;
                        f->size -= size;
                } else {
                        struct opae_link *rest = NULL;
                        if (!(u = node_new(x, size)) ||
                            (x + size < end && !(rest = node_new(x + size, end - x - size)))) {
                                free(u);
                                return -ENOMEM;
                        }
                        f->size = x - f->address;
                        if (rest)
                                insert_before(rest, f->next);
                }
                insert_before(u, &m->allocated);
                *address = x;
                return 0;
        }
        return -ENOSPC;
}

int opae_put(struct opae_list *m, uint64_t address) {
        for (struct opae_link *u = m->allocated.next; u != &m->allocated; u = u->next)
                if (u->address == address) {
                        unlink_one(u);
                        free_insert(m, u);
                        return 0;
                }
        return -ENOENT;
}
