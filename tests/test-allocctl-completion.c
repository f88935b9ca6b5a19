/* SPDX-License-Identifier: MIT */
/*
 * allocctl's bash completion (client/allocctl.bash.in, as meson configured it): a non-interactive
 * bash sources it, sets what bash would (COMP_WORDS and COMP_CWORD; COMP_LINE and COMP_POINT too
 * unless words_only) for a command line, calls _allocctl and prints COMPREPLY.  Pools come from the
 * common allocd (h and f), through the allocctl meson built.
 */
#include <criterion/criterion.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allocctl-common.h"

TestSuite(completion, .init = setup, .fini = teardown, .timeout = 60);

/* Sources the script, with @ALLOCD_CONFIG@'s value (the fallback) replaced by $3 where $3 is set. */
static const char script[] =
        "if [ -n \"$3\" ]; then source <(sed \"s#$ALLOCD_CONFIG_DEFAULT#$3#g\" \"$1\"); else source \"$1\"; fi\n"
        "read -ra COMP_WORDS <<<\"$2\"\n"
        "[[ -z $2 || $2 == *' ' ]] && COMP_WORDS+=('')\n"
        "COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n"
        "if [ -z \"$WORDS_ONLY\" ]; then COMP_LINE=$2; COMP_POINT=${#2}; fi\n"
        "[ \"$(complete -p allocctl)\" = 'complete -F _allocctl allocctl' ] || exit 9\n"
        "_allocctl allocctl \"${COMP_WORDS[COMP_CWORD]}\" \"${COMP_WORDS[COMP_CWORD - 1]}\" || exit 8\n"
        "printf '%s\\n' \"${COMPREPLY[@]}\" | sort | tr '\\n' ' '\n";

/* COMPREPLY for line (what is typed before the cursor), sorted and joined by blanks ("" if empty). */
static const char *complete_line(const char *line, bool words_only, const char *config) {
        static char path[4096], out[8192];
        char dir[4096];
        int fd[2];

        snprintf(dir, sizeof(dir), "%s", ALLOCCTL_PATH);
        snprintf(path, sizeof(path), "%s:%s", dirname(dir), getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
        cr_assert(pipe(fd) == 0);
        pid_t pid = test_fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                dup2(fd[1], 1);
                setenv("PATH", path, 1);
                setenv("ALLOCD_CONFIG_DEFAULT", ALLOCD_CONFIG_DEFAULT, 1);
                unsetenv("ALLOCD_SOCKET");
                setenv("SOCK", d.sock, 1); /* for lines that name it as $SOCK or ~/allocd.sock */
                setenv("HOME", d.dir, 1);
                if (words_only)
                        setenv("WORDS_ONLY", "1", 1);
                execl("/bin/bash", "bash", "--norc", "--noprofile", "-c", script, "bash", COMPLETION_PATH, line,
                      config ? config : "", (char *)NULL);
                _exit(127);
        }
        close(fd[1]);
        size_t n = 0;
        ssize_t k;
        while (n + 1 < sizeof(out) && (k = read(fd[0], out + n, sizeof(out) - 1 - n)) > 0)
                n += (size_t)k;
        out[n] = '\0';
        close(fd[0]);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "bash for '%s' exited %d", line,
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        if (n && out[n - 1] == ' ')
                out[n - 1] = '\0';
        return out;
}

#define ASSERT_COMPLETES(line, want)                                                                                   \
        do {                                                                                                           \
                for (int w_ = 0; w_ < 2; w_++) {                                                                       \
                        const char *got_ = complete_line(line, w_, NULL);                                              \
                        cr_assert_str_eq(got_, want, "'%s'%s: '%s', not '%s'", line, w_ ? " (COMP_WORDS only)" : "",   \
                                         got_, want);                                                                  \
                }                                                                                                      \
        } while (0)

