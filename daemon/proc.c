/* SPDX-License-Identifier: MIT */
/*
 * A client's process as /proc shows it, read when it connects (accept.c) and when a restart
 * watches the process of a connection it restored (grace.c).  Best effort: a process gone
 * already, or a peer whose pid allocd's namespace does not map, reads as unknown.  One read of
 * /proc/PID/stat gives both the name and the start, where /proc/PID/comm would cost a second.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc.h"
#include "text.h"

uint64_t proc_stat(pid_t pid, char *comm, size_t size) {
        /* pid (comm) then 50 numbers of at most 20 digits: 1 KiB holds the 22nd field whatever comm is. */
        char path[64], buf[1024], *open_paren, *p, *end;
        unsigned long long start;
        ssize_t n;
        int fd;

        if (comm)
                *comm = '\0';
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        if (pid <= 0 || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
                return 0;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        buf[n > 0 ? n : 0] = '\0';
        /* comm may hold spaces and parentheses: the kernel writes it between the first '(' and the last ')'. */
        if (!(open_paren = strchr(buf, '(')) || !(p = strrchr(open_paren, ')')))
                return 0;
        if (comm) {
                /* Any process names itself (prctl PR_SET_NAME), and the kernel cuts the name at 15 bytes. */
                snprintf(comm, size, "%.*s", (int)(p - open_paren - 1), open_paren + 1);
                text_sanitize(comm);
        }
        /* Fields 3 (state) to 21, then starttime. */
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
