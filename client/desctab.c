/* Open-addressing table of a connection's descriptors; see desctab.h. */
#include "desctab.h"

#include <errno.h>
#include <stdlib.h>

static size_t hash(uint64_t d, size_t cap)
{
        /* Ids are tag | index | generation: fresh descriptors share a
         * generation and differ in the index bits, so mix every bit into
         * the low ones (splitmix64's finalizer) before masking. */
        d ^= d >> 30;
        d *= UINT64_C(0xbf58476d1ce4e5b9);
        d ^= d >> 27;
        d *= UINT64_C(0x94d049bb133111eb);
        d ^= d >> 31;
        return (size_t)d & (cap - 1);
}

static void put(DescEntry *slots, size_t cap, const DescEntry *e)
{
        size_t i = hash(e->desc, cap);

        while (slots[i].desc)
                i = (i + 1) & (cap - 1);
        slots[i] = *e;
}

int desctab_add(DescTable *t, uint64_t desc)
{
        if (2 * (t->n + 1) > t->cap) {
                size_t cap = t->cap ? t->cap * 2 : 64;
                DescEntry *slots = calloc(cap, sizeof(*slots));
                if (!slots)
                        return -ENOMEM;
                for (size_t i = 0; i < t->cap; i++)
                        if (t->slots[i].desc)
                                put(slots, cap, &t->slots[i]);
                free(t->slots);
                t->slots = slots;
                t->cap = cap;
        }
        put(t->slots, t->cap, &(DescEntry){ .desc = desc });
        t->n++;
        return 0;
}

DescEntry *desctab_find(const DescTable *t, uint64_t desc)
{
        if (!t->cap || !desc)
                return NULL;
        for (size_t i = hash(desc, t->cap);; i = (i + 1) & (t->cap - 1)) {
                if (t->slots[i].desc == desc)
                        return &t->slots[i];
                if (!t->slots[i].desc)
                        return NULL;
        }
}

void desctab_remove(DescTable *t, uint64_t desc)
{
        DescEntry *e = desctab_find(t, desc);

        if (!e)
                return;
        size_t i = (size_t)(e - t->slots), mask = t->cap - 1;
        t->slots[i].desc = 0;
        t->n--;
        /* Backward shift: move up every later entry of the probe run that
         * would no longer be reachable across the hole. */
        for (size_t j = (i + 1) & mask; t->slots[j].desc; j = (j + 1) & mask) {
                size_t home = hash(t->slots[j].desc, t->cap);
                if (((j - home) & mask) >= ((j - i) & mask)) {
                        t->slots[i] = t->slots[j];
                        t->slots[j].desc = 0;
                        i = j;
                }
        }
}

void desctab_done(DescTable *t)
{
        free(t->slots);
        *t = (DescTable){ 0 };
}
