/* SPDX-License-Identifier: MIT */
/* slots.c, the free-slot index behind the core's tables, on its own. */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "slots.h"

/* slots.c against a model: always the lowest free slot, hi right, capacity shrinks. */
Test(slots, hand_out_the_lowest_free) {
        enum { N = 5000 };
        static bool used[1 << 14];
        struct slots s;
        unsigned seed = 7;
        void *tab = NULL;

        slots_init(&s);
        for (int step = 0; step < 200000; step++) {
                uint32_t i, lowest = 0, hi = 0;
                bool get = rand_r(&seed) % 100 < (step < 100000 ? 55 : 40);
                while (used[lowest])
                        lowest++;
                if (get && lowest < N) {
                        cr_assert_eq(slots_take(&s, &tab, 8, &i), 0);
                        cr_assert_eq(i, lowest);
                        used[i] = true;
                } else {
                        i = (uint32_t)rand_r(&seed) % N;
                        if (!used[i])
                                continue;
                        slots_put(&s, i);
                        used[i] = false;
                        slots_trim(&s, &tab, 8);
                }
                for (uint32_t k = 0; k < N; k++)
                        if (used[k])
                                hi = k + 1;
                cr_assert_eq(s.hi, hi, "step %d", step);
                cr_assert_geq(s.cap, hi);
        }
        cr_assert_leq(s.cap, 4 * (s.hi > SLOTS_MIN ? s.hi : SLOTS_MIN));
        slots_clear(&s);
        free(tab);
}

/* Across summary words (4096 slots each): a slot put back below where the scan starts is found first. */
Test(slots, find_the_lowest_across_summary_words) {
        struct slots s;
        void *tab = NULL;
        uint32_t i;

        slots_init(&s);
        for (uint32_t k = 0; k < 3 * 4096 + 10; k++)
                cr_assert(slots_take(&s, &tab, 8, &i) == 0 && i == k);
        slots_put(&s, 9000);
        slots_put(&s, 100);
        slots_put(&s, 5000);
        cr_assert(slots_take(&s, &tab, 8, &i) == 0 && i == 100, "%u", i);
        cr_assert(slots_take(&s, &tab, 8, &i) == 0 && i == 5000, "%u", i);
        cr_assert(slots_take(&s, &tab, 8, &i) == 0 && i == 9000, "%u", i);
        cr_assert(slots_take(&s, &tab, 8, &i) == 0 && i == 3 * 4096 + 10, "%u", i);
        slots_clear(&s);
        free(tab);
}
