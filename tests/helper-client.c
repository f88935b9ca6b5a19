/* SPDX-License-Identifier: MIT */
/*
 * A client for tests that need another process image (e.g. another uid after
 * setuid, or a process that has not loaded CUDA): helper-client SOCKET
 * alloc POOL SIZE | attach NAME | expect NAME TEXT | scribble NAME (writes
 * through cptr, which faults where the region is read-only).  Exits 0 on success,
 * else the errno value the call failed with (prints the message), or 99 when
 * the region does not start with TEXT.
 *
 * helper-client SOCKET fork POOL: allocates a region of POOL, forks, and in the child lets go of the
 * parent's connection and allocates in POOL on a connection of its own; prints "registered P C" (whether
 * each region is registered with CUDA), and exits with the child's status (98: killed by a signal).
 *
 * helper-client SOCKET alloc-zero POOL SIZE: a 4 KiB region of POOL, then an ALLOC_ZERO region of SIZE
 * bytes; prints the second's offset in the pool.
 *
 * helper-client SOCKET dev-persist POOL NAME TEXT: a PERSIST 4 KiB region NAME of POOL with TEXT written through its
 * dev_ptr; dev-expect NAME TEXT | dev-expect-free NAME TEXT: attaches NAME, 99 when it does not start with TEXT read
 * through its dev_ptr (then frees it).  For gpu pools with the fake driver (tests/fake-cuda.c), whose device memory
 * is mapped in the host's address space.
 *
 * SOCKET "-" is the library's default socket (alloc_connect with NULL).
 *
 * Counting limits: helper-client SOCKET conns N | names N POOL | persist N POOL | regions N POOL
 * tries N connections, N named 4 KiB regions of POOL ("helper-0", ..., each holding its
 * name as text where the pool has memory), N
 * PERSIST 4 KiB regions of POOL, or N plain 4 KiB regions of POOL, stopping at the first failure.  It writes one
 * line to stdout, "OK ERRNO MESSAGE" (how many succeeded, the errno value of
 * the one that failed or 0, and allocd's message or "-"), then holds what it
 * got until stdin reaches end of file, and exits with ERRNO.  helper-client SOCKET each N POOL is regions N POOL
 * that goes on past a failure (on the same connection); ERRNO and MESSAGE are the first failure's.  each-free N POOL
 * then frees (alloc_region_free) the regions it got, going on past a failure, and writes a second line, "FREED ERRNO
 * MESSAGE", of the frees.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <alloc/client.h>

#define HOLD_MAX 1024

static int hold(const char *sock, const char *op, int n, const char *pool) {
        static struct alloc_client *conns[HOLD_MAX];
        struct alloc_region r;
        char name[32], buf[64];
        bool each = !strcmp(op, "each") || !strcmp(op, "each-free");
        static uint64_t ids[HOLD_MAX];
        int ok = 0, e = 0, first = 0;
        char why[256] = "-";

        if (n < 0 || n > HOLD_MAX || (strcmp(op, "conns") && !pool))
                return 100;
        if (strcmp(op, "conns") && (e = alloc_connect(&conns[0], sock, "helper")) < 0)
                n = 0;
        for (int i = 0; i < n && (e == 0 || each); i++) {
                struct alloc_opts o = {0};
                if (!strcmp(op, "conns")) {
                        e = alloc_connect(&conns[i], sock, "helper");
                } else if (!strcmp(op, "names")) {
                        snprintf(name, sizeof(name), "helper-%d", i);
                        o.name = name;
                        e = alloc_region_new(conns[0], pool, 4096, &o, &r);
                        if (e == 0 && r.ptr)
                                strcpy(r.ptr, name); /* so that expect NAME NAME can check its bytes later */
                } else if (!strcmp(op, "persist") || !strcmp(op, "regions") || each) {
                        o.flags = strcmp(op, "persist") ? 0 : ALLOC_PERSIST;
                        e = alloc_region_new(conns[0], pool, 4096, &o, &r);
                } else {
                        return 100;
                }
                if (e == 0)
                        ids[ok++] = r.id;
                else if (!first && (first = e))
                        snprintf(why, sizeof(why), "%s", alloc_last_error());
        }
        if (!first && e) /* the connection failed */
                snprintf(why, sizeof(why), "%s", alloc_last_error());
        e = first ? first : e;
        printf("%d %d %s\n", ok, -e, why);
        if (!strcmp(op, "each-free")) {
                int freed = 0, fe = 0, k;
                for (int i = 0; i < ok; i++)
                        if ((k = alloc_region_free(conns[0], ids[i])) == 0)
                                freed++;
                        else if (!fe && (fe = k))
                                snprintf(why, sizeof(why), "%s", alloc_last_error());
                printf("%d %d %s\n", freed, -fe, fe ? why : "-");
        }
        fflush(stdout);
        while (read(0, buf, sizeof(buf)) > 0)
                ;
        for (int i = 0; i < HOLD_MAX; i++)
                alloc_disconnect(conns[i]);
        return -e;
}

