/* SPDX-License-Identifier: MIT */
/*
 * Published names: one namespace for the daemon (attach needs only the
 * name), kept apart from the region table so that an unnamed region costs
 * nothing here and a named one only its name's length.  Ids come from
 * slots.c; the lookup is a tsearch(3) tree of ids ordered by their text.
 */
#include <errno.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>

#include "core-impl.h"

/* tsearch compares ids; id 0 stands for the text being looked up. */
static _Thread_local const struct names *cur;
static _Thread_local const char *lookup;

static int cmp(const void *a, const void *b) {
        uint32_t x = (uint32_t)(uintptr_t)a, y = (uint32_t)(uintptr_t)b;

        return strcmp(x ? cur->tab[x].text : lookup, y ? cur->tab[y].text : lookup);
}

int names_init(struct names *n) {
        uint32_t zero;

        *n = (struct names){0};
        slots_init(&n->ids);
        /* Id 0 is the lookup key, never a name. */
        return slots_take(&n->ids, (void **)&n->tab, sizeof(*n->tab), &zero);
}

static void no_free(void *p) {
        (void)p;
}

void names_clear(struct names *n) {
        tdestroy(n->tree, no_free);
        for (uint32_t i = 1; i < n->ids.hi; i++)
                if (!slots_is_free(&n->ids, i))
                        free(n->tab[i].text);
        free(n->tab);
        slots_clear(&n->ids);
        *n = (struct names){0};
}

int names_find(const struct names *n, const char *name) {
        void *x;

        cur = n;
        lookup = name;
        x = tfind((void *)0, &n->tree, cmp);
        return x ? (int)n->tab[*(uintptr_t *)x].slot : -ENOENT;
}

int names_add(struct names *n, const char *name, uint32_t slot, uint32_t *ret_id) {
        char *text = strdup(name);
        uint32_t id;

        if (!text)
                return -ENOMEM;
        if (slots_take(&n->ids, (void **)&n->tab, sizeof(*n->tab), &id) < 0) {
                free(text);
                return -ENOMEM;
        }
        n->tab[id] = (struct name){.text = text, .slot = slot};
        cur = n;
        void **at = tsearch((void *)(uintptr_t)id, &n->tree, cmp);
        /* tsearch finds a name that is there already rather than add it: one namespace, each name once. */
        if (!at || (uint32_t)(uintptr_t)*at != id) {
                slots_put(&n->ids, id);
                free(text);
                return at ? -EEXIST : -ENOMEM;
        }
        n->count++;
        *ret_id = id;
        return 0;
}

void names_remove(struct names *n, uint32_t id) {
        cur = n;
        tdelete((void *)(uintptr_t)id, &n->tree, cmp);
        free(n->tab[id].text);
        slots_put(&n->ids, id);
        n->count--;
        slots_trim(&n->ids, (void **)&n->tab, sizeof(*n->tab));
}

const char *names_text(const struct names *n, uint32_t id) {
        return n->tab[id].text;
}
