/* SPDX-License-Identifier: MIT */
/*
 * alloc_status and alloc_dump: allocd's answers copied into the public
 * structs, so that a caller never sees protobuf.  Both may take several
 * requests: allocd pages its list of clients and of regions, and a list
 * grows as each page is appended.  Also the operator's alloc_drop_client,
 * which acts on what status lists.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client-internal.h"
#include "connection.h"

static void copy_name(char *dst, size_t size, const char *src) {
        snprintf(dst, size, "%s", src ? src : "");
}

/* Grows *array of *n elements of size each by more; 0 or -ENOMEM. */
static int grow(void *array, size_t *n, size_t more, size_t size) {
        void *p;

        if (more > SIZE_MAX / size - *n - 1)
                return client_fail(-ENOMEM, "out of memory");
        p = realloc(*(void **)array, (*n + more + 1) * size);
        if (!p)
                return client_fail(-ENOMEM, "out of memory");
        memset((char *)p + *n * size, 0, (more + 1) * size);
        *(void **)array = p;
        return 0;
}

static int status_pools(struct alloc_status *s, const Allocd__StatusReply *sr) {
        if (grow(&s->pools, &s->npools, sr->n_pools, sizeof(*s->pools)) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < sr->n_pools; i++) {
                const Allocd__PoolStatus *p = sr->pools[i];
                struct alloc_pool_status *o = &s->pools[s->npools++];
                copy_name(o->name, sizeof(o->name), p->name);
                o->kind = (enum alloc_kind)p->kind;
                o->size = p->size;
                o->used = p->used;
                o->free = p->free;
                o->largest_free = p->largest_free;
                o->regions = p->regions;
                o->waiters = p->waiters;
                o->quantum = p->quantum;
                copy_name(o->backend, sizeof(o->backend), p->backend);
                o->device = p->has_device ? p->device : -1;
                o->isolated = p->isolation && !strcmp(p->isolation, "region");
                copy_name(o->names, sizeof(o->names), p->names);
                copy_name(o->draining, sizeof(o->draining), p->draining);
                for (size_t j = 0; j < p->n_flags; j++)
                        o->register_flags |= !strcmp(p->flags[j], "portable")    ? ALLOC_REGISTER_PORTABLE
                                             : !strcmp(p->flags[j], "devicemap") ? ALLOC_REGISTER_DEVICEMAP
                                                                                 : 0;
                if (grow(&o->spans, &o->nspans, p->n_spans, sizeof(*o->spans)) < 0)
                        return -ENOMEM;
                for (size_t j = 0; j < p->n_spans; j++)
                        o->spans[o->nspans++] = (struct alloc_span){p->spans[j]->address, p->spans[j]->size};
                o->has_access = p->has_owner && p->has_group && p->has_mode && p->has_quota_per_uid;
                o->owner = p->owner;
                o->group = p->group;
                o->mode = p->mode;
                o->quota_per_uid = p->quota_per_uid;
                o->usage_omitted = p->usage_omitted;
                o->usage_hidden = p->usage_hidden;
                if (grow(&o->usage, &o->nusage, p->n_usage, sizeof(*o->usage)) < 0)
                        return -ENOMEM;
                for (size_t j = 0; j < p->n_usage; j++)
                        o->usage[o->nusage++] =
                                (struct alloc_uid_usage){p->usage[j]->uid, p->usage[j]->bytes, p->usage[j]->regions};
        }
        if (grow(&s->unavailable, &s->nunavailable, sr->n_unavailable, sizeof(*s->unavailable)) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < sr->n_unavailable; i++) {
                struct alloc_unavailable_pool *u = &s->unavailable[s->nunavailable++];
                copy_name(u->name, sizeof(u->name), sr->unavailable[i]->name);
                u->kind = (enum alloc_kind)sr->unavailable[i]->kind;
                copy_name(u->reason, sizeof(u->reason), sr->unavailable[i]->reason);
        }
        copy_name(s->daemon_version, sizeof(s->daemon_version), sr->daemon_version);
        s->uptime = sr->uptime;
        s->started = sr->started;
        return 0;
}

