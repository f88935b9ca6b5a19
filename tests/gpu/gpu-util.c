/* SPDX-License-Identifier: MIT */
#include "gpu-util.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *gpu_path(const char *var, const char *built) {
        /* Kept for the life of the process, so that callers free nothing (and LeakSanitizer sees them). */
        static char *beside[8];
        const char *env = var ? getenv(var) : NULL, *name = strrchr(built, '/') ? strrchr(built, '/') + 1 : built;
        char self[PATH_MAX];
        ssize_t n;
        size_t i;

        if (env && *env)
                return env;
        for (i = 0; i < sizeof(beside) / sizeof(beside[0]) && beside[i]; i++)
                if (!strcmp(strrchr(beside[i], '/') + 1, name))
                        return access(beside[i], R_OK) == 0 ? beside[i] : built;
        n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (i == sizeof(beside) / sizeof(beside[0]) || n <= 0)
                return built;
        self[n] = 0;
        *strrchr(self, '/') = 0; /* the link is an absolute path */
        if (asprintf(&beside[i], "%s/%s", self, name) < 0) {
                beside[i] = NULL;
                return built;
        }
        return access(beside[i], R_OK) == 0 ? beside[i] : built;
}

#if HAVE_CUDA

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include <alloc/falloc.h>

static const struct cuda *cu;

void gpu_check(CUresult r, const char *what) {
        char buf[512];

        if (r == CUDA_SUCCESS)
                return;
        cuda_error(cu, r, what, buf, sizeof(buf));
        fprintf(stderr, "%s\n", buf);
        exit(1);
}

