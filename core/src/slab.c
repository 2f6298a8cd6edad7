/* SPDX-License-Identifier: MIT */
#include "slab.h"

#include "alloc.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>

/* Chunks start with a header that links them; objects follow, aligned to
 * 16 bytes. */
typedef struct chunk_header {
    struct chunk_header *next;
    size_t bytes;
} chunk_header;

_Static_assert(sizeof(chunk_header) == 16, "objects stay 16-byte aligned");

void lb__slab_init(lb__slab *slab, size_t object_size, size_t per_chunk) {
    assert(object_size >= sizeof(void *));
    slab->free_list = NULL;
    slab->fresh = slab->fresh_end = NULL;
    slab->chunks = NULL;
    slab->object_size = (object_size + 15) & ~(size_t)15;
    slab->chunk_bytes = sizeof(chunk_header) + slab->object_size * per_chunk;
    slab->live = 0;
}

static int grow(lb__slab *slab) {
    size_t bytes = slab->chunk_bytes;
    bool large = bytes >= LB__LARGE_FROM;
    if (large)
        bytes = LB__LARGE_BLOCK;
    chunk_header *chunk = large ? lb__map_large(bytes) : lb__malloc(bytes);
    if (!chunk)
        return -1;
    chunk->next = slab->chunks;
    chunk->bytes = bytes;
    slab->chunks = chunk;
    slab->fresh = (char *)(chunk + 1);
    slab->fresh_end = (char *)chunk + bytes;
    LB__SLAB_POISON(slab->fresh, (size_t)(slab->fresh_end - slab->fresh));
    /* Fourfold until chunks are large blocks: few small chunks for a
     * small loop, few page faults for a large one. */
    slab->chunk_bytes = large ? LB__LARGE_BLOCK : bytes * 4;
    return 0;
}

void *lb__slab_alloc_fresh(lb__slab *slab) {
    if ((size_t)(slab->fresh_end - slab->fresh) < slab->object_size && grow(slab) < 0)
        return NULL;
    void *p = slab->fresh;
    slab->fresh += slab->object_size;
    LB__SLAB_UNPOISON(p, slab->object_size);
    slab->live++;
    return p;
}

void lb__slab_destroy(lb__slab *slab) {
    chunk_header *c = slab->chunks;
    while (c) {
        chunk_header *next = c->next;
        /* Given back whole: no slot stays poisoned. */
        LB__SLAB_UNPOISON(c + 1, c->bytes - sizeof *c);
        if (c->bytes >= LB__LARGE_BLOCK)
            lb__unmap_large(c, c->bytes);
        else
            lb__free(c);
        c = next;
    }
    slab->chunks = NULL;
    slab->free_list = NULL;
    slab->fresh = slab->fresh_end = NULL;
}
