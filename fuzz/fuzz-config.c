/* SPDX-License-Identifier: MIT */
/*
 * The configuration file: bytes -> config_load -> config_clear.  It must never
 * crash or leak (the sanitizers and libFuzzer's leak check see to that), a
 * file it accepts must hold what check_pool promises (pool names whole,
 * distinct and short enough; fpga windows on the quantum, none overlapping),
 * and a file it refuses must be told of as main.c prints it: "FILE:LINE:
 * what", with a line of the file.
 *
 * The input is written to one memfd, reopened by its /proc/self/fd path as
 * config_load opens a file: nothing touches the disk.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

static int fd = -1;
static char path[64];

static void die(const char *what, const char *err) {
        fprintf(stderr, "fuzz-config: %s: %s\n", what, err);
        abort();
}

/*
 * "PATH:LINE: text", LINE from 1 to the file's lines (+1: an error at its end); or the one error
 * of the whole file, "PATH: configures no pools; ...".
 */
static void check_error(const char *err, const uint8_t *data, size_t size) {
        size_t n = strlen(path), lines = 1;
        const char *p = err + n + 1;
        char *end;

        if (strncmp(err, path, n) == 0 && strncmp(err + n, ": configures no pools; ", 23) == 0)
                return;
        for (size_t i = 0; i < size; i++)
                lines += data[i] == '\n';
        if (strncmp(err, path, n) != 0 || err[n] != ':' || !isdigit((unsigned char)*p))
                die("the error does not start with FILE:LINE:", err);
        unsigned long line = strtoul(p, &end, 10);
        if (line < 1 || line > lines + 1 || end[0] != ':' || end[1] != ' ' || !end[2])
                die("the error's line is not one of the file's, or it says nothing", err);
}

/* What config_load promises of a file it accepts (check_pool, limit_key). */
static void check_config(const struct config *conf) {
        const struct limits *l = &conf->limits;

        if (!l->max_connections || !l->max_regions_per_connection || !l->max_names || !l->hello_timeout_ms)
                die("accepted", "a limit is 0");
        for (size_t i = 0; i < conf->npools; i++) {
                const struct pool_conf *pc = &conf->pools[i];
                uint64_t q = pc->quantum ? pc->quantum : FPGA_DEFAULT_QUANTUM;

                if (!pc->has_kind || !*pc->name || (pc->quantum & (pc->quantum - 1)))
                        die("accepted", "a pool without a kind or name, or a quantum not a power of two");
                if (pc->kind == POOL_FPGA && pc->nranges == 0)
                        die("accepted", "an fpga pool without ranges");
                if (strlen(pc->name) > POOL_NAME_MAX_LEN)
                        die("accepted", "a pool name longer than POOL_NAME_MAX_LEN");
                for (size_t j = 0; j < i; j++)
                        if (!strcmp(conf->pools[j].name, pc->name))
                                die("accepted", "two pools of one name");
                for (size_t j = 0; pc->kind == POOL_FPGA && j < pc->nranges; j++) {
                        const struct span *a = &pc->ranges[j];
                        if (a->base % q || a->size % q || !a->size)
                                die("accepted", "an fpga range off the quantum");
                        for (size_t k = 0; k < j; k++)
                                if (a->base < pc->ranges[k].base + pc->ranges[k].size &&
                                    pc->ranges[k].base < a->base + a->size)
                                        die("accepted", "two fpga ranges that overlap");
                }
                if (pc->kind != POOL_FPGA && pc->size == 0)
                        die("accepted", "a memory pool without a size");
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct config conf;
        char err[512];

        if (fd < 0) {
                fd = memfd_create("fuzz-config", MFD_CLOEXEC);
                if (fd < 0)
                        die("memfd_create", "failed");
                snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        }
        if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
                die("writing the memfd", "failed");
        err[0] = '\0';
        if (config_load(&conf, path, err, sizeof(err)) < 0)
                check_error(err, data, size);
        else
                check_config(&conf);
        config_clear(&conf);
        return 0;
}
