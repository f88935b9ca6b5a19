/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_CONFIG_H
#define ALLOCD_CONFIG_H

/* The configuration file (config.c) and what it fills: pools and limits. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define NAME_MAX_LEN 255       /* region names (and the room a pool_conf keeps for its name) */
#define CLIENT_NAME_MAX_LEN 63 /* Hello.client_name */
/* Pool names are shorter: they head a config line (197 characters at most), log lines and allocctl's tables. */
#define POOL_NAME_MAX_LEN 63
#define FPGA_DEFAULT_QUANTUM 4096 /* an fpga pool's quantum when the file gives none */
#define SPIN_DEFAULT_US 50        /* allocd.conf's spin when the file gives none (allocd.conf(5) says why) */
#define RECLAIM_GRACE_DEFAULT_MS                                                                                       \
        120000 /* allocd.conf's reclaim_grace: twice the client library's default reconnect bound */

/* The protocol's PoolKind values (proto.c checks that they agree). */
enum pool_kind { POOL_HOST = 0, POOL_FPGA = 1, POOL_PINNED = 2, POOL_GPU = 3 };

/* How a pinned pool is made (a gpu pool is always BACKEND_VMM). */
enum pool_backend { BACKEND_AUTO, BACKEND_MEMFD, BACKEND_VMM };

/* cuMemHostRegister's flags, by the values of CUDA's ABI (config.c needs no CUDA headers). */
#define REGISTER_PORTABLE 0x01u
#define REGISTER_DEVICEMAP 0x02u

/* Whom a pool's bytes are shared with (docs/configuration.md, "Who can touch which bytes"). */
enum pool_isolation {
        ISOLATION_POOL,   /* one mapping of the whole pool: every holder reaches every region's bytes */
        ISOLATION_REGION, /* each region its own memfd: a holder reaches the regions it holds, nothing else */
};

/* names = ...: the patterns of the names a pool reserves, one per line, at most this many bytes in all. */
#define NAME_PATTERNS_MAX 1023

struct span {
        uint64_t base, size;
};

struct pool_conf {
        char name[NAME_MAX_LEN + 1];
        enum pool_kind kind;
        bool has_kind;
        uint64_t size;       /* host */
        uint64_t quantum;    /* 0: the kind's default */
        uint64_t hugepage;   /* host: 0, 2 MiB or 1 GiB */
        bool lock;           /* host: mlock */
        int numa_node;       /* host: -1 none */
        struct span *ranges; /* fpga */
        size_t nranges;
        uid_t owner;
        gid_t group;
        mode_t mode;
        uint64_t quota_per_uid; /* 0: none */
        enum pool_backend backend;
        uint32_t register_flags; /* pinned: REGISTER_* */
        int device;              /* gpu: the device ordinal, as allocd sees it */
        enum pool_isolation isolation;
        char names[NAME_PATTERNS_MAX + 1]; /* fnmatch(3) patterns, each ending in '\n'; "" reserves none */
        uint32_t keys;                     /* the keys the section set, one bit each (config.c) */
        int line;                          /* where the section starts */
};

struct limits {
        uint32_t max_connections;
        uint32_t max_connections_per_uid;
        uint32_t max_regions_per_connection;
        uint32_t max_waiters_per_connection;
        uint32_t max_waiters_per_uid;
        uint32_t max_names;
        uint32_t max_names_per_uid;
        uint32_t max_persist_per_uid;
        uint32_t max_region_fds_per_uid;
        uint32_t wait_timeout_ms;  /* for requests that give none */
        uint32_t hello_timeout_ms; /* a connection that says nothing for this long is closed */
        uint32_t spin_us;          /* the loop polls this long after a request before it sleeps (awake.c) */
        uint32_t reclaim_grace_ms; /* a restored connection not reclaimed for this long is released (grace.c) */
};

/* A [daemon] key of struct limits: its name in allocd.conf(5), where it is kept, and in what. */
struct limit_key {
        const char *key;
        const char *unit; /* "" (a count), "ms" or "us": how the file's value is read and the field kept */
        size_t off;
};
/* Every limit, nlimit_keys of them (config.c parses them, reload-report.c says which changed). */
extern const struct limit_key limit_keys[];
extern const size_t nlimit_keys;

struct config {
        struct limits limits;
        int log_level;
        struct pool_conf *pools;
        size_t npools;
};

/* Fills *conf; on error returns a negative errno value and a "file:line: what" message in err. */
int config_load(struct config *conf, const char *path, char *err, size_t errsize);
/* The built-in configuration used when no file is given. */
int config_default(struct config *conf);
void config_clear(struct config *conf);
int parse_size(const char *s, uint64_t *ret);
const char *pool_kind_name(enum pool_kind k);
/* pc's quantum, or its kind's default where the file gives none. */
uint64_t pool_conf_quantum(const struct pool_conf *pc);

#endif
