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
 * Memory ordering, named once here and used nowhere else:
 *  - bmc_seq_begin(e): the entry's seq, loaded with acquire semantics, so that the copy
 *    that follows is not read before it (read_seqcount_begin's smp_rmb);
 *  - BMC_COPY_FROM_ENTRY: the reader's copy; bmc_seq_retry(e, s): after the copy, did
 *    the seq move? (the copy's loads are ordered before that second load of seq);
 *  - bmc_seq_claim / bmc_seq_publish: a writer moves seq from even to odd with a
 *    full-barrier compare-and-swap, writes the entry (BMC_COPY_TO_ENTRY, BMC_WRITE_ONCE)
 *    and stores seq + 1 with release semantics;
 *  - bmc_gen_bump: invalidation, a full-barrier increment of the bucket's gen after its
 *    last_inval_ns; a lease is published with release after its time, and read with
 *    acquire before it; the same for a delayed flush's deadline after its cutoff.
 * Instantiations:
 *  - C++: atomic operations in C++'s own terms (relaxed word loads and stores for the
 *    entries' fields and data, acquire and release on seq, leases and the flush
 *    deadline, seq_cst read-modify-writes) and no bare fence, so the seqlock is free of
 *    data races and ThreadSanitizer can check it (GCC 12's TSan does not model
 *    atomic_thread_fence);
 *  - BPF, on x86-64 (TSO: loads are not reordered with loads, stores not with stores, and
 *    BPF atomics are full barriers): acquire and release need only a compiler barrier.
 *    Other architectures need real ones: BPF load-acquire/store-release (Linux 6.15 and
 *    LLVM 21's -mcpu=v4, neither on Debian 12) or fully ordered atomics in their place.
 *    Until then the build refuses any other target (CMakeLists.txt, and the #error below).
 */
#ifndef BMC_CACHE_H
#define BMC_CACHE_H

#ifdef __cplusplus
#if !defined(__x86_64__)
#error "bmc's cache ordering is implemented for x86-64 only (see the memory-ordering note in core/bmc_cache.h)"
#endif
#include <cstring>

#include "bmc_grammar.h"
#define BMC_READ_ONCE(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define BMC_WRITE_ONCE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define BMC_LOAD_ACQUIRE(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define BMC_STORE_RELEASE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)
#define BMC_FETCH_ADD(x, v) __atomic_fetch_add(&(x), (v), __ATOMIC_SEQ_CST)
#define BMC_CMPXCHG(x, o, n) bmc_cmpxchg(&(x), (o), (n))
template <typename T>
static inline T bmc_cmpxchg(T *p, T expected, T desired) {
    __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expected;
}
/* The reader's copy: acquire word loads (plain loads on x86-64), so that bmc_seq_retry's
 * load of seq cannot be performed before them. Entry data arrays are whole words, and
 * so is the copy: dst gets len rounded up to a word (up to 7 bytes past len, as the BPF
 * side copies a small entry's whole data), which the reply scratch has room for. */
static_assert(BMC_SMALL_DATA % 8 == 0 && BMC_LARGE_DATA % 8 == 0, "entry data is whole words");
static inline void bmc_copy_from_entry(__u8 *dst, const __u8 *src, __u32 len) {
    for (__u32 i = 0; i < len; i += 8) {
        __u64 w = __atomic_load_n(reinterpret_cast<const __u64 *>(src + i), __ATOMIC_ACQUIRE);
        std::memcpy(dst + i, &w, 8);
    }
}
/* The writer's copy: relaxed word stores, keeping the bytes past len in the last word
 * (the entry is the writer's alone while seq is odd). */
static inline void bmc_copy_to_entry(__u8 *dst, const __u8 *src, __u32 len) {
    for (__u32 i = 0; i < len; i += 8) {
        auto *word = reinterpret_cast<__u64 *>(dst + i);
        __u64 w = len - i < 8 ? __atomic_load_n(word, __ATOMIC_RELAXED) : 0;
        std::memcpy(&w, src + i, len - i < 8 ? len - i : 8);
        __atomic_store_n(word, w, __ATOMIC_RELAXED);
    }
}
#define BMC_COPY_FROM_ENTRY(dst, src, len) bmc_copy_from_entry((dst), (src), (len))
#define BMC_COPY_TO_ENTRY(dst, src, len) bmc_copy_to_entry((dst), (src), (len))
#else
/* BPF on x86-64 (see above); the environment defines BMC_READ_ONCE, BMC_WRITE_ONCE and
 * BMC_COPY_FROM_ENTRY / BMC_COPY_TO_ENTRY. */
#define BMC_COMPILER_BARRIER() asm volatile("" ::: "memory")
#define BMC_LOAD_ACQUIRE(x)                                                                     \
    ({                                                                                          \
        __typeof__(x) bmc_v_ = BMC_READ_ONCE(x);                                                \
        BMC_COMPILER_BARRIER();                                                                 \
        bmc_v_;                                                                                 \
    })
#define BMC_STORE_RELEASE(x, v)                                                                 \
    do {                                                                                        \
        BMC_COMPILER_BARRIER();                                                                 \
        BMC_WRITE_ONCE(x, v);                                                                   \
    } while (0)
#define BMC_FETCH_ADD(x, v) __sync_fetch_and_add(&(x), (v))
#define BMC_CMPXCHG(x, o, n) __sync_val_compare_and_swap(&(x), (o), (n))
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

/* Which of bmc_local_fast's 256 filter bits an address sets: the XOR of its bytes, so
 * that addresses differing in one byte (clients of one network) fall on different bits. */
BMC_INLINE __u32 bmc_local_filter_bit(const __u8 *addr16)
{
    __u32 i, x = 0;

    for (i = 0; i < 16; i++)
        x ^= addr16[i];
    return x;
}

BMC_INLINE __u32 bmc_small_index(const struct bmc_config *cfg, __u32 hash)
{
    return hash & cfg->small_mask;
}

BMC_INLINE __u32 bmc_large_index(const struct bmc_config *cfg, __u32 hash)
{
    return (hash >> 16 ^ hash) & cfg->large_mask;
}

/* ---- the orderings (see the note at the top) ----------------------------------------- */
BMC_INLINE __u32 bmc_seq_begin(const struct bmc_entry_hdr *e)
{
    return BMC_LOAD_ACQUIRE(e->seq);
}

/* After copying an entry: did a writer touch it meanwhile? */
BMC_INLINE int bmc_seq_retry(const struct bmc_entry_hdr *e, __u32 seq)
{
#ifndef __cplusplus
    BMC_COMPILER_BARRIER();
#endif
    return BMC_READ_ONCE(e->seq) != seq;
}

/* Take an entry for writing: 1 with *locked the odd seq, else 0 (another writer has it). */
BMC_INLINE int bmc_seq_claim(struct bmc_entry_hdr *e, __u32 *locked)
{
    __u32 s = BMC_READ_ONCE(e->seq);

    if ((s & 1) || BMC_CMPXCHG(e->seq, s, s + 1) != s)
        return 0;
    *locked = s + 1;
    return 1;
}

BMC_INLINE void bmc_seq_publish(struct bmc_entry_hdr *e, __u32 locked)
{
    BMC_STORE_RELEASE(e->seq, locked + 1);
}

BMC_INLINE void bmc_gen_bump(struct bmc_small_bucket *sb, __u64 now)
{
    BMC_WRITE_ONCE(sb->hdr.last_inval_ns, now);
    BMC_FETCH_ADD(sb->hdr.gen, 1);
}

/* ---- cache operations ------------------------------------------------------------------ */
/* flush_at: a delayed flush_all's deadline (0: none). Once it has passed, entries filled
 * up to flush_cutoff are dead, as memcached treats items stored before its deadline
 * (bmc_rx_flush_at: flush_at is never later than memcached's, the cutoff never earlier). */
/* Why an entry is not served now: the miss counter of the first rule of bmc_entry_live
 * it breaks (its generation, its epoch, --max-age, a delayed flush), or 0 if it is live.
 * An empty entry (item_len 0) is the caller's to skip. */
BMC_INLINE __u32 bmc_entry_dead_reason(const struct bmc_entry_hdr *e, __u32 gen, __u32 epoch, __u64 flush_at,
                                       __u64 flush_cutoff, __u64 now, __u64 max_age)
{
    __u64 fill_ns = BMC_READ_ONCE(e->fill_ns);

    if (BMC_READ_ONCE(e->gen) != gen)
        return BMC_STAT_MISS_INVALIDATED;
    if (BMC_READ_ONCE(e->epoch) != epoch)
        return BMC_STAT_MISS_FLUSHED;
    /* A fill dated after now: now is a hit's reading of the coarse clock, which lagged
     * more than its margin (bmc_rx_live_now). The entry is that fresh, not expired. */
    if (now > fill_ns && now - fill_ns > max_age)
        return BMC_STAT_MISS_EXPIRED;
    if (flush_at && now >= flush_at && fill_ns <= flush_cutoff)
        return BMC_STAT_MISS_DELAYED_FLUSH;
    return 0;
}

BMC_INLINE int bmc_entry_live(const struct bmc_entry_hdr *e, __u32 gen, __u32 epoch, __u64 flush_at,
                              __u64 flush_cutoff, __u64 now, __u64 max_age)
{
    return BMC_READ_ONCE(e->item_len) != 0 &&
           !bmc_entry_dead_reason(e, gen, epoch, flush_at, flush_cutoff, now, max_age);
}

/* Does the way hold (hash, key_len) in a servable state? */
BMC_INLINE int bmc_way_match(const struct bmc_entry_hdr *e, __u32 s, __u32 hash, __u32 key_len, __u32 max_item,
                             __u32 gen, __u32 epoch, __u64 flush_at, __u64 cutoff, __u64 now, __u64 max_age)
{
    return !(s & 1) && BMC_READ_ONCE(e->hash) == hash && BMC_READ_ONCE(e->key_len) == key_len &&
           BMC_READ_ONCE(e->item_len) <= max_item && bmc_entry_live(e, gen, epoch, flush_at, cutoff, now, max_age);
}

/* Find a servable candidate for (hash, key_len). The caller copies it
 * (BMC_COPY_FROM_ENTRY), compares the key and checks bmc_seq_retry(). */
BMC_INLINE int bmc_find(struct bmc_small_bucket *sb, struct bmc_large_bucket *lb,
                        const struct bmc_global *g, const struct bmc_config *cfg, __u32 hash,
                        __u32 key_len, __u64 now, struct bmc_found *f)
{
    __u32 gen = BMC_READ_ONCE(sb->hdr.gen), epoch = BMC_READ_ONCE(g->epoch), i, s;
    __u64 flush_at = BMC_LOAD_ACQUIRE(g->flush_at_ns), cutoff = BMC_READ_ONCE(g->flush_cutoff_ns);
    struct bmc_entry_hdr *e;

    for (i = 0; i < BMC_SMALL_WAYS + BMC_LARGE_WAYS; i++) {  /* the small ways, then the large */
        e = i < BMC_SMALL_WAYS ? &sb->way[i & (BMC_SMALL_WAYS - 1)].h
                               : &lb->way[(i - BMC_SMALL_WAYS) & (BMC_LARGE_WAYS - 1)].h;
        s = bmc_seq_begin(e);
        if (bmc_way_match(e, s, hash, key_len, i < BMC_SMALL_WAYS ? BMC_SMALL_DATA : BMC_LARGE_DATA, gen, epoch,
                          flush_at, cutoff, now, cfg->max_age_ns)) {
            f->e = e;
            f->seq = s;
            f->large = i >= BMC_SMALL_WAYS;
            return 1;
        }
    }
    return 0;
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
    BMC_STORE_RELEASE(sb->hdr.lease_word[slot], want);
}

BMC_INLINE void bmc_invalidate(struct bmc_small_bucket *sb, __u64 now)
{
    bmc_gen_bump(sb, now);
}

BMC_INLINE void bmc_flush(struct bmc_global *g, __u64 now)
{
    BMC_WRITE_ONCE(g->last_flush_ns, now);
    BMC_FETCH_ADD(g->epoch, 1);
}

/* flush_all N: memcached keeps serving items until N seconds from now, then drops every
 * item stored before that moment; the latest such command sets the moment. */
BMC_INLINE void bmc_flush_at(struct bmc_global *g, __u64 at, __u64 cutoff)
{
    BMC_WRITE_ONCE(g->flush_cutoff_ns, cutoff);
    BMC_STORE_RELEASE(g->flush_at_ns, at);
}

/* The way a fill of `hash` replaces: the same key, else a dead entry, else the oldest. */
BMC_INLINE struct bmc_entry_hdr *bmc_pick_way(struct bmc_entry_hdr *first, __u32 stride, __u32 ways, __u32 hash,
                                              __u32 key_len, __u32 gen, __u32 epoch, __u64 flush_at, __u64 cutoff,
                                              const struct bmc_config *cfg, __u64 now)
{
    struct bmc_entry_hdr *victim = first, *e;
    __u32 i;

    for (i = 0; i < BMC_SMALL_WAYS; i++) {
        if (i >= ways)
            break;
        e = (struct bmc_entry_hdr *)((__u8 *)first + i * stride);
        if (BMC_READ_ONCE(e->hash) == hash && BMC_READ_ONCE(e->key_len) == key_len)
            return e;
    }
    for (i = 0; i < BMC_SMALL_WAYS; i++) {
        if (i >= ways)
            break;
        e = (struct bmc_entry_hdr *)((__u8 *)first + i * stride);
        if (!bmc_entry_live(e, gen, epoch, flush_at, cutoff, now, cfg->max_age_ns))
            return e;
        if (BMC_READ_ONCE(e->fill_ns) < BMC_READ_ONCE(victim->fill_ns))
            victim = e;
    }
    return victim;
}

/* Check the lease and claim an entry for an item of item_len bytes. On BMC_STAT_FILL_OK
 * the entry is owned (seq odd, out->seq) and its header written; the caller copies the
 * item into its data (BMC_COPY_TO_ENTRY) and calls bmc_seq_publish(). Otherwise returns
 * the reject counter. */
BMC_INLINE __u32 bmc_fill_claim(struct bmc_small_bucket *sb, struct bmc_large_bucket *lb,
                                const struct bmc_global *g, const struct bmc_config *cfg,
                                __u32 hash, __u32 key_len, __u32 item_len, __u64 now,
                                struct bmc_found *out)
{
    __u32 slot = bmc_lease_slot(hash), gen, epoch, locked;
    __u64 lw, lns, flush_at, cutoff;
    struct bmc_entry_hdr *e;

    /* Only items that can be answered alone in one datagram are worth a slot. */
    if (item_len == 0 || item_len > BMC_MAX_REPLY - BMC_FRAME_HDR_LEN - 5)
        return BMC_STAT_FILL_TOO_BIG;
    gen = BMC_READ_ONCE(sb->hdr.gen);
    lw = BMC_LOAD_ACQUIRE(sb->hdr.lease_word[slot]);
    if (lw != bmc_lease_word(hash, gen))
        return BMC_STAT_FILL_NO_LEASE;
    lns = BMC_READ_ONCE(sb->hdr.lease_ns[slot]);
    if (BMC_CMPXCHG(sb->hdr.lease_word[slot], lw, (__u64)0) != lw)
        return BMC_STAT_FILL_NO_LEASE;
    if (lns < BMC_READ_ONCE(sb->hdr.last_inval_ns) + cfg->fill_guard_ns ||
        lns < BMC_READ_ONCE(g->last_flush_ns) + cfg->fill_guard_ns)
        return BMC_STAT_FILL_GUARD;
    epoch = BMC_READ_ONCE(g->epoch);
    flush_at = BMC_LOAD_ACQUIRE(g->flush_at_ns);
    cutoff = BMC_READ_ONCE(g->flush_cutoff_ns);
    if (item_len <= BMC_SMALL_DATA) {
        e = bmc_pick_way(&sb->way[0].h, sizeof(sb->way[0]), BMC_SMALL_WAYS, hash, key_len, gen, epoch, flush_at,
                         cutoff, cfg, now);
        out->large = 0;
    } else {
        e = bmc_pick_way(&lb->way[0].h, sizeof(lb->way[0]), BMC_LARGE_WAYS, hash, key_len, gen, epoch, flush_at,
                         cutoff, cfg, now);
        out->large = 1;
    }
    if (!bmc_seq_claim(e, &locked))
        return BMC_STAT_FILL_BUSY;
    BMC_WRITE_ONCE(e->hash, hash);
    BMC_WRITE_ONCE(e->gen, gen);
    BMC_WRITE_ONCE(e->epoch, epoch);
    BMC_WRITE_ONCE(e->fill_ns, now);
    BMC_WRITE_ONCE(e->item_len, (__u16)item_len);
    BMC_WRITE_ONCE(e->key_len, (__u8)key_len);
    out->e = e;
    out->seq = locked;
    return BMC_STAT_FILL_OK;
}

#endif /* BMC_CACHE_H */
