/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_TEXT_H
#define ALLOC_TEXT_H

/*
 * Text that one client gives and others read (region names, client names,
 * command names): what allocd accepts, and how allocctl shows what it did
 * not make itself (docs/protocol.md, "Names").
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The code point at s (n bytes available) in *cp, and its length in bytes; -1 where s does not
 * start a well-formed UTF-8 sequence (a stray or missing continuation byte, an overlong form, a
 * surrogate, or past U+10FFFF), as RFC 3629 defines it.
 */
int text_next(const char *s, size_t n, uint32_t *cp);
/*
 * Whether cp would change how a terminal or an editor shows what follows it: the C0 and C1
 * controls, DEL, the line and paragraph separators, and the bidirectional overrides and isolates.
 */
bool text_is_control(uint32_t cp);
/* s is 1 to max bytes of UTF-8 without a text_is_control character. */
bool text_valid(const char *s, size_t max);
/*
 * s for a terminal: each byte that is not UTF-8 and each control character as \xNN (the
 * character's UTF-8 bytes, each escaped), a backslash as \\, and with spaces a space as \x20,
 * so that a column of the output stays one word; "-" for "".  Truncated to size, never mid-escape.
 */
const char *text_escape(const char *s, bool spaces, char *buf, size_t size);
/*
 * s for a terminal as text_escape has it, a backslash left as it is: for prose that quotes names
 * allocd escaped already (its messages), where the escape need not be read back.
 */
const char *text_escape_controls(const char *s, char *buf, size_t size);
/*
 * How many of s's first bytes, at most max, end between two characters: a copy cut there to fit
 * stays UTF-8 if s was, so that what it is sent to judges its length, not a broken last character.
 */
size_t text_cut(const char *s, size_t max);
/* Replaces, in place, each byte of s that is not UTF-8 or belongs to a control character with '?'. */
void text_sanitize(char *s);
/* s with every byte that is not UTF-8 replaced by U+FFFD, for JSON; the caller frees it (NULL: out of memory). */
char *text_utf8(const char *s);

/* What allocd answers a request that names no pool it has, and allocctl says where it finds none: one wording. */
#define TEXT_NO_POOL_FMT "no pool named '%s'; `allocctl status` lists the pools"

#endif
