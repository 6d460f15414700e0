/* Registrations per file of one connection (filecount.h). */
#include "filecount.h"

#include <errno.h>
#include <stdlib.h>

uint32_t filecount_key(uint64_t dev, uint64_t ino)
{
        /* splitmix64 finaliser over both numbers: inodes are sequential. */
        uint64_t x = ino * UINT64_C(0x9e3779b97f4a7c15) ^ (dev + UINT64_C(0x632be59bd9b4e019));

        x ^= x >> 30;
        x *= UINT64_C(0xbf58476d1ce4e5b9);
        x ^= x >> 27;
        x *= UINT64_C(0x94d049bb133111eb);
        x ^= x >> 31;
        uint32_t k = (uint32_t)(x ^ (x >> 32));
        return k ? k : 1;
}

static uint32_t slot_of(const FileCount *f, uint32_t key)
{
        return key & (f->cap - 1);
}

static int filecount_grow(FileCount *f)
{
        uint32_t cap = f->cap ? f->cap * 2 : 16;
        FileCountEntry *v = calloc(cap, sizeof(*v));

        if (!v)
                return -ENOMEM;
        FileCount g = { .v = v, .cap = cap, .n = f->n };
        for (uint32_t i = 0; i < f->cap; i++) {
                if (!f->v[i].key)
                        continue;
                uint32_t j = slot_of(&g, f->v[i].key);
                while (g.v[j].key)
                        j = (j + 1) & (cap - 1);
                g.v[j] = f->v[i];
        }
        free(f->v);
        *f = g;
        return 0;
}

int filecount_add(FileCount *f, uint32_t key, uint32_t limit)
{
        if (!key)
                return 0;
        if ((f->n + 1) * 4 > f->cap * 3) { /* keep it under 3/4 full */
                int r = filecount_grow(f);
                if (r < 0)
                        return r;
        }
        uint32_t i = slot_of(f, key);
        while (f->v[i].key && f->v[i].key != key)
                i = (i + 1) & (f->cap - 1);
        if (f->v[i].key) {
                if (f->v[i].count >= limit)
                        return -ETOOMANYREFS;
                f->v[i].count++;
                return 0;
        }
        f->v[i] = (FileCountEntry){ .key = key, .count = 1 };
        f->n++;
        return 0;
}

void filecount_remove(FileCount *f, uint32_t key)
{
        if (!key || !f->cap)
                return;
        uint32_t i = slot_of(f, key), mask = f->cap - 1;
        while (f->v[i].key && f->v[i].key != key)
                i = (i + 1) & mask;
        if (!f->v[i].key || --f->v[i].count > 0)
                return;
        /* Backward-shift deletion: pull later entries of the run into the
         * hole while that keeps each reachable from its home slot. */
        for (uint32_t j = (i + 1) & mask; f->v[j].key; j = (j + 1) & mask) {
                uint32_t home = slot_of(f, f->v[j].key);
                if (((j - home) & mask) >= ((j - i) & mask)) {
                        f->v[i] = f->v[j];
                        i = j;
                }
        }
        f->v[i] = (FileCountEntry){ 0 };
        f->n--;
}

void filecount_done(FileCount *f)
{
        free(f->v);
        *f = (FileCount){ 0 };
}
