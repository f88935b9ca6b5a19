/* SPDX-License-Identifier: MIT */
#include "bench-allocd.h"
#include "bench-util.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <alloc/client.h>

static char tmpdirs[16][128];
static int ntmpdirs;
static pid_t tmpdirs_owner;

static void tmpdirs_remove(void) {
        if (getpid() != tmpdirs_owner)
                return;
        for (int i = 0; i < ntmpdirs; i++) {
                DIR *d = opendir(tmpdirs[i]);
                struct dirent *e;
                while (d && (e = readdir(d)))
                        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                                unlinkat(dirfd(d), e->d_name, 0);
                if (d)
                        closedir(d);
                rmdir(tmpdirs[i]);
        }
}

char *bench_mkdtemp(char *tmpl) {
        if (ntmpdirs == (int)(sizeof(tmpdirs) / sizeof(tmpdirs[0])) || strlen(tmpl) >= sizeof(tmpdirs[0])) {
                errno = ENOBUFS;
                return NULL;
        }
        if (!mkdtemp(tmpl))
                return NULL;
        if (!tmpdirs_owner) {
                tmpdirs_owner = getpid();
                atexit(tmpdirs_remove);
        }
        strcpy(tmpdirs[ntmpdirs++], tmpl);
        return tmpl;
}

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
        pid_t pid, parent = getpid();
        int r = -ETIMEDOUT;

        if ((pid = fork()) < 0) {
                *what = "fork";
                return -1;
        }
        if (pid == 0) {
                if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
                        _exit(127);
                if (cpu >= 0)
                        bench_pin(0, cpu);
                execl(allocd_path, "allocd", "--socket", sock, "--config", conf, "--log-level", "warning",
                      (char *)NULL);
                _exit(127);
        }
        *what = "allocd did not start";
        for (int i = 0; i < 2000; i++) {
                struct alloc_client *c;
                if ((r = alloc_connect(&c, sock, "bench-probe")) == 0) {
                        alloc_disconnect(c);
                        return pid;
                }
                if (waitpid(pid, NULL, WNOHANG) == pid) {
                        *what = "allocd exited at start (its messages are above)";
                        errno = ECHILD;
                        return -1;
                }
                if (r != -ENOENT && r != -ECONNREFUSED && r != -EAGAIN) { /* not "not listening yet" */
                        *what = alloc_last_error();
                        break;
                }
                r = -ETIMEDOUT;
                usleep(5000);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        errno = -r;
        return -1;
}
