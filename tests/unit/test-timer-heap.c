/* SPDX-License-Identifier: MIT */
/* The timer heap against a simple reference model: a sorted array with
 * stable insertion. 2,000 random seeds of pushes, pops and cancellations
 * (compaction included) must produce the same order of items, with
 * deadlines that fall in one wheel slot, across many, beyond the wheel
 * and below zero. */
#include "timer_heap.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

typedef struct item {
    int64_t when;
    int id;
    bool dead;
} item;

typedef struct model {
    item *v[4096];
    int n;
} model;

/* Stable insert: after every entry with when <= new when. */
static void model_push(model *m, item *it) {
    int i = m->n;
    while (i > 0 && m->v[i - 1]->when > it->when) {
        m->v[i] = m->v[i - 1];
        i--;
    }
    m->v[i] = it;
    m->n++;
}

static item *model_pop_live(model *m) {
    while (m->n > 0) {
        item *it = m->v[0];
        memmove(m->v, m->v + 1, (size_t)(m->n - 1) * sizeof m->v[0]);
        m->n--;
        if (!it->dead)
            return it;
    }
    return NULL;
}

static uint64_t rnd(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static bool is_dead(void *p) {
    return ((item *)p)->dead;
}

static int released;
static void release(void *p) {
    (void)p;
    released++;
}

static item *heap_pop_live(lb__timer_heap *h) {
    for (;;) {
        item *it = lb__timer_heap_pop(h);
        if (!it || !it->dead)
            return it;
        h->dead--;
    }
}

static void run_seed(uint64_t seed) {
    lb__timer_heap heap;
    lb__timer_heap_init(&heap);
    model m = {0};
    static item pool[4096];
    int used = 0;
    uint64_t x = seed;
    /* Deadlines 0-49 units apart: a unit of 1 ns keeps them in one slot;
     * 2^18-2^22 ns spreads them over the wheel; 2^25 ns (50 units: 1.7
     * s) reaches beyond it, 2^31 ns far beyond. */
    static const int shifts[] = {0, 18, 20, 22, 25, 31};
    int shift = shifts[seed % 6];
    int64_t base = (int64_t)(rnd(&x) % 2000000000) - 1000000000;
    int ops = 200 + (int)(rnd(&x) % 1500);
    for (int op = 0; op < ops; op++) {
        unsigned kind = (unsigned)(rnd(&x) % 10);
        if (kind < 5 && used < 4096) {
            item *it = &pool[used];
            /* Few distinct deadlines, so ties (FIFO) are common. */
            *it = (item){.when = base + ((int64_t)(rnd(&x) % 50) << shift), .id = used};
            used++;
            assert_int_equal(lb__timer_heap_push(&heap, it->when, it), 0);
            model_push(&m, it);
        } else if (kind < 8) {
            item *a = heap_pop_live(&heap);
            item *b = model_pop_live(&m);
            assert_ptr_equal(a, b);
        } else if (kind < 9 && used > 0) {
            item *it = &pool[rnd(&x) % (uint64_t)used];
            /* Cancel only items still queued (the model knows). */
            bool queued = false;
            for (int i = 0; i < m.n; i++)
                queued |= m.v[i] == it;
            if (queued && !it->dead) {
                it->dead = true;
                heap.dead++;
            }
        } else {
            lb__timer_heap_compact(&heap, is_dead, release);
        }
        const lb__timer_entry *top = lb__timer_heap_top(&heap);
        if (top) {
            /* The top is never later than any live entry of the model
             * (compaction drops dead entries the model still lists). */
            for (int i = 0; i < m.n; i++)
                if (!m.v[i]->dead)
                    assert_true(top->when <= m.v[i]->when);
        }
    }
    for (;;) {
        item *a = heap_pop_live(&heap);
        item *b = model_pop_live(&m);
        assert_ptr_equal(a, b);
        if (!a)
            break;
    }
    lb__timer_heap_destroy(&heap);
}

static void test_timer_heap_matches_model(void **state) {
    (void)state;
    for (uint64_t seed = 1; seed <= 2000; seed++)
        run_seed(seed);
}

static void test_timer_heap_fifo_ties(void **state) {
    (void)state;
    lb__timer_heap heap;
    lb__timer_heap_init(&heap);
    int ids[1000];
    for (int i = 0; i < 1000; i++) {
        ids[i] = i;
        assert_int_equal(lb__timer_heap_push(&heap, 7, &ids[i]), 0);
    }
    for (int i = 0; i < 1000; i++)
        assert_int_equal(*(int *)lb__timer_heap_pop(&heap), i);
    assert_null(lb__timer_heap_pop(&heap));
    assert_null(lb__timer_heap_top(&heap));
    lb__timer_heap_destroy(&heap);
}

/* A heap that grows into large blocks (moved, not copied, as it grows)
 * keeps its order and its FIFO ties. */
static void check_large(int shift) {
    enum { N = 300000 };
    lb__timer_heap heap;
    lb__timer_heap_init(&heap);
    int *ids = malloc(N * sizeof *ids);
    assert_non_null(ids);
    uint64_t x = 42;
    for (int i = 0; i < N; i++) {
        ids[i] = i;
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        assert_int_equal(lb__timer_heap_push(&heap, (int64_t)(x >> shift), &ids[i]), 0);
    }
    int64_t last = INT64_MIN;
    int last_id = -1;
    for (int i = 0; i < N; i++) {
        int64_t when = lb__timer_heap_top(&heap)->when;
        int id = *(int *)lb__timer_heap_pop(&heap);
        assert_true(when >= last);
        if (when == last)
            assert_true(id > last_id);
        last = when;
        last_id = id;
    }
    assert_null(lb__timer_heap_pop(&heap));
    lb__timer_heap_destroy(&heap);
    free(ids);
}

/* Deadlines within 65 us (one slot), within 2.1 s (the wheel and
 * beyond) and within 150 days (mostly far). */
static void test_timer_heap_large(void **state) {
    (void)state;
    check_large(48);
    check_large(33);
    check_large(20);
}

/* A heap popped while it is refilled from the wheel and from far, with
 * pushes landing before, in and after the slot just taken: the order
 * holds, and every slot's chunks go back (the slab's count). */
static void test_timer_heap_tiers_interleaved(void **state) {
    (void)state;
    enum { N = 20000 };
    lb__timer_heap heap;
    lb__timer_heap_init(&heap);
    static item pool[N];
    model *m = calloc(1, sizeof *m);
    assert_non_null(m);
    uint64_t x = 7;
    int used = 0;
    int64_t now = 0;
    for (int round = 0; round < 4000 && used < N; round++) {
        for (int k = 0; k < 4 && used < N && m->n < 4000; k++) {
            /* From 1 us to 4 s ahead of "now": near, wheel and far. */
            int64_t ahead = (int64_t)(rnd(&x) % 4000000000ULL) >> (rnd(&x) % 12);
            pool[used] = (item){.when = now + ahead, .id = used};
            assert_int_equal(lb__timer_heap_push(&heap, pool[used].when, &pool[used]), 0);
            model_push(m, &pool[used]);
            used++;
        }
        for (int k = 0; k < 3; k++) {
            item *a = heap_pop_live(&heap);
            item *b = model_pop_live(m);
            assert_ptr_equal(a, b);
            if (a)
                now = a->when;
        }
    }
    for (;;) {
        item *a = heap_pop_live(&heap);
        assert_ptr_equal(a, model_pop_live(m));
        if (!a)
            break;
    }
    assert_int_equal(heap.n, 0);
    assert_int_equal(heap.in_wheel, 0);
    assert_int_equal(heap.chunks.live, 0);
    lb__timer_heap_destroy(&heap);
    free(m);
}

static void test_timer_heap_compact_releases(void **state) {
    (void)state;
    lb__timer_heap heap;
    lb__timer_heap_init(&heap);
    item it[100];
    for (int i = 0; i < 100; i++) {
        it[i] = (item){.when = 100 - i, .id = i, .dead = i % 3 == 0};
        assert_int_equal(lb__timer_heap_push(&heap, it[i].when, &it[i]), 0);
    }
    released = 0;
    lb__timer_heap_compact(&heap, is_dead, release);
    assert_int_equal(released, 34);
    assert_int_equal(heap.n, 66);
    int64_t last = INT64_MIN;
    item *p;
    while ((p = lb__timer_heap_pop(&heap))) {
        assert_false(p->dead);
        assert_true(p->when >= last);
        last = p->when;
    }
    lb__timer_heap_destroy(&heap);
}

/* A push earlier than near's later slot sends those entries back to the
 * wheel, but keeps near's entries of the push's own slot and earlier
 * ones. Near holds entries of slots 5 and 8 here: slot 8 came from the
 * wheel too large to move (70 entries, none pushed into near since), so
 * two pushes of slot 5 joined it; then a compaction shrank it. A push
 * between the two slot-5 entries must run between them. */
static void test_timer_heap_rewind_keeps_earlier_slots(void **state) {
    (void)state;
    enum { LATER = 70 };
    lb__timer_heap heap;
    lb__timer_heap_init(&heap);
    const int64_t slot = (int64_t)1 << LB__WHEEL_SLOT_SHIFT;
    static item later[LATER];
    item first = {.when = slot, .id = 0};
    item b1 = {.when = 5 * slot + 100, .id = 1}, b2 = {.when = 5 * slot + 300, .id = 2};
    item d = {.when = 5 * slot + 200, .id = 3};
    assert_int_equal(lb__timer_heap_push(&heap, first.when, &first), 0);
    for (int i = 0; i < LATER; i++) {
        later[i] = (item){.when = 8 * slot + i, .id = 100 + i};
        assert_int_equal(lb__timer_heap_push(&heap, later[i].when, &later[i]), 0);
    }
    assert_ptr_equal(lb__timer_heap_pop(&heap), &first);
    assert_int_equal(heap.near.n, LATER);
    assert_int_equal(lb__timer_heap_push(&heap, b1.when, &b1), 0);
    assert_int_equal(lb__timer_heap_push(&heap, b2.when, &b2), 0);
    assert_int_equal(heap.near.n, LATER + 2);
    for (int i = 10; i < LATER; i++) {
        later[i].dead = true;
        heap.dead++;
    }
    lb__timer_heap_compact(&heap, is_dead, release);
    assert_int_equal(heap.near.n, 12);
    assert_int_equal(lb__timer_heap_push(&heap, d.when, &d), 0);
    assert_int_equal(heap.near.n, 3);
    assert_ptr_equal(lb__timer_heap_pop(&heap), &b1);
    assert_ptr_equal(lb__timer_heap_pop(&heap), &d);
    assert_ptr_equal(lb__timer_heap_pop(&heap), &b2);
    for (int i = 0; i < 10; i++)
        assert_ptr_equal(lb__timer_heap_pop(&heap), &later[i]);
    assert_null(lb__timer_heap_pop(&heap));
    lb__timer_heap_destroy(&heap);
}

/* A compaction that finds every entry of a wheel slot dead gives all of
 * the slot's chunks back, not only the first. */
static void test_timer_heap_compact_frees_dead_slots(void **state) {
    (void)state;
    enum { N = 100 }; /* three chunks in one slot */
    lb__timer_heap heap;
    lb__timer_heap_init(&heap);
    const int64_t slot = (int64_t)1 << LB__WHEEL_SLOT_SHIFT;
    static item it[N + 1];
    it[0] = (item){.when = 0};
    assert_int_equal(lb__timer_heap_push(&heap, 0, &it[0]), 0);
    for (int round = 0; round < 3; round++) {
        for (int i = 1; i <= N; i++) {
            it[i] = (item){.when = 5 * slot + i, .id = i, .dead = true};
            assert_int_equal(lb__timer_heap_push(&heap, it[i].when, &it[i]), 0);
            heap.dead++;
        }
        assert_true(heap.chunks.live >= 3);
        released = 0;
        lb__timer_heap_compact(&heap, is_dead, release);
        assert_int_equal(released, N);
        assert_int_equal(heap.n, 1);
        assert_int_equal(heap.in_wheel, 0);
        assert_int_equal(heap.chunks.live, 0);
    }
    assert_ptr_equal(lb__timer_heap_pop(&heap), &it[0]);
    lb__timer_heap_destroy(&heap);
}

/* A loop that arms a short timer again and again before a slot of
 * pending ones (a timeout re-armed before a batch due later): each push
 * sends that slot back to the wheel and each pop takes it again, without
 * touching the large far heap. */
static void test_timer_heap_rewind_goes_to_wheel(void **state) {
    (void)state;
    enum { SLOT_ENTRIES = 64, FAR = 5000, ROUNDS = 200 };
    lb__timer_heap heap;
    lb__timer_heap_init(&heap);
    const int64_t slot = (int64_t)1 << LB__WHEEL_SLOT_SHIFT;
    static item batch[SLOT_ENTRIES], far[FAR], shorts[ROUNDS];
    for (int i = 0; i < SLOT_ENTRIES; i++) {
        batch[i] = (item){.when = 500 * slot + i, .id = i};
        assert_int_equal(lb__timer_heap_push(&heap, batch[i].when, &batch[i]), 0);
    }
    for (int i = 0; i < FAR; i++) {
        far[i] = (item){.when = 100000 * slot + i, .id = 1000 + i};
        assert_int_equal(lb__timer_heap_push(&heap, far[i].when, &far[i]), 0);
    }
    size_t far_n = heap.far.n;
    assert_int_equal(far_n, FAR);
    for (int r = 0; r < ROUNDS; r++) {
        shorts[r] = (item){.when = (int64_t)(10 + r) * slot, .id = 100000 + r};
        assert_int_equal(lb__timer_heap_push(&heap, shorts[r].when, &shorts[r]), 0);
        assert_int_equal(heap.near.n, 1);
        assert_int_equal(heap.far.n, far_n);
        assert_ptr_equal(lb__timer_heap_pop(&heap), &shorts[r]);
    }
    for (int i = 0; i < SLOT_ENTRIES; i++)
        assert_ptr_equal(lb__timer_heap_pop(&heap), &batch[i]);
    for (int i = 0; i < FAR; i++)
        assert_ptr_equal(lb__timer_heap_pop(&heap), &far[i]);
    assert_null(lb__timer_heap_pop(&heap));
    assert_int_equal(heap.chunks.live, 0);
    lb__timer_heap_destroy(&heap);
}

/* More timers than REWIND_MAX pushed first into a late slot, then an
 * earlier one: the pushes paid for the move, so near keeps only the
 * earliest slot (the 300 first ones wait in the wheel). */
static void test_timer_heap_rewind_after_many_pushes(void **state) {
    (void)state;
    enum { FIRST = 300 };
    lb__timer_heap heap;
    lb__timer_heap_init(&heap);
    const int64_t slot = (int64_t)1 << LB__WHEEL_SLOT_SHIFT;
    static item first[FIRST];
    item early = {.when = 5 * slot, .id = -1};
    for (int i = 0; i < FIRST; i++) {
        first[i] = (item){.when = 950 * slot + i, .id = i};
        assert_int_equal(lb__timer_heap_push(&heap, first[i].when, &first[i]), 0);
    }
    assert_int_equal(heap.near.n, FIRST);
    assert_int_equal(lb__timer_heap_push(&heap, early.when, &early), 0);
    assert_int_equal(heap.near.n, 1);
    assert_int_equal(heap.in_wheel, FIRST);
    assert_ptr_equal(lb__timer_heap_pop(&heap), &early);
    for (int i = 0; i < FIRST; i++)
        assert_ptr_equal(lb__timer_heap_pop(&heap), &first[i]);
    assert_null(lb__timer_heap_pop(&heap));
    lb__timer_heap_destroy(&heap);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timer_heap_matches_model),
        cmocka_unit_test(test_timer_heap_fifo_ties),
        cmocka_unit_test(test_timer_heap_compact_releases),
        cmocka_unit_test(test_timer_heap_large),
        cmocka_unit_test(test_timer_heap_tiers_interleaved),
        cmocka_unit_test(test_timer_heap_rewind_keeps_earlier_slots),
        cmocka_unit_test(test_timer_heap_compact_frees_dead_slots),
        cmocka_unit_test(test_timer_heap_rewind_goes_to_wheel),
        cmocka_unit_test(test_timer_heap_rewind_after_many_pushes),
    };
    return cmocka_run_group_tests_name("timer_heap", tests, NULL, NULL);
}
