/* SPDX-License-Identifier: MIT */
/*
 * allocctl: look at a running allocd.  For now one command: status, as a
 * table or as JSON (--json) for scripts and monitoring.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "alloc/client.h"

static const char *kind_name(enum alloc_kind k) {
        static const char *names[] = {"host", "fpga", "pinned", "gpu"};

        return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "unknown";
}

static void usage(FILE *f) {
        fprintf(f, "usage: allocctl [--socket PATH] status [--json]\n"
                   "\n"
                   "  status         pools (size, used, free, largest free piece, regions, waiters) and clients\n"
                   "  --json         the same as one JSON object\n"
                   "  -s, --socket   allocd's socket (default: $ALLOCD_SOCKET, /run/allocd/allocd.sock for root,\n"
                   "                 else $XDG_RUNTIME_DIR/allocd/allocd.sock)\n");
}

static json_object *u64(uint64_t v) {
        return json_object_new_uint64(v);
}

static int print_json(const struct alloc_status *s) {
        json_object *root = json_object_new_object(), *pools = json_object_new_array(),
                    *clients = json_object_new_array();

        for (size_t i = 0; i < s->npools; i++) {
                const struct alloc_pool_status *p = &s->pools[i];
                json_object *o = json_object_new_object();
                json_object_object_add(o, "name", json_object_new_string(p->name));
                json_object_object_add(o, "kind", json_object_new_string(kind_name(p->kind)));
                json_object_object_add(o, "size", u64(p->size));
                json_object_object_add(o, "used", u64(p->used));
                json_object_object_add(o, "free", u64(p->free));
                json_object_object_add(o, "largest_free", u64(p->largest_free));
                json_object_object_add(o, "regions", u64(p->regions));
                json_object_object_add(o, "waiters", u64(p->waiters));
                json_object_object_add(o, "quantum", u64(p->quantum));
                json_object_array_add(pools, o);
        }
        for (size_t i = 0; i < s->nclients; i++) {
                const struct alloc_client_status *k = &s->clients[i];
                json_object *o = json_object_new_object();
                json_object_object_add(o, "pid", json_object_new_int(k->pid));
                json_object_object_add(o, "uid", u64(k->uid));
                json_object_object_add(o, "name", json_object_new_string(k->name));
                json_object_object_add(o, "regions", u64(k->regions));
                json_object_object_add(o, "bytes", u64(k->bytes));
                json_object_object_add(o, "waiters", u64(k->waiters));
                json_object_array_add(clients, o);
        }
        json_object_object_add(root, "pools", pools);
        json_object_object_add(root, "clients", clients);
        json_object_object_add(root, "clients_omitted", u64(s->clients_omitted));
        puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(root);
        return 0;
}

static void print_table(const struct alloc_status *s) {
        printf("%-16s %-6s %14s %14s %14s %14s %8s %7s\n", "POOL", "KIND", "SIZE", "USED", "FREE", "LARGEST_FREE",
               "REGIONS", "WAITERS");
        for (size_t i = 0; i < s->npools; i++) {
                const struct alloc_pool_status *p = &s->pools[i];
                printf("%-16s %-6s %14" PRIu64 " %14" PRIu64 " %14" PRIu64 " %14" PRIu64 " %8" PRIu64 " %7" PRIu64 "\n",
                       p->name, kind_name(p->kind), p->size, p->used, p->free, p->largest_free, p->regions, p->waiters);
        }
        printf("\n%-8s %-8s %-20s %8s %14s %7s\n", "PID", "UID", "CLIENT", "REGIONS", "BYTES", "WAITERS");
        for (size_t i = 0; i < s->nclients; i++) {
                const struct alloc_client_status *k = &s->clients[i];
                printf("%-8d %-8u %-20s %8" PRIu64 " %14" PRIu64 " %7" PRIu64 "\n", (int)k->pid, (unsigned)k->uid,
                       k->name, k->regions, k->bytes, k->waiters);
        }
        if (s->clients_omitted)
                printf("(%" PRIu64 " more clients not listed)\n", s->clients_omitted);
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                {"socket", required_argument, NULL, 's'},
                {"json", no_argument, NULL, 'j'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        const char *socket_path = NULL;
        bool json = false;
        struct alloc_client *c;
        struct alloc_status *s;
        int o, r;

        while ((o = getopt_long(argc, argv, "+s:jh", opts, NULL)) != -1) {
                switch (o) {
                case 's':
                        socket_path = optarg;
                        break;
                case 'j':
                        json = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind >= argc) {
                usage(stderr);
                return 2;
        }
        if (strcmp(argv[optind], "status") != 0) {
                fprintf(stderr, "allocctl: unknown command '%s'; try 'allocctl --help'\n", argv[optind]);
                return 2;
        }
        for (int i = optind + 1; i < argc; i++) {
                if (!strcmp(argv[i], "--json")) {
                        json = true;
                } else {
                        fprintf(stderr, "allocctl: status: unexpected '%s'; try 'allocctl --help'\n", argv[i]);
                        return 2;
                }
        }
        r = alloc_connect(&c, socket_path, "allocctl");
        if (r < 0) {
                fprintf(stderr, "allocctl: %s\n", alloc_last_error());
                return 1;
        }
        r = alloc_status(c, &s);
        if (r < 0) {
                fprintf(stderr, "allocctl: status: %s\n", alloc_last_error());
                alloc_disconnect(c);
                return 1;
        }
        if (json)
                print_json(s);
        else
                print_table(s);
        alloc_status_free(s);
        alloc_disconnect(c);
        return 0;
}
