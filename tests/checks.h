/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_TEST_CHECKS_H
#define ALLOC_TEST_CHECKS_H

/*
 * The checks harness.c and sysd.c make: criterion's in the tests; in a program built with
 * -DCHECKS_OUTSIDE_CRITERION (bench/restart-bench, tests/gpu/gpu-restart), the few they use,
 * which print what failed and exit 1, since there is no test to fail and no runner to catch an
 * abort.
 */

#ifndef CHECKS_OUTSIDE_CRITERION
#include <criterion/criterion.h>
#else
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((format(printf, 4, 5))) static inline _Noreturn void
check_failed(const char *file, int line, const char *what, const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "%s:%d: %s:", file, line, what);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(1);
}

/* The message, when there is one, follows a space: " " "fmt" is one literal, and never empty. */
#define cr_assert(c, ...) ((c) ? (void)0 : check_failed(__FILE__, __LINE__, #c, " " __VA_ARGS__))
#define cr_expect(c, ...) cr_assert(c, __VA_ARGS__)
#define cr_assert_eq(a, b, ...) cr_assert((a) == (b), __VA_ARGS__)
#define cr_assert_lt(a, b, ...) cr_assert((a) < (b), __VA_ARGS__)
#define cr_assert_fail(...) check_failed(__FILE__, __LINE__, "failed", " " __VA_ARGS__)
#endif

#endif