Test(completion, the_commands_are_those_allocctl_help_lists) {
        struct run *r = allocctl(NULL, "--help", (char *)NULL);
        char want[512] = "", *p = strstr(r->out, "commands:\n");
        cr_assert_not_null(p, "%s", r->out);
        for (p = strchr(p, '\n') + 1; !strncmp(p, "  ", 2); p = strchr(p, '\n') + 1) {
                char *w[1];
                char line[256];
                snprintf(line, sizeof(line), "%.*s", (int)strcspn(p, "\n"), p);
                cr_assert_eq(words(line, w, 1), 1);
                strcat(strcat(want, *want ? " " : ""), w[0]);
        }
        cr_assert_str_eq(want, "status dump clients free wait disconnect map metrics", "allocctl --help changed");
        ASSERT_COMPLETES("allocctl ", "clients disconnect dump free map metrics status wait");
        ASSERT_COMPLETES("allocctl d", "disconnect dump");
        ASSERT_COMPLETES("allocctl --json m", "map metrics");
        ASSERT_COMPLETES("allocctl --", "--help --json --socket --version");
        ASSERT_COMPLETES("allocctl map h --", "--help --json --rows --socket --svg --width");
        ASSERT_COMPLETES("allocctl status --j", "--json");
}

Test(completion, pool_names_for_dump_and_map_from_allocd) {
        char line[512];

        snprintf(line, sizeof(line), "allocctl --socket %s dump ", d.sock);
        ASSERT_COMPLETES(line, "f h");
        snprintf(line, sizeof(line), "allocctl -s %s map h", d.sock);
        ASSERT_COMPLETES(line, "h");
        snprintf(line, sizeof(line), "allocctl map --socket %s -- ", d.sock);
        ASSERT_COMPLETES(line, "f h");
        /* bash splits --socket=PATH at the = in COMP_WORDS; COMP_LINE has it whole. */
        snprintf(line, sizeof(line), "allocctl --socket=%s dump ", d.sock);
        cr_assert_str_eq(complete_line(line, false, NULL), "f h");
        /* One POOL: nothing after it. */
        snprintf(line, sizeof(line), "allocctl --socket %s dump h ", d.sock);
        ASSERT_COMPLETES(line, "");
        snprintf(line, sizeof(line), "allocctl --socket %s map --width 80 ", d.sock);
        ASSERT_COMPLETES(line, "f h");
}

Test(completion, the_socket_as_the_shell_would_pass_it) {
        static const char *forms[] = {"'%s'", "\"%s\"", "$SOCK", "${SOCK}", "\"$SOCK\"", "=$SOCK"};
        char line[512], sock[300];

        for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
                snprintf(sock, sizeof(sock), forms[i], d.sock);
                snprintf(line, sizeof(line), "allocctl --socket%s%s dump ", sock[0] == '=' ? "" : " ", sock);
                cr_assert_str_eq(complete_line(line, false, NULL), "f h", "%s", line);
        }
        /* A backslash before any character, and ~/ for $HOME. */
        snprintf(line, sizeof(line), "allocctl -s %s/\\allocd.sock map ", d.dir);
        ASSERT_COMPLETES(line, "f h");
        ASSERT_COMPLETES("allocctl --socket ~/allocd.sock dump ", "f h");
}

Test(completion, nothing_for_ids_names_and_durations) {
        static const char *cmds[] = {"free ",   "disconnect ", "wait ",    "wait name ",
                                     "status ", "metrics ",    "clients ", "map --width "};
        char line[512];

        for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
                snprintf(line, sizeof(line), "allocctl --socket %s %s", d.sock, cmds[i]);
                ASSERT_COMPLETES(line, "");
        }
}

Test(completion, without_allocd_the_pools_of_its_configuration) {
        char line[512], conf[256];

        snprintf(line, sizeof(line), "allocctl --socket %s/nobody.sock dump ", d.dir);
        snprintf(conf, sizeof(conf), "%s/fallback.conf", d.dir);
        write_file(conf, "[daemon]\n[pool gpu:0]\nkind = gpu\n  [pool  x.y-z ]\n; [pool not]\n");
        cr_assert_str_eq(complete_line(line, false, conf), "gpu:0 x.y-z");
        /* bash replaces what follows the last ':' (COMP_WORDBREAKS): COMPREPLY is that part. */
        snprintf(line, sizeof(line), "allocctl --socket %s/nobody.sock dump gpu:", d.dir);
        cr_assert_str_eq(complete_line(line, false, conf), "0");
        snprintf(conf, sizeof(conf), "%s/none.conf", d.dir);
        snprintf(line, sizeof(line), "allocctl --socket %s/nobody.sock dump ", d.dir);
        cr_assert_str_eq(complete_line(line, false, conf), "");
}
