/* SPDX-License-Identifier: MIT */
/*
 * liballoc-client.
 *
 * Threads share one socket.  Each request gets a fresh id and is sent whole
 * (a SEQPACKET send is one packet, so sends need no ordering beyond the
 * lock).  Replies are read by whichever waiting thread finds no one else
 * reading; it files each reply under its id and wakes the others, so a
 * thread waiting for memory does not hold up another's status call.
 *
 * A reply may carry a pool's fd (the first region of that pool on this
 * connection); the reading thread maps the pool before it files the reply,
 * once, and the mapping is kept until disconnect.
 */
#include "alloc/client.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "allocd.pb-c.h"
#include "cuda-loader.h"
#include "gpu.h"
#include "wire.h"

struct pool_map {
        char *name;
        void *base; /* where the CPU reaches the pool; NULL for gpu pools */
        uint64_t size;
        struct gpu_map gpu;
};

struct pending {
        uint64_t id;
        Allocd__Reply *reply;
        int map_err; /* the pool fd that came with the reply could not be mapped */
        char map_msg[256];
        struct pending *next;
};

struct alloc_client {
        int fd;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        uint64_t next_id;
        bool reading;
        int sleepers; /* threads in pthread_cond_wait */
        int dead;     /* 0, or the negative errno that ended the connection */
        char dead_msg[256];
        struct pending *pending;
        struct pool_map *maps;
        size_t nmaps;
        uint8_t rbuf[WIRE_MAX_PACKET];
};

static __thread char last_error[512];

static int fail(int r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(last_error, sizeof(last_error), fmt, ap);
        va_end(ap);
        return r;
}

/* The connection is unusable from now on; every call reports why.  Lock held. */
static void die(struct alloc_client *c, int r, const char *why) {
        if (c->dead)
                return;
        /* However the socket says it, a peer that went away is one documented error. */
        if (r == -EPIPE || r == -ENOTCONN)
                r = -ECONNRESET;
        c->dead = r;
        snprintf(c->dead_msg, sizeof(c->dead_msg), "%s", why);
}

const char *alloc_last_error(void) {
        return last_error;
}

const char *alloc_cuda_unavailable(void) {
        const char *why;

        return cuda_get(&why) ? NULL : why;
}

/*
 * Maps the pool whose fd came with reply.  Done by the reading thread, under
 * the lock, before the reply is filed: another thread's reply for a later
 * region of the same pool may be read next, and finds the mapping made.
 */
