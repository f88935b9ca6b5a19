/* SPDX-License-Identifier: MIT */
/*
 * gpu-path: where the GPU tests and benchmarks find allocd and their kernels (gpu_path in
 * gpu-util.h): $VAR first, else the file of that name beside the executable (a bundle of
 * scripts/gpu-bundle.sh, run from any folder), else the path meson compiled in.  Runs a copy of
 * itself in a scratch folder, with and without a file beside it.  Needs no GPU.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpu-util.h"

static char dir[] = "/tmp/gpu-path-XXXXXX";
static int failed;

/* The copy's answer for built, with $GPU_PATH_TEST set to env (or unset). */
static void expect(const char *env, const char *built, const char *want) {
        char cmd[512], got[512] = "";

        snprintf(cmd, sizeof(cmd), "%s%s %s/gpu-path probe %s", env ? "GPU_PATH_TEST=" : "env -u GPU_PATH_TEST",
                 env ? env : "", dir, built);
        FILE *p = popen(cmd, "r");
        if (!p || !fgets(got, sizeof(got), p) || pclose(p) != 0)
                got[0] = 0;
        got[strcspn(got, "\n")] = 0;
        if (strcmp(got, want)) {
                fprintf(stderr, "FAIL: %s: '%s', not '%s'\n", cmd, got, want);
                failed = 1;
        }
}

int main(int argc, char **argv) {
        char cmd[256], beside[128];

        if (argc == 3 && !strcmp(argv[1], "probe")) {
                puts(gpu_path("GPU_PATH_TEST", argv[2]));
                return 0;
        }
        if (!mkdtemp(dir))
                return perror("mkdtemp"), 1;
        snprintf(cmd, sizeof(cmd), "cp /proc/%d/exe %s/gpu-path", (int)getpid(), dir);
        if (system(cmd) != 0)
                return fprintf(stderr, "%s failed\n", cmd), 1;
        expect(NULL, "/built/allocd", "/built/allocd");
        snprintf(beside, sizeof(beside), "%s/allocd", dir);
        fclose(fopen(beside, "w"));
        expect(NULL, "/built/allocd", beside);
        expect("/from/env", "/built/allocd", "/from/env");
        expect(NULL, "/built/kernels.fatbin", "/built/kernels.fatbin");
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0)
                failed = 1;
        puts(failed ? "gpu-path: FAILED" : "gpu-path: ok");
        return failed;
}
