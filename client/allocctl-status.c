/* SPDX-License-Identifier: MIT */
/*
 * allocctl status and allocctl clients: the pools, the daemon and its
 * connections, as a table or as JSON (docs/cli.md).
 */
#include "allocctl.h"

#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

static double fragmentation(const struct alloc_pool_status *p) {
        return p->free ? 1.0 - (double)p->largest_free / (double)p->free : 0.0;
}

/* ---- status ---- */

/* Per-uid use lines a pool gets in text, the most first; the rest are "and N more" (--json has allocd's all). */
#define USE_SHOWN 5

/* A uid's or gid's name here (allocd's may differ: another container), or NULL. */
static const char *user_name(uid_t uid) {
        const struct passwd *pw = getpwuid(uid);
        return pw ? pw->pw_name : NULL;
}

static const char *group_name(gid_t gid) {
        const struct group *gr = getgrgid(gid);
        return gr ? gr->gr_name : NULL;
}

/* The name, escaped as one word, or the number where there is none. */
static const char *id_text(const char *name, unsigned id, char *buf, size_t size) {
        if (name && strlen(name) < size / 4)
                return text_escape(name, true, buf, size);
        snprintf(buf, size, "%u", id);
        return buf;
}

static json_object *name_json(const char *name) {
        return name ? json_text(name) : NULL;
}

static void access_json(json_object *o, const struct alloc_pool_status *p) {
        char mode[8];

        if (!p->has_access)
                return; /* an older allocd: the keys are left out, not made up */
        json_object *usage = json_object_new_array();
        snprintf(mode, sizeof(mode), "%04o", (unsigned)p->mode);
        json_object_object_add(o, "owner", json_u64(p->owner));
        json_object_object_add(o, "owner_name", name_json(user_name(p->owner)));
        json_object_object_add(o, "group", json_u64(p->group));
        json_object_object_add(o, "group_name", name_json(group_name(p->group)));
        json_object_object_add(o, "mode", json_object_new_string(mode));
        json_object_object_add(o, "quota_per_uid", json_u64(p->quota_per_uid));
        for (size_t j = 0; j < p->nusage; j++) {
                json_object *u = json_object_new_object();
                json_object_object_add(u, "uid", json_u64(p->usage[j].uid));
                json_object_object_add(u, "user", name_json(user_name(p->usage[j].uid)));
                json_object_object_add(u, "bytes", json_u64(p->usage[j].bytes));
                json_object_object_add(u, "regions", json_u64(p->usage[j].regions));
                json_object_array_add(usage, u);
        }
        json_object_object_add(o, "usage", usage);
        json_object_object_add(o, "usage_omitted", json_u64(p->usage_omitted));
        json_object_object_add(o, "usage_hidden", json_object_new_boolean(p->usage_hidden));
}

/* "gpu0: used by alice: 6GiB in 3 regions, 75% of the quota" */
static void use_text(const struct alloc_pool_status *p, const char *name, const struct alloc_uid_usage *u) {
        char who[4 * 64 + 1], b[16];

        printf("%s: used by %s: %s in %" PRIu64 " region%s", name,
               id_text(user_name(u->uid), (unsigned)u->uid, who, sizeof(who)), fmt_size(u->bytes, b, sizeof(b)),
               u->regions, u->regions == 1 ? "" : "s");
        double pc = 100.0 * (double)u->bytes / (double)p->quota_per_uid;
        /* Rounded down: a uid at 99.6% has not reached its quota. */
        if (p->quota_per_uid && pc < 1)
                printf(", under 1%% of the quota");
        else if (p->quota_per_uid)
                printf(", %" PRIu64 "%% of the quota", (uint64_t)pc);
        putchar('\n');
}

/* "gpu0: access owner alice, group ml, mode 0660; quota 8GiB per uid", then who uses it, the most first. */
static void access_text(const struct alloc_pool_status *p, const char *name) {
        char who[4 * 64 + 1], grp[4 * 64 + 1], b[16];

        if (!p->has_access)
                return;
        printf("%s: access owner %s, group %s, mode %04o; ", name,
               id_text(user_name(p->owner), (unsigned)p->owner, who, sizeof(who)),
               id_text(group_name(p->group), (unsigned)p->group, grp, sizeof(grp)), (unsigned)p->mode);
        if (p->quota_per_uid)
                printf("quota %s per uid\n", fmt_size(p->quota_per_uid, b, sizeof(b)));
        else
                printf("no quota\n");
        /* allocd lists the caller's own uid whatever it ranks, so that it sees its use against the quota: so do we. */
        size_t mine = p->nusage;
        for (size_t j = USE_SHOWN; j < p->nusage && mine == p->nusage; j++)
                if (p->usage[j].uid == geteuid())
                        mine = j;
        for (size_t j = 0; j < p->nusage && j < USE_SHOWN; j++)
                use_text(p, name, &p->usage[j]);
        if (mine < p->nusage)
                use_text(p, name, &p->usage[mine]);
        uint64_t more = p->usage_omitted + (p->nusage > USE_SHOWN ? p->nusage - USE_SHOWN : 0) - (mine < p->nusage);
        /* allocd lists a few uids a pool, to keep its reply one packet: dump has every region, the rest's too. */
        if (more && !p->usage_omitted)
                printf("%s: and %" PRIu64 " more uid%s (allocctl --json status lists %s)\n", name, more,
                       more == 1 ? "" : "s", more == 1 ? "it" : "them");
        else if (more)
                printf("%s: and %" PRIu64 " more uid%s (allocctl dump %s lists every region)\n", name, more,
                       more == 1 ? "" : "s", name);
        if (p->usage_hidden)
                printf("%s: other uids' use not shown: you may neither attach nor allocate here\n", name);
}