static int map_pool(struct alloc_client *c, const Allocd__Reply *reply, int fd, char *err, size_t errsize) {
        const Allocd__Region *g = reply->body_case == ALLOCD__REPLY__BODY_REGION ? reply->region : NULL;
        struct pool_map *m;
        int r = 0;

        snprintf(err, errsize, "allocd sent a pool fd this library cannot use");
        if (!g || !g->pool_fd || !g->pool || !g->has_pool_size || g->pool_size == 0 || g->pool_size > SIZE_MAX)
                return -EPROTO;
        for (size_t i = 0; i < c->nmaps; i++)
                if (!strcmp(c->maps[i].name, g->pool))
                        return -EPROTO; /* sent once per connection; a second one is a daemon bug */
        m = realloc(c->maps, (c->nmaps + 1) * sizeof(*m));
        if (!m)
                return -ENOMEM;
        c->maps = m;
        m = &c->maps[c->nmaps];
        *m = (struct pool_map){.size = g->pool_size, .gpu = {.device = -1, .ctx_device = -1}};
        if (g->has_backing && g->backing == ALLOCD__BACKING__CUDA_VMM) {
                if (g->kind == ALLOCD__POOL_KIND__GPU && (!g->has_device_uuid || g->device_uuid.len != 16))
                        return -EPROTO;
                r = gpu_import(&m->gpu, fd, g->pool_size,
                               g->kind == ALLOCD__POOL_KIND__GPU ? g->device_uuid.data : NULL, err, errsize);
                if (r < 0)
                        return r;
                if (g->kind != ALLOCD__POOL_KIND__GPU)
                        m->base = (void *)(uintptr_t)m->gpu.va;
        } else {
                m->base = mmap(NULL, g->pool_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                if (m->base == MAP_FAILED) {
                        r = -errno;
                        snprintf(err, errsize, "%s", strerror(errno));
                        return r;
                }
                if (g->kind == ALLOCD__POOL_KIND__PINNED)
                        r = gpu_register(&m->gpu, m->base, g->pool_size, g->register_flags, err, errsize);
        }
        m->name = r == 0 ? strdup(g->pool) : NULL;
        if (!m->name) {
                if (r == 0)
                        snprintf(err, errsize, "out of memory");
                gpu_release(&m->gpu, m->base);
                if (!m->gpu.vmm && m->base)
                        munmap(m->base, g->pool_size);
                return r < 0 ? r : -ENOMEM;
        }
        c->nmaps++;
        return 0;
}

/* Reads one reply and files it under its id.  Called with the lock held, returns with it held. */
static void read_one(struct alloc_client *c) {
        struct wire_budget budget;
        int fd = -1;
        size_t nfds = 1;
        ssize_t n;

        c->reading = true;
        pthread_mutex_unlock(&c->lock);
        n = wire_recv(c->fd, c->rbuf, sizeof(c->rbuf), &fd, &nfds, 0);
        pthread_mutex_lock(&c->lock);
        c->reading = false;
        if (n <= 0) {
                die(c, n == 0 ? -ECONNRESET : (int)n, "the connection to allocd is gone");
        } else {
                wire_budget_init(&budget, WIRE_UNPACK_BUDGET, NULL, 0);
                Allocd__Reply *r = allocd__reply__unpack(&budget.allocator, (size_t)n, c->rbuf);
                struct pending *p = NULL;
                if (!r)
                        die(c, -EPROTO, "allocd sent a reply this library cannot decode");
                else
                        for (p = c->pending; p && (p->reply || p->id != r->id); p = p->next)
                                ;
                if (p) {
                        p->reply = r;
                        p->map_err = nfds ? map_pool(c, r, fd, p->map_msg, sizeof(p->map_msg)) : 0;
                        if (nfds)
                                close(fd);
                } else {
                        /* Unsolicited: a refusal (id 0) ends the connection with its reason. */
                        if (r && r->has_error && r->error != ALLOCD__ERROR__OK)
                                die(c, -wire_error_errno(r->error),
                                    r->message ? r->message : wire_error_name(r->error));
                        if (r)
                                allocd__reply__free_unpacked(r, NULL);
                        if (nfds)
                                close(fd);
                }
        }
        if (c->sleepers)
                pthread_cond_broadcast(&c->cond);
}

/* Sends req and waits for its reply; the caller frees *ret with allocd__reply__free_unpacked(..., NULL). */
static int call(struct alloc_client *c, Allocd__Request *req, Allocd__Reply **ret, struct pending *ret_map) {
        uint8_t buf[WIRE_MAX_PACKET];
        struct pending me = {0}, **pp;
        size_t len;
        int r = 0;

        *ret = NULL;
        if (ret_map)
                ret_map->map_err = 0;
        pthread_mutex_lock(&c->lock);
        if (c->dead) {
                r = c->dead;
                goto out;
        }
        req->has_id = true;
        req->id = me.id = ++c->next_id;
        len = allocd__request__get_packed_size(req);
        if (len > sizeof(buf)) {
                pthread_mutex_unlock(&c->lock);
                return fail(-EMSGSIZE, "request too large for one packet (%zu bytes)", len);
        }
        allocd__request__pack(req, buf);
        me.next = c->pending;
        c->pending = &me;
        r = wire_send(c->fd, buf, len, NULL, 0, 0);
        if (r < 0) {
                /* allocd may have said why it closed (a refused connection): that beats EPIPE. */
                if (!c->reading)
                        read_one(c);
                die(c, r, "the connection to allocd is gone");
        }
        while (!me.reply && !c->dead) {
                if (!c->reading)
                        read_one(c);
                else {
                        c->sleepers++;
                        pthread_cond_wait(&c->cond, &c->lock);
                        c->sleepers--;
                }
        }
        for (pp = &c->pending; *pp != &me; pp = &(*pp)->next)
                ;
        *pp = me.next;
        if (me.reply) {
                *ret = me.reply;
                if (ret_map && (ret_map->map_err = me.map_err) < 0)
                        memcpy(ret_map->map_msg, me.map_msg, sizeof(me.map_msg));
                r = 0;
        } else {
                r = c->dead;
        }
out:
        if (r < 0)
                fail(r, "%s (%s)", c->dead_msg, strerror(-r));
        pthread_mutex_unlock(&c->lock);
        return r;
}

/* 0 for an OK reply; else its error as a negative errno value, its message in last_error. */
static int reply_error(const Allocd__Reply *r) {
        if (!r->has_error || r->error == ALLOCD__ERROR__OK)
                return 0;
        return fail(-wire_error_errno(r->error), "%s", r->message ? r->message : wire_error_name(r->error));
}

int alloc_connect(struct alloc_client **ret, const char *socket_path, const char *client_name) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char def[sizeof(sa.sun_path)];
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Hello hello = ALLOCD__HELLO__INIT;
        Allocd__Reply *reply;
        struct alloc_client *c;
        int r;

        *last_error = '\0';
        if (!ret)
                return fail(-EINVAL, "alloc_connect: ret is NULL");
        *ret = NULL;
        if (!socket_path) {
                if ((r = wire_default_socket(def, sizeof(def))) < 0)
                        return fail(r, "no allocd socket: not root and XDG_RUNTIME_DIR is unset; set ALLOCD_SOCKET");
                socket_path = def;
        }
        if (strlen(socket_path) >= sizeof(sa.sun_path))
                return fail(-ENAMETOOLONG, "socket path %s is too long", socket_path);
        strcpy(sa.sun_path, socket_path);
        c = calloc(1, sizeof(*c));
        if (!c)
                return fail(-ENOMEM, "out of memory");
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->cond, NULL);
        c->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                r = fail(-errno, "cannot connect to allocd at %s: %s; is allocd running?", socket_path,
                         strerror(errno));
                alloc_disconnect(c);
                return r;
        }
        hello.has_version = true;
        hello.version = WIRE_VERSION;
        hello.client_name = (char *)(client_name ? client_name : program_invocation_short_name);
        req.body_case = ALLOCD__REQUEST__BODY_HELLO;
        req.hello = &hello;
        r = call(c, &req, &reply, NULL);
        if (r == 0) {
                r = reply_error(reply);
                if (r == 0 && reply->body_case != ALLOCD__REPLY__BODY_HELLO)
                        r = fail(-EPROTO, "allocd answered Hello with something else");
                allocd__reply__free_unpacked(reply, NULL);
        }
        if (r < 0) {
                alloc_disconnect(c);
                return r;
        }
        *ret = c;
        return 0;
}