/* A child of fork() of a process that used CUDA: the parent's connection let go, a new one of its own. */
static int forked(struct alloc_client *c, const char *sock, const char *pool) {
        struct alloc_region r, child;
        struct alloc_client *own = NULL;
        int e, status;
        pid_t pid;

        if ((e = alloc_region_new(c, pool, 4096, NULL, &r)) < 0)
                return e;
        fflush(stdout);
        if ((pid = fork()) == 0) {
                alloc_disconnect(c);
                if ((e = alloc_connect(&own, sock, "helper-child")) == 0 &&
                    (e = alloc_region_new(own, pool, 4096, NULL, &child)) == 0) {
                        ((volatile char *)child.ptr)[0] = 1;
                        printf("registered %d %d\n", r.registered, child.registered);
                }
                if (e < 0)
                        fprintf(stderr, "helper child: %s\n", alloc_last_error());
                alloc_disconnect(own);
                fflush(stdout);
                _exit(-e);
        }
        if (pid < 0 || waitpid(pid, &status, 0) != pid)
                return -ECHILD;
        return WIFEXITED(status) ? -WEXITSTATUS(status) : -98;
}

int main(int argc, char **argv) {
        if (argc > 1 && !strcmp(argv[1], "-"))
                argv[1] = NULL;
        struct alloc_client *c;
        struct alloc_region r;
        int e;

        if (argc < 4)
                return 100;
        if (!strcmp(argv[2], "conns") || !strcmp(argv[2], "names") || !strcmp(argv[2], "persist") ||
            !strcmp(argv[2], "regions") || !strcmp(argv[2], "each") || !strcmp(argv[2], "each-free"))
                return hold(argv[1], argv[2], atoi(argv[3]), argc > 4 ? argv[4] : NULL);
        if ((e = alloc_connect(&c, argv[1], "helper")) < 0) {
                fprintf(stderr, "helper: %s\n", alloc_last_error());
                return -e;
        }
        if (!strcmp(argv[2], "fork") && argc == 4) {
                e = forked(c, argv[1], argv[3]);
                alloc_disconnect(c);
                return -e;
        }
        if (!strcmp(argv[2], "alloc-zero") && argc == 5) {
                struct alloc_opts zero = {.flags = ALLOC_ZERO};
                if ((e = alloc_region_new(c, argv[3], 4096, NULL, &r)) == 0 &&
                    (e = alloc_region_new(c, argv[3], strtoull(argv[4], NULL, 0), &zero, &r)) == 0)
                        printf("%llu\n", (unsigned long long)r.addr);
                else
                        fprintf(stderr, "helper: %s\n", alloc_last_error());
                alloc_disconnect(c);
                return -e;
        }
        if ((!strcmp(argv[2], "dev-persist") && argc == 6) ||
            ((!strcmp(argv[2], "dev-expect") || !strcmp(argv[2], "dev-expect-free")) && argc == 5)) {
                const char *text = argv[argc - 1];
                if (!strcmp(argv[2], "dev-persist"))
                        e = alloc_region_new(c, argv[3], 4096,
                                             &(struct alloc_opts){.name = argv[4], .flags = ALLOC_PERSIST}, &r);
                else
                        e = alloc_region_attach(c, argv[3], NULL, &r);
                if (e == 0 && !r.dev_ptr)
                        e = -98;
                else if (e == 0 && !strcmp(argv[2], "dev-persist"))
                        strcpy((char *)(uintptr_t)r.dev_ptr, text);
                else if (e == 0 && strncmp((const char *)(uintptr_t)r.dev_ptr, text, strlen(text)))
                        e = -99;
                else if (e == 0 && !strcmp(argv[2], "dev-expect-free"))
                        e = alloc_region_free_sync(c, r.id);
                if (e < 0 && e > -98)
                        fprintf(stderr, "helper: %s\n", alloc_last_error());
                alloc_disconnect(c);
                return -e;
        }
        if (!strcmp(argv[2], "alloc") && argc == 5)
                e = alloc_region_new(c, argv[3], strtoull(argv[4], NULL, 0), NULL, &r);
        else if (!strcmp(argv[2], "attach-free")) {
                /* Refused, then an attach and a detach allocd accepts: sync reports the refusal, of this region. */
                if ((e = alloc_region_attach(c, argv[3], NULL, &r)) == 0 && alloc_region_free(c, r.id) == 0) {
                        struct alloc_region again;
                        char want[48];
                        snprintf(want, sizeof(want), "region %llu:", (unsigned long long)r.id);
                        if (alloc_region_attach(c, argv[3], NULL, &again) < 0 || alloc_region_detach(c, again.id) < 0)
                                e = -97;
                        else if ((e = alloc_region_sync(c)) < 0 && !strstr(alloc_last_error(), want))
                                e = -96;
                } else if (e == 0) {
                        e = -98;
                }
                r.ptr = NULL; /* given back, or not to be touched */
        } else if (!strcmp(argv[2], "attach") || !strcmp(argv[2], "scribble") ||
                   (!strcmp(argv[2], "expect") && argc == 5))
                e = alloc_region_attach(c, argv[3], NULL, &r);
        else
                return 100;
        if (e < 0)
                fprintf(stderr, "helper: %s\n", alloc_last_error());
        else if (argc == 5 && !strcmp(argv[2], "expect") && (!r.cptr || strncmp(r.cptr, argv[4], strlen(argv[4]))))
                e = -99;
        else if (!strcmp(argv[2], "scribble") && signal(SIGSEGV, SIG_DFL) != SIG_ERR) /* past a sanitizer's handler */
                ((volatile char *)r.cptr)[0] = 1; /* a read-only region: this faults */
        else if (r.ptr)
                ((volatile char *)r.ptr)[0] = 1; /* the mapping works for this uid too */
        alloc_disconnect(c);
        return -e;
}
