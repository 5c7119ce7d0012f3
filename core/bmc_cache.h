/* bmc core: cache operations on the shared memory layout.
 *
 * Like bmc_grammar.h this is one definition compiled twice, as C++ and as BPF C. The
 * memory is shared by XDP, TC and userspace pollers on several CPUs at once.
 *
 * Consistency model
 *  - An entry is a seqlock. A writer claims it by moving seq from even to odd with a
 *    compare-and-swap, writes, and publishes by storing seq + 1. A reader samples seq
 *    (even), copies, and re-reads seq; a change means the copy may be torn.
 *  - Invalidation never touches entries: it bumps its bucket's gen. An entry is servable
 *    only while entry.gen == bucket.gen and entry.epoch == global.epoch, so a write or
 *    flush_all makes every older entry of that bucket (or of the cache) unservable at once.
 *  - A fill must hold a lease: a miss records (hash, gen) in its bucket. The fill is
 *    accepted only if the gen is unchanged, i.e. no write touched the bucket since that
 *    miss, and the miss came at least fill_guard_ns after the last write, which covers
 *    the time memcached may take to apply a write the cache has already seen.
 *
 * Memory ordering: the BPF instantiation relies on x86-64 TSO (loads are not reordered
 * with loads, stores not with stores; BPF atomics are full barriers). The C++
 * instantiation uses explicit fences, which are free on x86-64.
 */
#ifndef BMC_CACHE_H
#define BMC_CACHE_H

#ifdef __cplusplus
#include "bmc_grammar.h"
#define BMC_READ_ONCE(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define BMC_WRITE_ONCE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define BMC_SMP_RMB() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define BMC_SMP_WMB() __atomic_thread_fence(__ATOMIC_RELEASE)
#endif

#define BMC_LEASE_VALID 0x80000000u

struct bmc_found {
    struct bmc_entry_hdr *e;
    __u32 seq;
    __u32 large;
};

BMC_INLINE __u64 bmc_lease_word(__u32 hash, __u32 gen)
{
    return ((__u64)hash << 32) | (gen & 0x7fffffffu) | BMC_LEASE_VALID;
}

/* Multiply-shift rather than '%': the verifier bounds the result to [0, SLOTS). */
BMC_INLINE __u32 bmc_lease_slot(__u32 hash)
{
    return (__u32)(((__u64)(hash >> 16) * BMC_LEASE_SLOTS) >> 16);
}

BMC_INLINE __u32 bmc_small_index(const struct bmc_config *cfg, __u32 hash)
{
    return hash & cfg->small_mask;
}

BMC_INLINE __u32 bmc_large_index(const struct bmc_config *cfg, __u32 hash)
{
    return (hash >> 16 ^ hash) & cfg->large_mask;
}

/* flush_at: a delayed flush_all's deadline (0: none). Once it has passed, entries filled
 * up to flush_cutoff are dead, as memcached treats items stored before its deadline
 * (bmc_rx_flush_at: flush_at is never later than memcached's, the cutoff never earlier). */
BMC_INLINE int bmc_entry_live(const struct bmc_entry_hdr *e, __u32 gen, __u32 epoch, __u64 flush_at,
                              __u64 flush_cutoff, __u64 now, __u64 max_age)
{
    return e->item_len != 0 && e->gen == gen && e->epoch == epoch && now - e->fill_ns <= max_age &&
           !(flush_at && now >= flush_at && e->fill_ns <= flush_cutoff);
}

/* Find a servable candidate for (hash, key_len). The caller copies it, compares the key
 * and checks bmc_entry_stable(). */
