/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_LISTEN_H
#define ALLOCD_LISTEN_H

/* The listening socket (listen.c): made at a path, or passed by systemd. */

#include <stddef.h>

/* A listening, non-blocking SOCK_SEQPACKET socket bound at path; or a negative errno value and why in err. */
int listen_open(const char *path, char *err, size_t errsize);
/*
 * A negative errno value, and why in err, where path cannot be ours (another allocd answers there, a
 * file that is not a socket is there, or a socket we may not connect to); else 0.  Asked before the
 * pools are made, so that a second allocd does not reserve (and lock) all their memory only to find
 * the socket taken; listen_open asks again, under the directory's lock.
 */
int listen_in_use(const char *path, char *err, size_t errsize);
/* Makes a socket systemd passed non-blocking and close-on-exec. */
int listen_adopt(int fd);
/* Removes the socket file listen_open made at path: not another's socket, nor anything that is not a socket. */
void listen_remove(const char *path);

#endif
