/* SPDX-License-Identifier: MIT */
/*
 * A client's process as /proc shows it, read when it connects (accept.c) and when a restart
 * watches the process of a connection it restored (grace.c).  Best effort: a process gone
 * already, or a peer whose pid allocd's namespace does not map, reads as unknown.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc.h"
#include "text.h"

/* The first size - 1 bytes of /proc/PID/NAME into buf, NUL-terminated; their count, -1 when unreadable. */
static ssize_t read_proc(pid_t pid, const char *name, char *buf, size_t size) {
        char path[64];
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
        if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
                return -1;
        n = read(fd, buf, size - 1);
        close(fd);
        buf[n > 0 ? n : 0] = '\0';
        return n;
}

void proc_comm(pid_t pid, char *buf, size_t size) {
        *buf = '\0';
        if (pid <= 0 || read_proc(pid, "comm", buf, size) <= 0)
                return;
        buf[strcspn(buf, "\n")] = '\0';
        /* Any process names itself (prctl PR_SET_NAME), and the kernel cuts the name at 15 bytes. */
        text_sanitize(buf);
}

uint64_t proc_start(pid_t pid) {
        /* pid (comm) then 50 numbers at most 20 digits each: 1 KiB holds the 22nd field whatever comm is. */
        char buf[1024], *p, *end;
        unsigned long long start;

        if (pid <= 0 || read_proc(pid, "stat", buf, sizeof(buf)) <= 0)
                return 0;
        /* comm may hold spaces and parentheses; the kernel writes it between the first '(' and the last ')'. */
        if (!(p = strrchr(buf, ')')))
                return 0;
        /* Fields 3 to 21 (state to itrealvalue), then starttime. */
        for (int field = 3; field <= 22; field++) {
                p += strspn(p + 1, " ") + 1; /* past ')' or the field before, to this field's first character */
                if (field == 22)
                        break;
                p += strcspn(p, " ");
                if (!*p)
                        return 0;
        }
        start = strtoull(p, &end, 10);
        return end != p && (*end == ' ' || *end == '\n' || !*end) ? (uint64_t)start : 0;
}