static json_object *client_json(const struct alloc_client_status *k) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "serial", json_u64(k->serial));
        json_object_object_add(o, "pid", json_object_new_int(k->pid));
        json_object_object_add(o, "uid", json_u64(k->uid));
        json_object_object_add(o, "comm", json_text(k->comm));
        json_object_object_add(o, "name", json_text(k->name));
        json_object_object_add(o, "regions", json_u64(k->regions));
        json_object_object_add(o, "bytes", json_u64(k->bytes));
        json_object_object_add(o, "waiters", json_u64(k->waiters));
        json_object_object_add(o, "restored", json_object_new_boolean(k->restored));
        json_object_object_add(o, "watched", json_object_new_boolean(k->watched));
        return o;
}

static json_object *clients_json(const struct alloc_status *s) {
        json_object *a = json_object_new_array();
        for (size_t i = 0; i < s->nclients; i++)
                json_object_array_add(a, client_json(&s->clients[i]));
        return a;
}

static void clients_table(const struct alloc_status *s) {
        char b1[16], b2[ESCAPED_SIZE(s->clients->comm)], b3[ESCAPED_SIZE(s->clients->name)];

        printf("%-8s %-8s %-8s %-16s %8s %10s %8s %-14s  %s\n", "SERIAL", "PID", "UID", "COMMAND", "REGIONS", "BYTES",
               "WAITING", "STATE", "CLIENT");
        for (size_t i = 0; i < s->nclients; i++) {
                const struct alloc_client_status *k = &s->clients[i];
                /* restored: held until it reconnects or its process ends; restored:grace: until reclaim_grace. */
                const char *state = !k->restored ? "connected" : k->watched ? "restored" : "restored:grace";
                printf("%-8" PRIu64 " %-8d %-8u %-16s %8" PRIu64 " %10s %8" PRIu64 " %-14s  %s\n", k->serial,
                       (int)k->pid, (unsigned)k->uid, text_escape(k->comm, true, b2, sizeof(b2)), k->regions,
                       fmt_size(k->bytes, b1, sizeof(b1)), k->waiters, state,
                       text_escape(k->name, false, b3, sizeof(b3)));
        }
}

static json_object *pool_json(const struct alloc_pool_status *p) {
        json_object *o = json_object_new_object(), *spans = json_object_new_array();

        json_object_object_add(o, "name", json_text(p->name));
        json_object_object_add(o, "kind", json_text(kind_name(p->kind)));
        json_object_object_add(o, "size", json_u64(p->size));
        json_object_object_add(o, "used", json_u64(p->used));
        json_object_object_add(o, "free", json_u64(p->free));
        json_object_object_add(o, "largest_free", json_u64(p->largest_free));
        json_object_object_add(o, "fragmentation", json_object_new_double(fragmentation(p)));
        json_object_object_add(o, "regions", json_u64(p->regions));
        json_object_object_add(o, "waiters", json_u64(p->waiters));
        json_object_object_add(o, "quantum", json_u64(p->quantum));
        json_object_object_add(o, "backend", *p->backend ? json_text(p->backend) : NULL);
        if (p->kind != ALLOC_KIND_FPGA)
                json_object_object_add(o, "isolation", json_text(p->isolated ? "region" : "pool"));
        json_object_object_add(o, "names", json_text(p->names));
        if (*p->draining)
                json_object_object_add(o, "draining", json_text(p->draining));
        if (p->kind == ALLOC_KIND_GPU)
                json_object_object_add(o, "device", json_object_new_int(p->device));
        if (p->kind == ALLOC_KIND_PINNED && !strcmp(p->backend, "memfd")) {
                json_object *fl = json_object_new_array();
                if (p->register_flags & ALLOC_REGISTER_PORTABLE)
                        json_object_array_add(fl, json_object_new_string("portable"));
                if (p->register_flags & ALLOC_REGISTER_DEVICEMAP)
                        json_object_array_add(fl, json_object_new_string("devicemap"));
                json_object_object_add(o, "register_flags", fl);
        }
        for (size_t j = 0; j < p->nspans; j++) {
                json_object *sp = json_object_new_object();
                json_object_object_add(sp, "base", json_u64(p->spans[j].base));
                json_object_object_add(sp, "size", json_u64(p->spans[j].size));
                json_object_array_add(spans, sp);
        }
        json_object_object_add(o, "spans", spans);
        access_json(o, p);
        return o;
}