/* Appends the reply's clients; *last is the serial to ask after next. */
static int status_clients(struct alloc_status *s, const Allocd__StatusReply *sr, uint64_t *last) {
        if (grow(&s->clients, &s->nclients, sr->n_clients, sizeof(*s->clients)) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < sr->n_clients; i++) {
                const Allocd__ClientStatus *k = sr->clients[i];
                struct alloc_client_status *o = &s->clients[s->nclients++];
                o->pid = k->pid;
                o->uid = k->uid;
                copy_name(o->name, sizeof(o->name), k->name);
                copy_name(o->comm, sizeof(o->comm), k->comm);
                o->serial = k->serial;
                o->regions = k->regions;
                o->bytes = k->bytes;
                o->waiters = k->waiters;
                o->restored = k->has_restored && k->restored;
                o->watched = k->has_watched && k->watched;
                if (k->serial > *last)
                        *last = k->serial;
        }
        s->clients_omitted = sr->clients_omitted;
        return 0;
}

int alloc_status(struct alloc_client *c, struct alloc_status **ret) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Status st = ALLOCD__STATUS__INIT;
        struct alloc_status *s;
        struct timespec deadline;
        uint64_t last = 0, pages = 0;
        bool timed;
        int r;

        client_clear_error();
        if (!c || !ret)
                return client_fail(-EINVAL, "alloc_status: c and ret must not be NULL");
        *ret = NULL;
        if (!(s = calloc(1, sizeof(*s))))
                return client_fail(-ENOMEM, "out of memory");
        req.body_case = ALLOCD__REQUEST__BODY_STATUS;
        req.status = &st;
        /*
         * The pools come whole in the first reply; the clients in as many as it takes.  allocd lists each
         * connection once, so its pages end; an allocd that pages on for ever (a bug, or a hostile process at
         * the socket) would have this ask for ever, each page answered in time and the list growing, so all of
         * them share one timeout, the connection's.
         */
        timed = conn_plain_deadline(c, &deadline);
        for (bool first = true;; first = false, pages++) {
                Allocd__Reply *reply;
                st.has_clients_after = !first;
                st.clients_after = last;
                uint64_t before = last;
                if ((r = client_call_for(c, &req, ALLOCD__REPLY__BODY_STATUS, "Status", &reply)) < 0)
                        break;
                r = first ? status_pools(s, reply->status) : 0;
                if (r == 0)
                        r = status_clients(s, reply->status, &last);
                allocd__reply__free_unpacked(reply, NULL);
                if (r < 0 || !s->clients_omitted || last == before)
                        break;
                if (timed && conn_deadline_passed(&deadline)) {
                        r = client_fail(-ETIME,
                                        "allocd's Status went on past the timeout (%u ms): %llu pages listed %zu "
                                        "clients, and it says %llu more are left out",
                                        c->timeout_ms, (unsigned long long)pages + 1, s->nclients,
                                        (unsigned long long)s->clients_omitted);
                        break;
                }
        }
        if (r < 0) {
                alloc_status_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

struct alloc_status *alloc_status_free(struct alloc_status *s) {
        if (s) {
                for (size_t i = 0; i < s->npools; i++) {
                        free(s->pools[i].spans);
                        free(s->pools[i].usage);
                }
                free(s->pools);
                free(s->clients);
                free(s->unavailable);
                free(s);
        }
        return NULL;
}

/* Holders a Dump reply lists per region (allocd's own limit); more are counted as omitted. */
#define DUMP_HOLDERS_MAX 32

/* One region of a Dump reply as the API shows it; holders point into x until the next page. */
static void region_info(const Allocd__Region *x, struct alloc_region_info *o, struct alloc_holder *holders) {
        *o = (struct alloc_region_info){
                .id = x->id,
                .kind = (enum alloc_kind)x->kind,
                .addr = x->offset,
                .size = x->size,
                .flags = x->flags,
                .refs = x->refs,
                .uid = x->uid,
                .pid = x->pid,
                .created = x->created,
                .holders = holders,
                .holders_omitted = x->holders_omitted,
                .format = (enum alloc_format)x->format,
                .chunk_size = x->chunk_size,
                .chunk_count = x->chunk_count,
        };
        copy_name(o->pool, sizeof(o->pool), x->pool);
        copy_name(o->name, sizeof(o->name), x->name);
        for (size_t j = 0; j < x->n_holders && j < DUMP_HOLDERS_MAX; j++) {
                struct alloc_holder *h = &holders[o->nholders++];
                h->pid = x->holders[j]->pid;
                h->uid = x->holders[j]->uid;
                copy_name(h->name, sizeof(h->name), x->holders[j]->name);
                copy_name(h->comm, sizeof(h->comm), x->holders[j]->comm);
        }
        o->holders_omitted += (uint32_t)(x->n_holders - o->nholders);
}

/* Where a Dump with after = id starts: the slot after the id's (its low 32 bits); 0: the start. */
static uint64_t dump_pos(uint64_t id) {
        return id ? (uint64_t)(uint32_t)id + 1 : 0;
}

int alloc_dump_each(struct alloc_client *c, const char *pool,
                    int (*fn)(const struct alloc_region_info *region, void *data), void *data) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Dump dm = ALLOCD__DUMP__INIT;
        struct alloc_holder *holders;
        struct alloc_region_info info;
        uint64_t last = 0, after = 0, afresh;
        bool told = false;
        int r = 0;

        client_clear_error();
        if (!c || !fn)
                return client_fail(-EINVAL, "alloc_dump_each: c and fn must not be NULL");
        afresh = client_afresh(c);
        if (!(holders = calloc(DUMP_HOLDERS_MAX, sizeof(*holders))))
                return client_fail(-ENOMEM, "out of memory");
        req.body_case = ALLOCD__REQUEST__BODY_DUMP;
        req.dump = &dm;
        dm.pool = (char *)pool;
        for (;;) {
                Allocd__Reply *reply;
                uint64_t before = after;
                dm.has_after = true;
                dm.after = after;
                if ((r = client_call_for(c, &req, ALLOCD__REPLY__BODY_DUMP, "Dump", &reply)) < 0)
                        break;
                /* Pages of two allocds are no one dump: the next one's ids are no sequel of the first's. */
                if (told && client_afresh(c) != afresh) {
                        allocd__reply__free_unpacked(reply, NULL);
                        r = client_fail(-ESTALE, "allocd restarted without its state during the dump, after some "
                                                 "regions had been listed; dump again");
                        break;
                }
                if (client_afresh(c) != afresh) { /* none listed yet: the new allocd's dump, from its start */
                        afresh = client_afresh(c);
                        if (before) {
                                allocd__reply__free_unpacked(reply, NULL);
                                after = 0;
                                continue;
                        }
                }
                for (size_t i = 0; r == 0 && i < reply->dump->n_regions; i++) {
                        region_info(reply->dump->regions[i], &info, holders);
                        last = info.id;
                        told = true;
                        r = fn(&info, data);
                }
                bool more = reply->dump->more, has_next = reply->dump->has_next;
                uint64_t next = reply->dump->next;
                size_t n = reply->dump->n_regions;
                allocd__reply__free_unpacked(reply, NULL);
                if (r != 0 || !more)
                        break;
                /* An allocd before next: after the last id; a page that lists none ends the dump. */
                if (!has_next && (after = last) == before)
                        break;
                /* next moves on, past what was listed: else the dump would go round, or list twice. */
                if (has_next && (dump_pos(next) <= dump_pos(before) || (n && dump_pos(next) < dump_pos(last)))) {
                        r = client_fail(-EPROTO, "allocd's Dump reply went back (next %#llx after %#llx)",
                                        (unsigned long long)next, (unsigned long long)before);
                        break;
                }
                if (has_next)
                        after = next;
        }
        free(holders);
        return r;
}