struct alloc_client *alloc_disconnect(struct alloc_client *c) {
        if (!c)
                return NULL;
        if (c->fd >= 0)
                close(c->fd);
        for (size_t i = 0; i < c->nmaps; i++) {
                struct pool_map *m = &c->maps[i];
                bool vmm = m->gpu.vmm;
                gpu_release(&m->gpu, m->base);
                if (!vmm)
                        munmap(m->base, m->size);
                free(m->name);
        }
        free(c->maps);
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
}

/* Where region g is in this process: its host pointer, device address and device. */
static int locate(struct alloc_client *c, const Allocd__Region *g, const struct pending *map,
                  struct alloc_region *ret) {
        int r = -EPROTO;

        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < c->nmaps; i++) {
                const struct pool_map *m = &c->maps[i];
                if (!strcmp(m->name, g->pool)) {
                        if (g->size <= m->size && g->offset <= m->size - g->size) {
                                ret->ptr = m->base ? (char *)m->base + g->offset : NULL;
                                ret->dev_ptr = gpu_dev_ptr(&m->gpu, g->offset, g->size);
                                ret->device = m->gpu.device;
                                ret->registered = m->gpu.registered;
                                r = 0;
                        }
                        break;
                }
        }
        pthread_mutex_unlock(&c->lock);
        if (map->map_err < 0)
                return fail(map->map_err, "mapping pool %s (%llu bytes): %s", g->pool, (unsigned long long)g->pool_size,
                            map->map_msg);
        if (r < 0)
                return fail(r, "allocd sent a region of pool %s that this connection has not mapped, or outside it",
                            g->pool);
        return 0;
}

/* Turns a region reply into *ret; on failure the region is given back so nothing leaks. */
static int take_region(struct alloc_client *c, Allocd__Reply *reply, const struct pending *map,
                       struct alloc_region *ret) {
        const Allocd__Region *g = reply->region;
        struct alloc_region out = {.device = -1};
        int r;

        if (reply->body_case != ALLOCD__REPLY__BODY_REGION || !g || !g->has_id || !g->pool)
                return fail(-EPROTO, "allocd answered without a region");
        if (g->kind != ALLOCD__POOL_KIND__FPGA) {
                r = locate(c, g, map, &out);
                if (r < 0) {
                        char why[sizeof(last_error)];
                        memcpy(why, last_error, sizeof(why));
                        alloc_region_detach(c, g->id); /* nothing leaks; its result does not change ours */
                        memcpy(last_error, why, sizeof(why));
                        return r;
                }
        }
        out.id = g->id;
        out.kind = (enum alloc_kind)g->kind;
        out.addr = g->offset;
        out.size = g->size;
        *ret = out;
        return 0;
}

