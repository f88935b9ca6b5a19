/* SPDX-License-Identifier: MIT */
#include "bench-allocd.h"
#include "bench-util.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include <alloc/client.h>

pid_t bench_allocd_start(const char *allocd_path, const char *dir, const char *conf_text, char *sock, size_t socksize,
                         const char **what) {
        char conf[128];
        FILE *f;

        snprintf(conf, sizeof(conf), "%s/allocd.conf", dir);
        snprintf(sock, socksize, "%s/allocd.sock", dir);
        if (!(f = fopen(conf, "we")) || fputs(conf_text, f) < 0 || fclose(f) != 0) {
                *what = "writing the configuration";
                return -1;
        }
        return bench_allocd_spawn(allocd_path, conf, sock, -1, what);
}

pid_t bench_allocd_spawn(const char *allocd_path, const char *conf, const char *sock, int cpu, const char **what) {
        pid_t pid;

        if ((pid = fork()) < 0) {
                *what = "fork";
                return -1;
        }
        if (pid == 0) {
                if (cpu >= 0)
                        bench_pin(0, cpu);
                execl(allocd_path, "allocd", "--socket", sock, "--config", conf, "--log-level", "warning",
                      (char *)NULL);
                _exit(127);
        }
        for (int i = 0; i < 2000; i++) {
                struct alloc_client *c;
                if (alloc_connect(&c, sock, "bench-probe") == 0) {
                        alloc_disconnect(c);
                        return pid;
                }
                usleep(5000);
        }
        *what = "allocd did not start";
        errno = ETIMEDOUT;
        return -1;
}
