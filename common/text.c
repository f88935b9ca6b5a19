/* SPDX-License-Identifier: MIT */
/*
 * UTF-8 as RFC 3629 has it: a lead byte says how many continuation bytes
 * follow (10xxxxxx each), and the value must need that many (no overlong
 * forms, which would let one character have two spellings), lie outside
 * the surrogates and stop at U+10FFFF.
 */
#include <stdlib.h>
#include <string.h>

#include "text.h"

int text_next(const char *s, size_t n, uint32_t *cp) {
        static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
        const unsigned char *u = (const unsigned char *)s;
        uint32_t v;
        int len;

        if (n == 0)
                return -1;
        if (u[0] < 0x80)
                len = 1, v = u[0];
        else if ((u[0] & 0xe0) == 0xc0)
                len = 2, v = u[0] & 0x1f;
        else if ((u[0] & 0xf0) == 0xe0)
                len = 3, v = u[0] & 0x0f;
        else if ((u[0] & 0xf8) == 0xf0)
                len = 4, v = u[0] & 0x07;
        else
                return -1;
        if ((size_t)len > n)
                return -1;
        for (int i = 1; i < len; i++) {
                if ((u[i] & 0xc0) != 0x80)
                        return -1;
                v = v << 6 | (u[i] & 0x3f);
        }
        if (v < min[len] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
                return -1;
        *cp = v;
        return len;
}

size_t text_cut(const char *s, size_t max) {
        const unsigned char *u = (const unsigned char *)s;
        size_t n = strnlen(s, max), k = n;

        /* s[n] (its NUL, or the byte past max) continues a character: the cut goes back to that one's lead byte. */
        while (k > 0 && n - k < 3 && (u[k] & 0xc0) == 0x80)
                k--;
        return u[k] >= 0xc0 ? k : n; /* no lead byte there: not UTF-8 anyway, cut where asked */
}

bool text_is_control(uint32_t cp) {
        return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
               (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

bool text_valid(const char *s, size_t max) {
        size_t n = strlen(s);
        uint32_t cp;

        if (n == 0 || n > max)
                return false;
        for (size_t i = 0; i < n;) {
                int k = text_next(s + i, n - i, &cp);
                if (k < 0 || text_is_control(cp))
                        return false;
                i += (size_t)k;
        }
        return true;
}

static const char *escape(const char *s, bool spaces, bool backslashes, char *buf, size_t size) {
        static const char hex[] = "0123456789abcdef";
        size_t n = strlen(s), o = 0;
        uint32_t cp;

        if (size == 0)
                return buf;
        for (size_t i = 0; i < n;) {
                int k = text_next(s + i, n - i, &cp);
                bool esc = k < 0 || text_is_control(cp) || (spaces && cp == ' ');
                size_t len = k < 0 ? 1 : (size_t)k, need = esc ? 4 * len : cp == '\\' && backslashes ? 2 : len;

                if (o + need >= size)
                        break;
                for (size_t j = 0; j < len; j++) {
                        unsigned char b = (unsigned char)s[i + j];
                        if (esc) {
                                buf[o++] = '\\', buf[o++] = 'x', buf[o++] = hex[b >> 4], buf[o++] = hex[b & 15];
                        } else {
                                if (b == '\\' && backslashes)
                                        buf[o++] = '\\';
                                buf[o++] = (char)b;
                        }
                }
                i += len;
        }
        buf[o] = '\0';
        if (o == 0 && n == 0 && size > 1)
                buf[0] = '-', buf[1] = '\0';
        return buf;
}

const char *text_escape(const char *s, bool spaces, char *buf, size_t size) {
        return escape(s, spaces, true, buf, size);
}

const char *text_escape_controls(const char *s, char *buf, size_t size) {
        return escape(s, false, false, buf, size);
}

char *text_utf8(const char *s) {
        size_t n = strlen(s), o = 0;
        char *out = malloc(3 * n + 1); /* a stray byte (1) becomes U+FFFD (3) */
        uint32_t cp;

        if (!out)
                return NULL;
        for (size_t i = 0; i < n;) {
                int k = text_next(s + i, n - i, &cp);
                if (k < 0) {
                        memcpy(out + o, "\xef\xbf\xbd", 3);
                        o += 3;
                        i++;
                } else {
                        memcpy(out + o, s + i, (size_t)k);
                        o += (size_t)k;
                        i += (size_t)k;
                }
        }
        out[o] = '\0';
        return out;
}

void text_sanitize(char *s) {
        size_t n = strlen(s);
        uint32_t cp;

        for (size_t i = 0; i < n;) {
                int k = text_next(s + i, n - i, &cp);
                if (k < 0 || text_is_control(cp)) {
                        size_t len = k < 0 ? 1 : (size_t)k;
                        memset(s + i, '?', len);
                        i += len;
                } else {
                        i += (size_t)k;
                }
        }
}