/* Runs req; for a region reply fills *region.  Returns 0 or a negative errno value. */
static int run(struct alloc_client *c, Allocd__Request *req, struct alloc_region *region) {
        Allocd__Reply *reply;
        struct pending map;
        int r;

        *last_error = '\0';
        if (!c)
                return fail(-EINVAL, "no connection (NULL)");
        r = call(c, req, &reply, &map);
        if (r < 0)
                return r;
        r = reply_error(reply);
        if (r == 0 && region)
                r = take_region(c, reply, &map, region);
        allocd__reply__free_unpacked(reply, NULL);
        return r;
}

int alloc_region_new(struct alloc_client *c, const char *pool, uint64_t size, const struct alloc_opts *opts,
                     struct alloc_region *ret) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;
        static const struct alloc_opts none;

        if (!pool || !ret)
                return fail(-EINVAL, "alloc_region_new: pool and ret must not be NULL");
        if (!opts)
                opts = &none;
        a.pool = (char *)pool;
        a.has_size = true;
        a.size = size;
        a.has_count = opts->count != 0;
        a.count = opts->count;
        /* Only what differs from the protocol's defaults goes on the wire: fewer fields, less to code. */
        a.has_align = (a.align = opts->align) != 0;
        a.has_phase = (a.phase = opts->phase) != 0;
        a.has_boundary = (a.boundary = opts->boundary) != 0;
        a.has_low = (a.low = opts->low) != 0;
        a.has_high = (a.high = opts->high) != 0;
        a.has_flags = (a.flags = opts->flags) != 0;
        a.has_numa_node = opts->on_node;
        a.numa_node = opts->on_node ? opts->numa_node : -1;
        if (opts->on_node && opts->numa_node < 0)
                return fail(-EINVAL, "on_node is set but numa_node is %d", opts->numa_node);
        a.has_timeout_ms = opts->timeout_ms != 0;
        a.timeout_ms = opts->timeout_ms;
        a.name = (char *)opts->name;
        req.body_case = ALLOCD__REQUEST__BODY_ALLOC;
        req.alloc = &a;
        return run(c, &req, ret);
}

int alloc_region_free(struct alloc_client *c, uint64_t id) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Free f = ALLOCD__FREE__INIT;

        f.has_region = true;
        f.region = id;
        req.body_case = ALLOCD__REQUEST__BODY_FREE;
        req.free = &f;
        return run(c, &req, NULL);
}

int alloc_region_attach(struct alloc_client *c, const char *name, struct alloc_region *ret) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Attach a = ALLOCD__ATTACH__INIT;

        if (!name || !ret)
                return fail(-EINVAL, "alloc_region_attach: name and ret must not be NULL");
        a.name = (char *)name;
        req.body_case = ALLOCD__REQUEST__BODY_ATTACH;
        req.attach = &a;
        return run(c, &req, ret);
}

int alloc_region_detach(struct alloc_client *c, uint64_t id) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Detach d = ALLOCD__DETACH__INIT;

        d.has_region = true;
        d.region = id;
        req.body_case = ALLOCD__REQUEST__BODY_DETACH;
        req.detach = &d;
        return run(c, &req, NULL);
}

static void copy_name(char *dst, size_t size, const char *src) {
        snprintf(dst, size, "%s", src ? src : "");
}

/* Sends req and checks that the answer is an OK reply of kind body; *ret is then the reply to free. */
static int call_for(struct alloc_client *c, Allocd__Request *req, Allocd__Reply__BodyCase body, const char *what,
                    Allocd__Reply **ret) {
        int r = call(c, req, ret, NULL);

        if (r < 0)
                return r;
        if ((r = reply_error(*ret)) == 0 && (*ret)->body_case != body)
                r = fail(-EPROTO, "allocd answered %s with something else", what);
        if (r < 0) {
                allocd__reply__free_unpacked(*ret, NULL);
                *ret = NULL;
        }
        return r;
}