BMC_INLINE int bmc_find(struct bmc_small_bucket *sb, struct bmc_large_bucket *lb,
                        const struct bmc_global *g, const struct bmc_config *cfg, __u32 hash,
                        __u32 key_len, __u64 now, struct bmc_found *f)
{
    __u32 gen = BMC_READ_ONCE(sb->hdr.gen), epoch = BMC_READ_ONCE(g->epoch), i, s;
    __u64 flush_at = BMC_READ_ONCE(g->flush_at_ns), cutoff = BMC_READ_ONCE(g->flush_cutoff_ns);
    struct bmc_entry_hdr *e;

    for (i = 0; i < BMC_SMALL_WAYS; i++) {
        e = &sb->way[i].h;
        s = BMC_READ_ONCE(e->seq);
        if (!(s & 1) && e->hash == hash && e->key_len == key_len && e->item_len <= BMC_SMALL_DATA &&
            bmc_entry_live(e, gen, epoch, flush_at, cutoff, now, cfg->max_age_ns)) {
            f->e = e;
            f->seq = s;
            f->large = 0;
            return 1;
        }
    }
    for (i = 0; i < BMC_LARGE_WAYS; i++) {
        e = &lb->way[i].h;
        s = BMC_READ_ONCE(e->seq);
        if (!(s & 1) && e->hash == hash && e->key_len == key_len && e->item_len <= BMC_LARGE_DATA &&
            bmc_entry_live(e, gen, epoch, flush_at, cutoff, now, cfg->max_age_ns)) {
            f->e = e;
            f->seq = s;
            f->large = 1;
            return 1;
        }
    }
    return 0;
}

/* After copying an entry: did a writer touch it meanwhile? */
BMC_INLINE int bmc_entry_stable(const struct bmc_entry_hdr *e, __u32 seq)
{
    BMC_SMP_RMB();
    return BMC_READ_ONCE(e->seq) == seq;
}

/* A miss: record a lease unless this key already holds one for the current gen (the
 * earliest outstanding miss is the one that matters). */
BMC_INLINE void bmc_lease_take(struct bmc_small_bucket *sb, __u32 hash, __u64 now)
{
    __u32 slot = bmc_lease_slot(hash);
    __u64 want = bmc_lease_word(hash, BMC_READ_ONCE(sb->hdr.gen));

    if (BMC_READ_ONCE(sb->hdr.lease_word[slot]) == want)
        return;
    BMC_WRITE_ONCE(sb->hdr.lease_ns[slot], now);
    BMC_SMP_WMB();
    BMC_WRITE_ONCE(sb->hdr.lease_word[slot], want);
}

BMC_INLINE void bmc_invalidate(struct bmc_small_bucket *sb, __u64 now)
{
    BMC_WRITE_ONCE(sb->hdr.last_inval_ns, now);
    __sync_fetch_and_add(&sb->hdr.gen, 1);
}

BMC_INLINE void bmc_flush(struct bmc_global *g, __u64 now)
{
    BMC_WRITE_ONCE(g->last_flush_ns, now);
    __sync_fetch_and_add(&g->epoch, 1);
}

/* flush_all N: memcached keeps serving items until N seconds from now, then drops every
 * item stored before that moment; the latest such command sets the moment. */
BMC_INLINE void bmc_flush_at(struct bmc_global *g, __u64 at, __u64 cutoff)
{
    BMC_WRITE_ONCE(g->flush_cutoff_ns, cutoff);
    BMC_SMP_WMB();
    BMC_WRITE_ONCE(g->flush_at_ns, at);
}

/* The way a fill of `hash` replaces: the same key, else a dead entry, else the oldest. */
BMC_INLINE struct bmc_entry_hdr *bmc_pick_small(struct bmc_small_bucket *sb, __u32 hash,
                                                __u32 key_len, __u32 gen, __u32 epoch, __u64 flush_at, __u64 cutoff,
                                                const struct bmc_config *cfg, __u64 now)
{
    struct bmc_entry_hdr *victim = &sb->way[0].h, *e;
    __u32 i;

    for (i = 0; i < BMC_SMALL_WAYS; i++) {
        e = &sb->way[i].h;
        if (e->hash == hash && e->key_len == key_len)
            return e;
    }
    for (i = 0; i < BMC_SMALL_WAYS; i++) {
        e = &sb->way[i].h;
        if (!bmc_entry_live(e, gen, epoch, flush_at, cutoff, now, cfg->max_age_ns))
            return e;
        if (e->fill_ns < victim->fill_ns)
            victim = e;
    }
    return victim;
}