struct collecting {
        struct alloc_dump *d;
        const struct alloc_client *c;
        bool timed;
        struct timespec deadline;
};

/*
 * alloc_dump's callback: a copy of each region, holders and all.  allocd lists each region once, so
 * its pages end; one that pages on for ever (a bug, or a hostile process at the socket) would have the
 * copy grow for ever, each page answered in time: all of them share one timeout, the connection's.
 */
static int collect(const struct alloc_region_info *x, void *data) {
        struct collecting *k = data;
        struct alloc_dump *d = k->d;
        struct alloc_region_info *o;

        if (k->timed && conn_deadline_passed(&k->deadline))
                return client_fail(-ETIME, "allocd's Dump went on past the timeout (%u ms): %zu regions listed so far",
                                   k->c->timeout_ms, d->nregions);

        /* Doubling: a million regions must not cost a million reallocs. */
        if ((d->nregions == 0 || (d->nregions >= 16 && !(d->nregions & (d->nregions - 1)))) &&
            grow(&d->regions, &d->nregions, d->nregions ? d->nregions : 16, sizeof(*d->regions)) < 0)
                return -ENOMEM;
        o = &d->regions[d->nregions++];
        *o = *x;
        o->holders = NULL;
        o->nholders = 0;
        if (x->nholders && grow(&o->holders, &o->nholders, x->nholders, sizeof(*o->holders)) < 0)
                return -ENOMEM;
        if (x->nholders)
                memcpy(o->holders, x->holders, x->nholders * sizeof(*o->holders));
        o->nholders = x->nholders;
        return 0;
}