/* Grows *array of *n elements of size each by more; 0 or -ENOMEM. */
static int grow(void *array, size_t *n, size_t more, size_t size) {
        void *p;

        if (more > SIZE_MAX / size - *n - 1)
                return fail(-ENOMEM, "out of memory");
        p = realloc(*(void **)array, (*n + more + 1) * size);
        if (!p)
                return fail(-ENOMEM, "out of memory");
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
                for (size_t j = 0; j < p->n_flags; j++)
                        o->register_flags |= !strcmp(p->flags[j], "portable")    ? ALLOC_REGISTER_PORTABLE
                                             : !strcmp(p->flags[j], "devicemap") ? ALLOC_REGISTER_DEVICEMAP
                                                                                 : 0;
                if (grow(&o->spans, &o->nspans, p->n_spans, sizeof(*o->spans)) < 0)
                        return -ENOMEM;
                for (size_t j = 0; j < p->n_spans; j++)
                        o->spans[o->nspans++] = (struct alloc_span){p->spans[j]->address, p->spans[j]->size};
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
        uint64_t last = 0;
        int r;

        *last_error = '\0';
        if (!c || !ret)
                return fail(-EINVAL, "alloc_status: c and ret must not be NULL");
        *ret = NULL;
        if (!(s = calloc(1, sizeof(*s))))
                return fail(-ENOMEM, "out of memory");
        req.body_case = ALLOCD__REQUEST__BODY_STATUS;
        req.status = &st;
        /* The pools come whole in the first reply; the clients in as many as it takes. */
        for (bool first = true;; first = false) {
                Allocd__Reply *reply;
                st.has_clients_after = !first;
                st.clients_after = last;
                uint64_t before = last;
                if ((r = call_for(c, &req, ALLOCD__REPLY__BODY_STATUS, "Status", &reply)) < 0)
                        break;
                r = first ? status_pools(s, reply->status) : 0;
                if (r == 0)
                        r = status_clients(s, reply->status, &last);
                allocd__reply__free_unpacked(reply, NULL);
                if (r < 0 || !s->clients_omitted || last == before)
                        break;
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
                for (size_t i = 0; i < s->npools; i++)
                        free(s->pools[i].spans);
                free(s->pools);
                free(s->clients);
                free(s->unavailable);
                free(s);
        }
        return NULL;
}

static int dump_regions(struct alloc_dump *d, const Allocd__DumpReply *dr, uint64_t *last) {
        if (grow(&d->regions, &d->nregions, dr->n_regions, sizeof(*d->regions)) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < dr->n_regions; i++) {
                const Allocd__Region *x = dr->regions[i];
                struct alloc_region_info *o = &d->regions[d->nregions++];
                o->id = x->id;
                copy_name(o->pool, sizeof(o->pool), x->pool);
                o->kind = (enum alloc_kind)x->kind;
                o->addr = x->offset;
                o->size = x->size;
                o->flags = x->flags;
                copy_name(o->name, sizeof(o->name), x->name);
                o->refs = x->refs;
                o->uid = x->uid;
                o->pid = x->pid;
                o->created = x->created;
                o->holders_omitted = x->holders_omitted;
                if (grow(&o->holders, &o->nholders, x->n_holders, sizeof(*o->holders)) < 0)
                        return -ENOMEM;
                for (size_t j = 0; j < x->n_holders; j++) {
                        struct alloc_holder *h = &o->holders[o->nholders++];
                        h->pid = x->holders[j]->pid;
                        h->uid = x->holders[j]->uid;
                        copy_name(h->name, sizeof(h->name), x->holders[j]->name);
                        copy_name(h->comm, sizeof(h->comm), x->holders[j]->comm);
                }
                *last = x->id;
        }
        return 0;
}

int alloc_dump(struct alloc_client *c, const char *pool, struct alloc_dump **ret) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Dump dm = ALLOCD__DUMP__INIT;
        struct alloc_dump *d;
        uint64_t last = 0;
        int r;

        *last_error = '\0';
        if (!c || !ret)
                return fail(-EINVAL, "alloc_dump: c and ret must not be NULL");
        *ret = NULL;
        if (!(d = calloc(1, sizeof(*d))))
                return fail(-ENOMEM, "out of memory");
        req.body_case = ALLOCD__REQUEST__BODY_DUMP;
        req.dump = &dm;
        dm.pool = (char *)pool;
        for (;;) {
                Allocd__Reply *reply;
                uint64_t before = last;
                dm.has_after = true;
                dm.after = last;
                if ((r = call_for(c, &req, ALLOCD__REPLY__BODY_DUMP, "Dump", &reply)) < 0)
                        break;
                r = dump_regions(d, reply->dump, &last);
                bool more = reply->dump->more;
                allocd__reply__free_unpacked(reply, NULL);
                if (r < 0 || !more || last == before)
                        break;
        }
        if (r < 0) {
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