BMC_INLINE struct bmc_entry_hdr *bmc_pick_large(struct bmc_large_bucket *lb, __u32 hash,
                                                __u32 key_len, __u32 gen, __u32 epoch, __u64 flush_at, __u64 cutoff,
                                                const struct bmc_config *cfg, __u64 now)
{
    struct bmc_entry_hdr *victim = &lb->way[0].h, *e;
    __u32 i;

    for (i = 0; i < BMC_LARGE_WAYS; i++) {
        e = &lb->way[i].h;
        if (e->hash == hash && e->key_len == key_len)
            return e;
    }
    for (i = 0; i < BMC_LARGE_WAYS; i++) {
        e = &lb->way[i].h;
        if (!bmc_entry_live(e, gen, epoch, flush_at, cutoff, now, cfg->max_age_ns))
            return e;
        if (e->fill_ns < victim->fill_ns)
            victim = e;
    }
    return victim;
}

/* Check the lease and claim an entry for an item of item_len bytes. On BMC_STAT_FILL_OK
 * the entry is owned (seq odd, *locked_seq) and its header written; the caller copies
 * the item into its data and calls bmc_fill_publish(). Otherwise returns the reject
 * counter. */
BMC_INLINE __u32 bmc_fill_claim(struct bmc_small_bucket *sb, struct bmc_large_bucket *lb,
                                const struct bmc_global *g, const struct bmc_config *cfg,
                                __u32 hash, __u32 key_len, __u32 item_len, __u64 now,
                                struct bmc_found *out)
{
    __u32 slot = bmc_lease_slot(hash), gen, epoch, s;
    __u64 lw, lns, flush_at, cutoff;
    struct bmc_entry_hdr *e;

    /* Only items that can be answered alone in one datagram are worth a slot. */
    if (item_len == 0 || item_len > BMC_MAX_REPLY - BMC_FRAME_HDR_LEN - 5)
        return BMC_STAT_FILL_TOO_BIG;
    gen = BMC_READ_ONCE(sb->hdr.gen);
    lw = BMC_READ_ONCE(sb->hdr.lease_word[slot]);
    if (lw != bmc_lease_word(hash, gen))
        return BMC_STAT_FILL_NO_LEASE;
    BMC_SMP_RMB();
    lns = BMC_READ_ONCE(sb->hdr.lease_ns[slot]);
    if (__sync_val_compare_and_swap(&sb->hdr.lease_word[slot], lw, 0) != lw)
        return BMC_STAT_FILL_NO_LEASE;
    if (lns < BMC_READ_ONCE(sb->hdr.last_inval_ns) + cfg->fill_guard_ns ||
        lns < BMC_READ_ONCE(g->last_flush_ns) + cfg->fill_guard_ns)
        return BMC_STAT_FILL_GUARD;
    epoch = BMC_READ_ONCE(g->epoch);
    flush_at = BMC_READ_ONCE(g->flush_at_ns);
    cutoff = BMC_READ_ONCE(g->flush_cutoff_ns);
    if (item_len <= BMC_SMALL_DATA) {
        e = bmc_pick_small(sb, hash, key_len, gen, epoch, flush_at, cutoff, cfg, now);
        out->large = 0;
    } else {
        e = bmc_pick_large(lb, hash, key_len, gen, epoch, flush_at, cutoff, cfg, now);
        out->large = 1;
    }
    s = BMC_READ_ONCE(e->seq);
    if ((s & 1) || __sync_val_compare_and_swap(&e->seq, s, s + 1) != s)
        return BMC_STAT_FILL_BUSY;
    e->hash = hash;
    e->gen = gen;
    e->epoch = epoch;
    e->fill_ns = now;
    e->item_len = (__u16)item_len;
    e->key_len = (__u8)key_len;
    out->e = e;
    out->seq = s + 1;
    return BMC_STAT_FILL_OK;
}

BMC_INLINE void bmc_fill_publish(struct bmc_entry_hdr *e, __u32 locked_seq)
{
    BMC_SMP_WMB();
    BMC_WRITE_ONCE(e->seq, locked_seq + 1);
}

#endif /* BMC_CACHE_H */