const struct cuda *gpu_setup(void) {
        const char *why;
        CUdevice dev;
        CUcontext ctx;

        int r = cuda_load(&cu, &why);

        /* A worker that died answers EPIPE, and the test goes on to its summary and cleanup. */
        signal(SIGPIPE, SIG_IGN);

        /* Only a machine without a GPU skips; a driver that is there and fails (cuInit's 802: no fabric
         * manager) or is too old is a failure that someone must see. */
        if (r == -ENODEV) {
                printf("skipped: %s\n", why);
                exit(EXIT_SKIP);
        }
        if (r < 0) {
                fprintf(stderr, "FAIL: %s\n", why);
                exit(1);
        }
        gpu_check(cu->cuDeviceGet(&dev, 0), "cuDeviceGet");
        gpu_check(cu->cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain");
        gpu_check(cu->cuCtxPushCurrent(ctx), "cuCtxPushCurrent");
        return cu;
}

/* Only said: a driver that cannot name its device fails the test where it matters, with the summary. */
void gpu_print_device(void) {
        char name[128] = "(unnamed)";
        CUdevice dev;

        if (cu->cuDeviceGet(&dev, 0) != CUDA_SUCCESS || cu->cuDeviceGetName(name, sizeof(name), dev) != CUDA_SUCCESS)
                snprintf(name, sizeof(name), "(unnamed)");
        printf("device 0: %s, driver CUDA %d.%d\n", name, cu->driver_version / 1000, cu->driver_version % 1000 / 10);
}

CUmodule gpu_load_module(const char *path) {
        static char image[4 << 20];
        FILE *f = fopen(access(path, R_OK) == 0 ? path : (path = gpu_path(NULL, path)), "rb");
        size_t n = f ? fread(image, 1, sizeof(image), f) : 0;
        CUmodule mod;

        if (f)
                fclose(f);
        if (n == 0 || n == sizeof(image)) {
                fprintf(stderr, "cannot read %s (or it passes 4 MiB)\n", path);
                exit(1);
        }
        gpu_check(cu->cuModuleLoadData(&mod, image), "cuModuleLoadData");
        return mod;
}

void gpu_falloc_format(CUdeviceptr dptr, uint64_t size, uint64_t chunk_size) {
        uint64_t meta = falloc_heap_meta_size(size, chunk_size);
        void *staging = meta ? malloc(meta) : NULL;

        if (!staging || falloc_heap_format(staging, size, chunk_size, NULL) < 0) {
                fprintf(stderr, "no falloc heap of %llu-byte chunks fits in %llu bytes\n",
                        (unsigned long long)chunk_size, (unsigned long long)size);
                exit(1);
        }
        gpu_check(cu->cuMemcpyHtoD(dptr, staging, meta), "cuMemcpyHtoD (the falloc header)");
        free(staging);
}

CUdeviceptr gpu_falloc_heap(uint64_t size, uint64_t chunk_size) {
        CUdeviceptr d;

        gpu_check(cu->cuMemAlloc(&d, size), "cuMemAlloc (a falloc heap)");
        gpu_falloc_format(d, size, chunk_size);
        return d;
}

struct gpu_proc gpu_spawn(const char *self, const char *name, char *const argv[]) {
        int to[2], from[2];
        struct gpu_proc p = {.name = name};

        if (pipe(to) < 0 || pipe(from) < 0)
                exit(1);
        p.pid = fork();
        if (p.pid == 0) {
                dup2(to[0], 0);
                dup2(from[1], 1);
                close(to[1]);
                close(from[0]);
                execv(self, argv);
                _exit(127);
        }
        close(to[0]);
        close(from[1]);
        p.in = fdopen(to[1], "w");
        p.out = fdopen(from[0], "r");
        setvbuf(p.in, NULL, _IOLBF, 0);
        return p;
}

void gpu_ask(struct gpu_proc *p, const char *cmd, char *answer, size_t size) {
        fprintf(p->in, "%s\n", cmd);
        if (!fgets(answer, (int)size, p->out))
                snprintf(answer, size, "error: the worker died");
        answer[strcspn(answer, "\n")] = '\0';
}

/*
 * The allocds this process started and their scratch folders: stopped and removed at exit whatever
 * path the test takes to it (a failed check exits 1 from anywhere), so that no run leaves an allocd
 * with gigabytes of locked and device memory behind.  PR_SET_PDEATHSIG covers a test killed outright.
 */
static struct started {
        pid_t pid; /* 0: stopped and reaped */
        char dir[32];
} started[8];
static size_t nstarted;

static void remove_dir(const char *dir) {
        char path[64];

        snprintf(path, sizeof(path), "%s/allocd.conf", dir);
        unlink(path);
        snprintf(path, sizeof(path), "%s/allocd.sock", dir);
        unlink(path);
        rmdir(dir);
}

int gpu_stop_allocd(pid_t pid, int sig) {
        int status = -1;

        for (size_t i = 0; i < nstarted; i++) {
                if (started[i].pid != pid || pid <= 0)
                        continue;
                kill(pid, sig);
                waitpid(pid, &status, 0);
                started[i].pid = 0;
                remove_dir(started[i].dir);
        }
        return status;
}

static void stop_all(void) {
        for (size_t i = 0; i < nstarted; i++)
                gpu_stop_allocd(started[i].pid, SIGTERM);
}

pid_t gpu_start_allocd(const char *allocd_path, const char *config, char *sock, size_t socksize) {
        char dir[] = "/tmp/allocd-gpu-XXXXXX", conf[128];
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        allocd_path = gpu_path("ALLOCD_PATH", allocd_path);
        if (nstarted == sizeof(started) / sizeof(started[0])) {
                fprintf(stderr, "more than %zu allocds in one test\n", nstarted);
                exit(1);
        }
        if (!mkdtemp(dir)) {
                perror("mkdtemp");
                exit(1);
        }
        if (nstarted == 0)
                atexit(stop_all);
        snprintf(conf, sizeof(conf), "%s/allocd.conf", dir);
        snprintf(sock, socksize, "%s/allocd.sock", dir);
        FILE *f = fopen(conf, "w");
        if (!f || fputs(config, f) < 0 || fclose(f) != 0) {
                perror(conf);
                exit(1);
        }
        /* fork+exec: never fork a process that has loaded CUDA without exec. */
        pid_t parent = getpid(), pid = fork();
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(1);
                execl(allocd_path, "allocd", "--config", conf, "--socket", sock, "--log-level", "warning",
                      (char *)NULL);
                _exit(127);
        }
        started[nstarted].pid = pid;
        snprintf(started[nstarted].dir, sizeof(started[nstarted].dir), "%s", dir);
        nstarted++;
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
        for (int i = 0; i < 3000; i++) {
                int status;
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        fprintf(stderr, "allocd exited (status %#x) before it listened on %s\n", status, sock);
                        exit(1);
                }
                int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
                int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
                close(fd);
                if (ok)
                        return pid;
                nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
        }
        fprintf(stderr, "allocd did not start on %s\n", sock);
        exit(1);
}
#endif
