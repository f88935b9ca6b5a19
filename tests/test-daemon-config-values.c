/* SPDX-License-Identifier: MIT */
/*
 * allocd --check-config on values written one way that the docs do not list: each is accepted as
 * docs/configuration.md says, or refused with FILE:LINE and what to write.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

/* One rule: a unit in either case, alone or with B or iB, after a decimal number; a 0x number is bytes. */
Test(config_values, sizes_take_units_in_either_case_after_decimal_numbers, .timeout = 60) {
        static const char *good[] = {"4096",    "64K", "64KB", "64KiB", "1M",   "1MiB", "1G",  "0x100000",
                                     "0x1E000", "4k",  "1g",   "4kb",   "4kib", "4KIB", "1mB", "4Kb"};
        static const struct {
                const char *size, *what;
        } bad[] = {
                {"4kk", "'kk' after the number is not a unit"},
                {"4kibb", "'kibb' after the number is not a unit"},
                {"4x", "'x' after the number is not a unit"},
                {"0x10m", "'m' after a 0x number, which is bytes, without a unit"},
                {"0x10M", "'M' after a 0x number, which is bytes, without a unit"},
        };
        char conf[256], out[4096], want[128];

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                /* A host pool's size must be whole pages: each good size is a quota, any number of bytes. */
                snprintf(conf, sizeof(conf), "[pool a]\nkind = host\nsize = 1M\nquota_per_uid = %s\n", good[i]);
                cr_expect_eq(check_config(conf, out, sizeof(out)), 0, "%s: %s", good[i], out);
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                snprintf(conf, sizeof(conf), "[pool a]\nkind = host\nsize = %s\n", bad[i].size);
                cr_expect_eq(check_config(conf, out, sizeof(out)), 78, "%s: %s", bad[i].size, out);
                snprintf(want, sizeof(want), "allocd.conf:3: size = %s: %s", bad[i].size, bad[i].what);
                cr_expect(strstr(out, want), "%s: no '%s' in: %s", bad[i].size, want, out);
                cr_expect(strstr(out, "either case, powers of 1024; B or iB may follow), e.g. 64M, or in 0x hex "
                                      "without a unit"),
                          "%s: %s", bad[i].size, out);
        }
}

/* Refused the same whatever follows it: an empty first [daemon] was taken, and its second header too. */
Test(config_values, a_section_header_given_twice_is_refused, .timeout = 60) {
        static const struct {
                const char *text, *want;
        } bad[] = {
                {"[daemon]\n[pool a]\nkind = host\nsize = 1M\n[daemon]\nmax_names = 9\n",
                 "allocd.conf:5: [daemon] appears twice (first at line 1); merge them"},
                {"[daemon]\n[pool a]\nkind = host\nsize = 1M\n[daemon]\n",
                 "allocd.conf:5: [daemon] appears twice (first at line 1); merge them"},
                {"[daemon]\nmax_names = 9\n[daemon]\n[pool a]\nkind = host\nsize = 1M\n",
                 "allocd.conf:3: [daemon] appears twice (first at line 1); merge them"},
                {"[pool a]\n[pool a]\nkind = host\nsize = 1M\n",
                 "allocd.conf:2: [pool a] appears twice (first at line 1)"},
                {"[pool a]\nkind = host\nsize = 1M\n[pool a]\n",
                 "allocd.conf:4: [pool a] appears twice (first at line 1)"},
        };
        char out[4096];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                cr_expect_eq(check_config(bad[i].text, out, sizeof(out)), 78, "case %zu: %s", i, out);
                cr_expect(strstr(out, bad[i].want), "case %zu: no '%s' in: %s", i, bad[i].want, out);
        }
        cr_expect_eq(check_config("[daemon]\n[pool a]\nkind = host\nsize = 1M\n", out, sizeof(out)), 0, "%s", out);
}

/* The durations as docs/configuration.md has them: a bare number is seconds, but not for spin. */
Test(config_values, durations_say_what_they_take, .timeout = 60) {
        static const struct {
                const char *text, *want;
        } bad[] = {
                {"[daemon]\nspin = 50\n", "allocd.conf:2: spin = 50: a number without a unit (spin takes us or ms)"},
                {"[daemon]\nhello_timeout = 0\n", "allocd.conf:2: hello_timeout = 0: a connection needs time to say "
                                                  "Hello; use a duration above 0"},
        };
        static const char *good[] = {"wait_timeout = 5", "wait_timeout = 0", "hello_timeout = 2", "reclaim_grace = 0",
                                     "spin = 0",         "spin = 50us",      "spin = 1ms"};
        char conf[256], out[4096];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                snprintf(conf, sizeof(conf), "%s[pool a]\nkind = host\nsize = 1M\n", bad[i].text);
                cr_expect_eq(check_config(conf, out, sizeof(out)), 78, "case %zu: %s", i, out);
                cr_expect(strstr(out, bad[i].want), "case %zu: no '%s' in: %s", i, bad[i].want, out);
        }
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                snprintf(conf, sizeof(conf), "[daemon]\n%s\n[pool a]\nkind = host\nsize = 1M\n", good[i]);
                cr_expect_eq(check_config(conf, out, sizeof(out)), 0, "%s: %s", good[i], out);
        }
}

/* --check-config said valid, and the quota then refused every allocation of the pool. */
Test(config_values, a_quota_below_the_quantum_is_refused, .timeout = 60) {
        char out[4096];

        cr_expect_eq(
                check_config("[pool a]\nkind = host\nsize = 1M\nquantum = 8K\nquota_per_uid = 1K\n", out, sizeof(out)),
                78, "%s", out);
        cr_expect(strstr(out, "allocd.conf:5: quota_per_uid = 1K: below the pool's quantum (8K), the least a region "
                              "takes, so every allocation would be refused; use at least 8K, or 0 for no quota"),
                  "%s", out);
        cr_expect_eq(check_config("[pool f]\nkind = fpga\nranges = 0x0+1M\nquota_per_uid = 1K\n", out, sizeof(out)), 78,
                     "%s", out);
        cr_expect(strstr(out, "allocd.conf:4: quota_per_uid = 1K: below the pool's quantum (4K, the default)"), "%s",
                  out);
        cr_expect_eq(
                check_config("[pool a]\nkind = host\nsize = 1M\nquantum = 8K\nquota_per_uid = 8K\n", out, sizeof(out)),
                0, "%s", out);
}
