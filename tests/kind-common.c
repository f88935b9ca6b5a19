/* SPDX-License-Identifier: MIT */
/*
 * What the kind tests share: allocd with their pools (h, h2, tiny: host; f: fpga), a kind made on
 * one of them, bytes written and checked, and where a pool lies in this process.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "kind-common.h"

static const char *conf = "[pool h]\n"
                          "kind = host\n"
                          "size = 128M\n"
                          "mode = 0666\n"
                          "[pool h2]\n"
                          "kind = host\n"
                          "size = 32M\n"
                          "mode = 0666\n"
                          "[pool tiny]\n"
                          "kind = host\n"
                          "size = 2M\n"
                          "mode = 0666\n"
                          "[pool f]\n"
                          "kind = fpga\n"
                          "ranges = 0x100000000+1G\n"
                          "quantum = 4K\n";

struct daemon d;
struct alloc_client *c;

void setup(void) {
        daemon_start(&d, conf);
        c = daemon_connect(&d);
        /* Where alloc_kind_cuda_malloc finds allocd: it takes no connection. */
        setenv("ALLOCD_SOCKET", d.sock, 1);
}

void teardown(void) {
        alloc_disconnect(c);
        daemon_stop(&d);
}

struct alloc_memkind *make(const char *pool, const struct alloc_kind_opts *o) {
        struct alloc_memkind *k = NULL;

        cr_assert_eq(alloc_kind_create(c, pool, o, &k), 0, "%s", alloc_last_error());
        return k;
}

void fill(void *p, size_t n, unsigned seed) {
        for (size_t i = 0; i < n; i++)
                ((unsigned char *)p)[i] = (unsigned char)(seed + i * 7);
}

bool filled(const void *p, size_t n, unsigned seed) {
        for (size_t i = 0; i < n; i++)
                if (((const unsigned char *)p)[i] != (unsigned char)(seed + i * 7))
                        return false;
        return true;
}

/* The pool's base in this process: a plain region's pointer less its offset. */
uintptr_t pool_base(const char *pool) {
        struct alloc_region r;

        cr_assert_eq(alloc_region_new(c, pool, 4096, NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free(c, r.id), 0);
        return (uintptr_t)r.ptr - r.addr;
}
