/* SPDX-License-Identifier: MIT */
/*
 * allocd --check-config on values written one way that the docs do not list: each is accepted as
 * docs/configuration.md says, or refused with FILE:LINE and what to write.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

/* One rule: an upper-case unit, alone or with B or iB, after a decimal number; a 0x number is bytes. */
Test(config_values, sizes_take_upper_case_units_after_decimal_numbers, .timeout = 60) {
        static const char *good[] = {"4096", "64K", "64KB", "64KiB", "1M", "1MiB", "1G", "0x100000", "0x1E000"};
        static const struct {
                const char *size, *what;
        } bad[] = {
                {"4k", "'k' after the number is not a unit (units are upper case)"},
                {"1g", "'g' after the number is not a unit (units are upper case)"},
                {"1e", "'e' after the number is not a unit (units are upper case)"},
                {"4kb", "'kb' after the number is not a unit (units are upper case)"},
                {"4kib", "'kib' after the number"},
                {"4KIB", "'KIB' after the number is not a unit"},
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
                cr_expect(strstr(out, "upper case, powers of 1024; B or iB may follow), e.g. 64M, or in 0x hex without "
                                      "a unit"),
                          "%s: %s", bad[i].size, out);
        }
}
