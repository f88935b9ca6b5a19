/* SPDX-License-Identifier: MIT */
/*
 * A client for tests that need another process image (e.g. another uid after
 * setuid, or a process that has not loaded CUDA): helper-client SOCKET
 * alloc POOL SIZE | attach NAME | expect NAME TEXT.  Exits 0 on success,
 * else the errno value the call failed with (prints the message), or 99 when
 * the region does not start with TEXT.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <alloc/client.h>

int main(int argc, char **argv) {
        struct alloc_client *c;
        struct alloc_region r;
        int e;

        if (argc < 4)
                return 100;
        if ((e = alloc_connect(&c, argv[1], "helper")) < 0) {
                fprintf(stderr, "helper: %s\n", alloc_last_error());
                return -e;
        }
        if (!strcmp(argv[2], "alloc") && argc == 5)
                e = alloc_region_new(c, argv[3], strtoull(argv[4], NULL, 0), NULL, &r);
        else if (!strcmp(argv[2], "attach") || (!strcmp(argv[2], "expect") && argc == 5))
                e = alloc_region_attach(c, argv[3], &r);
        else
                return 100;
        if (e < 0)
                fprintf(stderr, "helper: %s\n", alloc_last_error());
        else if (argc == 5 && !strcmp(argv[2], "expect") && (!r.ptr || strncmp(r.ptr, argv[4], strlen(argv[4]))))
                e = -99;
        else if (r.ptr)
                ((volatile char *)r.ptr)[0] = 1; /* the mapping works for this uid too */
        alloc_disconnect(c);
        return -e;
}