/* A pool column as wide as its longest name (escaped), at least min: a 63-character name would shift the rest. */
int pool_column(const struct alloc_status *s, int min) {
        char name[ESCAPED_SIZE(s->pools->name)];
        int w = min;

        for (size_t i = 0; i < s->npools + s->nunavailable; i++) {
                int n = (int)strlen(text_escape(i < s->npools ? s->pools[i].name : s->unavailable[i - s->npools].name,
                                                true, name, sizeof(name)));
                w = n > w ? n : w;
        }
        return w;
}

static void status_text(const struct alloc_status *s) {
        /* allocd's own words are escaped too: the socket may be anyone's (ALLOCD_SOCKET, --socket). */
        char up[32], b[5][16], name[ESCAPED_SIZE(s->pools->name)], words[ESCAPED_SIZE(s->pools->draining)];

        printf("allocd %s, up %s, %zu client%s\n\n", text_escape(s->daemon_version, false, words, sizeof(words)),
               fmt_age(s->uptime, up, sizeof(up)), s->nclients, s->nclients == 1 ? "" : "s");
        int w = pool_column(s, 16);
        printf("%-*s %-6s %-7s %10s %10s %10s %10s %6s %8s %8s\n", w, "POOL", "KIND", "BACKEND", "SIZE", "USED", "FREE",
               "LARGEST", "FRAG", "REGIONS", "WAITERS");
        for (size_t i = 0; i < s->npools; i++) {
                const struct alloc_pool_status *p = &s->pools[i];
                printf("%-*s %-6s %-7s %10s %10s %10s %10s %5.1f%% %8" PRIu64 " %8" PRIu64 "\n", w,
                       text_escape(p->name, true, name, sizeof(name)), kind_name(p->kind),
                       *p->backend ? text_escape(p->backend, true, words, sizeof(words)) : "-",
                       fmt_size(p->size, b[0], 16), fmt_size(p->used, b[1], 16), fmt_size(p->free, b[2], 16),
                       fmt_size(p->largest_free, b[3], 16), 100.0 * fragmentation(p), p->regions, p->waiters);
        }
        for (size_t i = 0; i < s->nunavailable; i++) {
                const struct alloc_unavailable_pool *u = &s->unavailable[i];
                printf("%-*s %-6s not available: %s\n", w, text_escape(u->name, true, name, sizeof(name)),
                       kind_name(u->kind), text_escape(u->reason, false, words, sizeof(words)));
        }
        /* What the table has no column for: who can reach which bytes, and whose names are whose. */
        for (size_t i = 0, n = 0; i < s->npools; i++) {
                const struct alloc_pool_status *p = &s->pools[i];
                char names[ESCAPED_SIZE(p->names)];
                text_escape(p->name, true, name, sizeof(name));
                if ((p->isolated || *p->names || *p->draining || p->has_access) && n++ == 0)
                        putchar('\n');
                if (*p->draining)
                        printf("%s: draining, takes no new regions: %s\n", name,
                               text_escape(p->draining, false, words, sizeof(words)));
                if (p->isolated)
                        printf("%s: isolation = region: each region is its own memory, a holder reaches only its own\n",
                               name);
                if (*p->names)
                        printf("%s: reserves the names %s\n", name, text_escape(p->names, false, names, sizeof(names)));
                access_text(p, name);
        }
        if (s->nclients) {
                putchar('\n');
                clients_table(s);
        }
}

int cmd_status(struct ctl *ctl, int argc, char **argv) {
        struct alloc_status *s;
        int r;
        (void)argc;
        (void)argv;

        if ((r = alloc_status(ctl->client, &s)) < 0)
                return request_failed("status", r);
        if (ctl->json) {
                json_object *o = json_object_new_object(), *pools = json_object_new_array();
                json_object_object_add(o, "version", json_text(s->daemon_version));
                json_object_object_add(o, "uptime", json_u64(s->uptime));
                json_object_object_add(o, "started", json_u64(s->started));
                for (size_t i = 0; i < s->npools; i++)
                        json_object_array_add(pools, pool_json(&s->pools[i]));
                json_object_object_add(o, "pools", pools);
                json_object *un = json_object_new_array();
                for (size_t i = 0; i < s->nunavailable; i++) {
                        json_object *u = json_object_new_object();
                        json_object_object_add(u, "name", json_text(s->unavailable[i].name));
                        json_object_object_add(u, "kind", json_text(kind_name(s->unavailable[i].kind)));
                        json_object_object_add(u, "reason", json_text(s->unavailable[i].reason));
                        json_object_array_add(un, u);
                }
                json_object_object_add(o, "unavailable", un);
                json_object_object_add(o, "clients", clients_json(s));
                json_print(o);
        } else {
                status_text(s);
        }
        alloc_status_free(s);
        return EXIT_OK;
}

/* ---- clients ---- */

int cmd_clients(struct ctl *ctl, int argc, char **argv) {
        struct alloc_status *s;
        int r;
        (void)argc;
        (void)argv;

        if ((r = alloc_status(ctl->client, &s)) < 0)
                return request_failed("clients", r);
        if (ctl->json)
                json_print(clients_json(s));
        else
                clients_table(s);
        alloc_status_free(s);
        return EXIT_OK;
}