int alloc_dump(struct alloc_client *c, const char *pool, struct alloc_dump **ret) {
        struct alloc_dump *d;
        int r;

        if (!c || !ret)
                return client_fail(-EINVAL, "alloc_dump: c and ret must not be NULL");
        *ret = NULL;
        if (!(d = calloc(1, sizeof(*d))))
                return client_fail(-ENOMEM, "out of memory");
        /* regions is never NULL, even for none: callers qsort it as they always could. */
        struct collecting k = {.d = d, .c = c};
        k.timed = conn_plain_deadline(c, &k.deadline);
        if ((r = alloc_dump_each(c, pool, collect, &k)) < 0 ||
            (!d->regions && (r = grow(&d->regions, &d->nregions, 0, sizeof(*d->regions))) < 0)) {
                alloc_dump_free(d);
                return r;
        }
        *ret = d;
        return 0;
}

struct alloc_dump *alloc_dump_free(struct alloc_dump *d) {
        if (d) {
                for (size_t i = 0; i < d->nregions; i++)
                        free(d->regions[i].holders);
                free(d->regions);
                free(d);
        }
        return NULL;
}

int alloc_drop_client(struct alloc_client *c, pid_t pid, uint64_t serial, uint32_t *ret_connections) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Disconnect m = ALLOCD__DISCONNECT__INIT;
        Allocd__Reply *reply;
        int r;

        client_clear_error();
        if (!c)
                return client_fail(-EINVAL, "alloc_drop_client: c is NULL");
        if ((pid > 0) == (serial != 0))
                return client_fail(-EINVAL, "alloc_drop_client: give either a pid above 0 or a serial");
        m.has_pid = pid > 0;
        m.pid = pid;
        m.has_serial = serial != 0;
        m.serial = serial;
        req.body_case = ALLOCD__REQUEST__BODY_DISCONNECT;
        req.disconnect = &m;
        if ((r = client_call_for(c, &req, ALLOCD__REPLY__BODY_DISCONNECT, "Disconnect", &reply)) < 0)
                return r;
        if (ret_connections)
                *ret_connections = reply->disconnect->connections;
        allocd__reply__free_unpacked(reply, NULL);
        return 0;
}
