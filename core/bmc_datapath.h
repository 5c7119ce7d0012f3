/* bmc core: what the cache does with a payload, shared by every backend.
 *
 * One definition compiled as C++ and as BPF C. The including side provides an
 * environment before this header:
 *   struct bmc_env;                              opaque to this file
 *   bmc_env_small(env, idx), bmc_env_large(env, idx)  bucket pointers (may be NULL)
 *   bmc_env_global(env), bmc_env_config(env)
 *   bmc_env_stat(env, stat)                      count one event
 *   BMC_COPY_FROM_ENTRY(dst, src, len), BMC_COPY_TO_ENTRY(dst, src, len)
 *                                                copy len bytes (len already bounded) out of
 *                                                or into an entry's data (BPF; C++ has them
 *                                                from bmc_cache.h)
 *   bmc_env_tai_ns(env)                          CLOCK_TAI now (flush_all with a Unix time)
 *   bmc_env_exact_now(env, now)                  CLOCK_MONOTONIC now, exactly (now: the
 *                                                caller's reading, which may lag)
 *   bmc_env_local(env, addr16)                   BMC_LOCAL_* of a host address, else 0
 *   bmc_env_vlan(env, vid)                       whether the host has this VLAN configured
 *   bmc_env_trace_reserve(env)                   a zeroed trace record to fill, or NULL
 *   bmc_env_trace_submit(env, t)                 hand it to the trace reader (every record
 *                                                reserved is submitted)
 * The including side parses packet headers, copies the L4 payload into scratch->in,
 * drives bmc_rx_byte / bmc_tx_byte over it and rewrites the packet.
 */
#ifndef BMC_DATAPATH_H
#define BMC_DATAPATH_H

#ifdef __cplusplus
#include "bmc_cache.h"
#include "bmc_frame.h"
#endif

#define BMC_END_LEN 5 /* "END\r\n" */

/* The time a hit judges an entry's age and a delayed flush by: an upper bound of real
 * time. rx->now is a reading of a clock that may lag real time by up to
 * clock_margin_ns (bmc_rx reads the kernel's coarse clock, a tick behind at most while
 * its CPU runs, and only once per tick, which adds a tick; bmcd sets the margin to three
 * ticks), so an entry expires up to the margin early, never late. A miss dates its lease
 * by the exact clock (bmc_env_exact_now), as fills and writes are dated: the fill guard
 * stays exact. */
BMC_INLINE __u64 bmc_rx_live_now(const struct bmc_config *cfg, const struct bmc_rx *rx)
{
    return rx->now + cfg->clock_margin_ns;
}

/* Whether the first len bytes of a and b agree, compared a word at a time: whole words,
 * then the word that ends at len (it may overlap the one before); a key shorter than a
 * word is masked (little-endian: its bytes are the word's low ones). Both arrays have
 * 256 bytes. Inlined into its one caller: as a global subprogram it cost a hit about
 * 14 ns more, inlined the verifier about 7,000 instructions more (clang 19). */
BMC_INLINE int bmc_key_equal(const struct bmc_keybytes *a, const struct bmc_keybytes *b,
                              __u32 len)
{
    __u64 diff;
    __u32 i, last;

    if (!a || !b || len == 0 || len > BMC_MAX_KEY_LEN)
        return 0;
    if (len < 8)
        return ((bmc_load64(a->b) ^ bmc_load64(b->b)) & ((1ULL << (len * 8)) - 1)) == 0;
    last = len - 8;
    BMC_OPAQUE(last);  /* bounded on the register that indexes */
    if (last > BMC_MAX_KEY_LEN - 8)
        return 0;
    diff = bmc_load64(a->b + last) ^ bmc_load64(b->b + last);
    for (i = 0; i < BMC_MAX_KEY_LEN; i += 8) {
        if (i + 8 > len)
            break;
        diff |= bmc_load64(a->b + i) ^ bmc_load64(b->b + i);
    }
    return diff == 0;
}

/* Why bmc_find found nothing servable for the key of rx: the counter of the first way
 * holding its hash and length, by the first rule of bmc_entry_live it breaks, or
 * BMC_STAT_MISS_ABSENT if no way holds it. Off the hit path: called on misses only. */
BMC_SUBPROG __u32 bmc_rx_miss_reason(struct bmc_env *env, const struct bmc_small_bucket *sb,
                                     const struct bmc_large_bucket *lb, const struct bmc_rx *rx)
{
    const struct bmc_config *cfg = bmc_env_config(env);
    const struct bmc_global *g = bmc_env_global(env);
    __u32 gen, epoch, i, hash, key_len, why;
    __u64 flush_at, cutoff, now;
    const struct bmc_entry_hdr *e;

    if (!env || !sb || !lb || !g || !rx)  /* env read: clang keeps it in global calls */
        return BMC_STAT_MISS_ABSENT;
    hash = rx->st.key_hash;
    key_len = rx->st.key_len;
    now = bmc_rx_live_now(cfg, rx);
    gen = BMC_READ_ONCE(sb->hdr.gen);
    epoch = BMC_READ_ONCE(g->epoch);
    flush_at = BMC_LOAD_ACQUIRE(g->flush_at_ns);
    cutoff = BMC_READ_ONCE(g->flush_cutoff_ns);
    for (i = 0; i < BMC_SMALL_WAYS + BMC_LARGE_WAYS; i++) {
        e = i < BMC_SMALL_WAYS ? &sb->way[i & 3].h : &lb->way[(i - BMC_SMALL_WAYS) & 1].h;
        if (BMC_READ_ONCE(e->hash) != hash || BMC_READ_ONCE(e->key_len) != key_len ||
            BMC_READ_ONCE(e->item_len) == 0)
            continue;
        why = bmc_entry_dead_reason(e, gen, epoch, flush_at, cutoff, now, cfg->max_age_ns);
        if (why)
            return why;
    }
    return BMC_STAT_MISS_ABSENT;
}

/* A key of the answerable get line: append its item to the reply, or take a lease. */
BMC_SUBPROG int bmc_rx_get_key(struct bmc_env *env, struct bmc_scratch *sc, struct bmc_rx *rx)
{
    __u32 hash, off, len, why = BMC_STAT_MISS_ABSENT;
    const struct bmc_config *cfg = bmc_env_config(env);
    struct bmc_small_bucket *sb;
    struct bmc_large_bucket *lb;
    struct bmc_global *g = bmc_env_global(env);
    struct bmc_found f;

    if (!sc || !rx)
        return 0;
    hash = rx->st.key_hash;
    off = rx->out_len;
    sb = bmc_env_small(env, bmc_small_index(cfg, hash));
    lb = bmc_env_large(env, bmc_large_index(cfg, hash));
    if (!sb || !lb || !g)
        return 0;
    bmc_env_stat(env, BMC_STAT_GET_KEYS);
    if (!bmc_find(sb, lb, g, cfg, hash, rx->st.key_len, bmc_rx_live_now(cfg, rx), &f)) {
        why = bmc_rx_miss_reason(env, sb, lb, rx);
        bmc_env_stat(env, why);
        goto miss;
    }
    len = BMC_READ_ONCE(f.e->item_len);
    if (len > BMC_LARGE_DATA || off > BMC_MAX_PAYLOAD) {
        bmc_env_stat(env, why);  /* cannot be: bmc_find bounds item_len */
        goto miss;
    }
    if (off + len + BMC_END_LEN > BMC_MAX_REPLY) {
        rx->too_big = 1;
        return 0;
    }
    BMC_COPY_FROM_ENTRY(sc->out + (off & BMC_SCRATCH_MASK), (const __u8 *)(f.e + 1), len);
    /* An item starts "VALUE <key> ", the key at offset 6. */
    if (!bmc_key_equal((const struct bmc_keybytes *)(sc->out + ((off + 6) & BMC_SCRATCH_MASK)),
                       (const struct bmc_keybytes *)(sc->in + (rx->st.key_start & BMC_SCRATCH_MASK)),
                       rx->st.key_len)) {
        why = BMC_STAT_MISS_OTHER_KEY;
        bmc_env_stat(env, why);
        goto miss;
    }
    if (bmc_seq_retry(f.e, f.seq)) {
        why = BMC_STAT_RACE;
        bmc_env_stat(env, why);
        goto miss;
    }
    rx->out_len = off + len;
    rx->hits++;
    bmc_env_stat(env, BMC_STAT_HIT_KEYS);
    return 0;
miss:
    if (!rx->misses)
        rx->miss_reason = (__u8)why;
    rx->misses++;
    bmc_env_stat(env, BMC_STAT_MISS_KEYS);
    bmc_lease_take(sb, hash, bmc_env_exact_now(env, rx->now));
    return 0;
}

/* ---- the decision trace ------------------------------------------------------------------
 * Off (global trace_every 0), a decision costs one load and one branch. On, 1 decision in
 * trace_every per CPU (per poller) is recorded; invalidations and epochs always are. */
BMC_INLINE int bmc_trace_sampled(struct bmc_env *env, struct bmc_scratch *sc)
{
    const struct bmc_global *g = bmc_env_global(env);
    __u32 every = g ? BMC_READ_ONCE(g->trace_every) : 0;

#ifdef BMC_NO_TRACE
    /* A build for the benchmark only: the gets' and fills' trace compiled out, to
     * measure what it costs off (invalidations are off the hit path). */
    every = 0;
#endif
    if (!every)
        return 0;
    if (++sc->trace_count < every)
        return 0;
    sc->trace_count = 0;
    return 1;
}

BMC_INLINE void bmc_trace_key(struct bmc_trace *t, const struct bmc_scratch *sc, __u32 start, __u32 len, __u32 hash)
{
    __u32 i;

    t->hash = hash;
    t->key_len = (__u8)(len > BMC_MAX_KEY_LEN ? BMC_MAX_KEY_LEN : len);
    for (i = 0; i < BMC_TRACE_KEY; i++) {
        if (i >= len)
            break;
        t->key[i] = sc->in[(start + i) & BMC_SCRATCH_MASK];
    }
}

/* The decision on a get datagram: reason is hit_requests or the pass counter, and for
 * pass_miss the first missing key's cause. */
BMC_SUBPROG int bmc_trace_get(struct bmc_env *env, const struct bmc_scratch *sc, const struct bmc_rx *rx,
                              const struct bmc_frame *f, __u32 reason)
{
    struct bmc_trace *t;
    __u32 i;

    if (!env || !sc || !rx || !f)
        return 0;
    t = bmc_env_trace_reserve(env);
    if (!t)
        return 0;
    t->time_ns = rx->now;
    t->what = BMC_TRACE_GET;
    t->reason = (__u16)(reason == BMC_STAT_PASS_MISS && rx->miss_reason ? rx->miss_reason : reason);
    t->family = bmc_frame_family(sc, f);
    t->port = rx->client_port;
    for (i = 0; i < 16; i++)
        t->addr[i] = f->src[i];
    if (rx->st.key_len)
        bmc_trace_key(t, sc, rx->st.key_start, rx->st.key_len, rx->st.key_hash);
    bmc_env_trace_submit(env, t);
    return 0;
}

/* A fill's outcome (reason: a fill_* counter), with its key. */
BMC_SUBPROG int bmc_trace_fill(struct bmc_env *env, const struct bmc_scratch *sc, const struct bmc_tx *tx,
                               __u32 reason)
{
    struct bmc_trace *t;

    if (!env || !sc || !tx)
        return 0;
    t = bmc_env_trace_reserve(env);
    if (!t)
        return 0;
    t->time_ns = tx->now;
    t->what = BMC_TRACE_FILL;
    t->reason = (__u16)reason;
    bmc_trace_key(t, sc, tx->st.key_start, tx->st.key_len, tx->st.key_hash);
    bmc_env_trace_submit(env, t);
    return 0;
}

/* What caused an invalidation or a new epoch, for the trace: the path and command of the
 * request (BMC_TRACE_PATH_*, BMC_TRACE_CMD_* or a command table row), or nothing. */
#define BMC_VIA(path, cmd) ((__u32)(path) | (__u32)(cmd) << 8)
#define BMC_VIA_NONE BMC_VIA(BMC_TRACE_PATH_NONE, BMC_TRACE_CMD_NONE)

/* An invalidation of a key's hash, or a new epoch (hash 0), when tracing is on. `tag` is
 * the record kind | BMC_VIA(...) << 8: one argument, as a global BPF function takes at
 * most five. */
BMC_SUBPROG int bmc_trace_event(struct bmc_env *env, __u32 tag, __u32 reason, __u32 hash, __u64 now)
{
    const struct bmc_global *g = bmc_env_global(env);
    struct bmc_trace *t;

    if (!env || !g || !BMC_READ_ONCE(g->trace_every))
        return 0;
    t = bmc_env_trace_reserve(env);
    if (!t)
        return 0;
    t->time_ns = now;
    t->what = (__u8)tag;
    t->path = (__u8)(tag >> 8);
    t->cmd = (__u8)(tag >> 16);
    t->reason = (__u16)reason;
    t->hash = hash;
    bmc_env_trace_submit(env, t);
    return 0;
}

BMC_INLINE void bmc_rx_invalidate(struct bmc_env *env, __u32 hash, __u8 family, __u32 via, __u64 now)
{
    const struct bmc_config *cfg = bmc_env_config(env);
    struct bmc_small_bucket *sb = bmc_env_small(env, bmc_small_index(cfg, hash));
    __u32 stat;

    if (!sb)
        return;
    bmc_invalidate(sb, now);
    stat = family == BMC_FAM_META ? BMC_STAT_INVAL_META : family == BMC_FAM_BINARY ? BMC_STAT_INVAL_BINARY
                                                                                   : BMC_STAT_INVAL_TEXT;
    bmc_env_stat(env, stat);
    bmc_trace_event(env, BMC_TRACE_INVAL | via << 8, stat, hash, now);
}

BMC_INLINE void bmc_rx_flush(struct bmc_env *env, __u32 stat, __u32 via, __u64 now)
{
    struct bmc_global *g = bmc_env_global(env);

    if (!g)
        return;
    bmc_flush(g, now);
    bmc_env_stat(env, stat);
    bmc_trace_event(env, BMC_TRACE_EPOCH | via << 8, stat, 0, now);
}

/* A delayed flush_all N. memcached keeps a one-second clock and applies the flush when
 * it reaches oldest_live = now + N - 1 on that clock, which lags real time by up to a
 * second: items may go up to BMC_FLUSH_EARLY_S seconds before now + N. Every item stored
 * before that moment goes, also those stored after the command. So the cache stops
 * serving at now + N - 2 s, rounded down to a second (never later than memcached), and
 * then drops every entry filled up to now + N (never fewer than memcached). N over 30
 * days is a Unix time in memcached; tai_now (CLOCK_TAI, which is UTC plus a leap-second
 * offset >= 0) converts it no later than it is due. */
BMC_INLINE void bmc_rx_flush_at(struct bmc_env *env, __u32 delay_s, __u64 now)
{
    struct bmc_global *g = bmc_env_global(env);
    __u64 due, early = (__u64)BMC_FLUSH_EARLY_S * 1000000000ULL, tai, at;

    if (!g)
        return;
    if (delay_s > BMC_MAX_RELATIVE_DELAY) {
        tai = bmc_env_tai_ns(env);
        at = (__u64)delay_s * 1000000000ULL;
        due = now + (at > tai ? at - tai : 0);
    } else {
        due = now + (__u64)delay_s * 1000000000ULL;
    }
    at = due > now + early ? due - early : now;
    at -= at % 1000000000ULL;
    if (at < now)
        at = now;
    bmc_flush_at(g, at, due);
}

BMC_INLINE void bmc_rx_actions(struct bmc_env *env, struct bmc_scratch *sc, struct bmc_rx *rx,
                               __u32 act)
{
    /* Writes in a datagram are the observer's (bmc_stream.h), which sees them as
     * memcached's socket receives them; a datagram holding one is no get. */
    if ((act & BMC_ACT_KEY) && rx->st.family == BMC_FAM_NONE)
        bmc_rx_get_key(env, sc, rx);
    if (act & BMC_ACT_GET_END) {
        rx->get_done = 1;
        if (rx->st.pos + 1 < rx->end)
            rx->trailing = 1;
    }
}

/* Ready rx for the payload of len bytes in scratch->in, scanned from start. */
BMC_INLINE void bmc_rx_begin(struct bmc_rx *rx, __u32 start, __u32 len, int get_allowed, __u64 now)
{
    bmc_scan_init(&rx->st, start, get_allowed);
    rx->now = now;
    rx->end = len;
    rx->out_len = BMC_FRAME_HDR_LEN;
    rx->hits = rx->misses = 0;
    rx->get_done = rx->trailing = rx->too_big = rx->miss_reason = 0;
}

/* The common request, "get <key>\r\n" alone after the frame header, answered without
 * the byte-at-a-time scanner. For such a payload bmc_rx_byte would: end the key token at
 * the '\r' (bmc_set_key, then the key action), end the line at the '\n' with one key
 * (BMC_ACT_GET_END, nothing trailing); first_cmd is "get", no bad_reason. This leaves
 * rx the same in every field the verdict, the reply and bmc_rx_get_key read, and does
 * the same key action, so the outcome is identical (the differential tests hold the two
 * paths to the same bytes). Anything else, a byte the scanner would treat otherwise
 * included, returns 0 with rx untouched, and the scanner runs. Call with a fresh rx
 * whose get line is answerable (rx->st.get_line). */
BMC_SUBPROG int bmc_rx_fast_get(struct bmc_env *env, struct bmc_scratch *sc, struct bmc_rx *rx)
{
    const __u32 key_start = BMC_FRAME_HDR_LEN + 4;
    __u32 end, key_len, i, h = BMC_FNV_OFFSET;
    __u8 c;

    if (!sc || !rx)
        return 0;
    end = rx->end;
    if (end < key_start + 1 + 2 || end > key_start + BMC_MAX_KEY_LEN + 2)
        return 0;
    if (sc->in[BMC_FRAME_HDR_LEN] != 'g' || sc->in[BMC_FRAME_HDR_LEN + 1] != 'e' ||
        sc->in[BMC_FRAME_HDR_LEN + 2] != 't' || sc->in[BMC_FRAME_HDR_LEN + 3] != ' ' ||
        sc->in[(end - 2) & BMC_SCRATCH_MASK] != '\r' || sc->in[(end - 1) & BMC_SCRATCH_MASK] != '\n')
        return 0;
    key_len = end - key_start - 2;
    for (i = 0; i < BMC_MAX_KEY_LEN; i++) {
        if (i >= key_len)
            break;
        c = sc->in[key_start + i];
        if (!bmc_is_key_byte(c))
            return 0;
        h = bmc_hash_update(h, c);
    }
    rx->st.first_cmd = BMC_CMD_GET;
    rx->st.lines = 1;
    rx->st.nkeys = 1;
    rx->st.key_hash = h;
    rx->st.key_start = key_start;
    rx->st.key_len = key_len;
    rx->st.family = BMC_FAM_NONE;
    rx->st.get_line = 0;
    rx->st.pos = end - 1;
    bmc_rx_actions(env, sc, rx, BMC_ACT_KEY | BMC_ACT_GET_END);
    rx->st.pos = end;
    return 1;
}

/* One byte of a text payload. Returns 1 once the payload is consumed. */
BMC_INLINE int bmc_rx_byte(struct bmc_env *env, struct bmc_scratch *sc, struct bmc_rx *rx)
{
    __u32 pos = rx->st.pos, act;
    int next_is_lf;

    if (pos >= rx->end || pos > BMC_SCRATCH_MASK)
        return 1;
    next_is_lf = pos + 1 < rx->end && sc->in[(pos + 1) & BMC_SCRATCH_MASK] == '\n';
    act = bmc_scan_step(&rx->st, sc->in[pos & BMC_SCRATCH_MASK], next_is_lf);
    if (act)
        bmc_rx_actions(env, sc, rx, act);
    return 0;
}

/* What to do with a scanned UDP get datagram: BMC_STAT_HIT_REQS to answer it, else the
 * pass counter that says why it goes to memcached. A reply larger than max_amp times the
 * request's payload is left to memcached: the cache must not be a better reflector. */
BMC_INLINE __u32 bmc_rx_verdict(const struct bmc_rx *rx, __u32 max_amp)
{
    __u8 cmd = rx->st.first_cmd;
    const struct bmc_cmd *first;

    if (cmd >= BMC_NUM_CMDS)
        return BMC_STAT_PASS_NOT_GET;
    first = &bmc_cmd_table[cmd];
    if (first->rule != BMC_RULE_GET_KEYS)
        return BMC_STAT_PASS_NOT_GET;
    if (rx->st.bad_reason)
        return rx->st.bad_reason;
    if (!rx->get_done)
        return BMC_STAT_PASS_MALFORMED;
    if (!(first->kflags & BMC_KF_ANSWERED))
        return BMC_STAT_PASS_GETS;
    if (rx->trailing)
        return BMC_STAT_PASS_NOT_GET;
    if (rx->misses)
        return rx->hits ? BMC_STAT_PASS_PARTIAL : BMC_STAT_PASS_MISS;
    if (rx->too_big)
        return BMC_STAT_PASS_TOO_BIG;
    if ((__u64)rx->out_len + BMC_END_LEN > (__u64)max_amp * rx->end)
        return BMC_STAT_PASS_AMPLIFICATION;
    return BMC_STAT_HIT_REQS;
}

/* The verdict for a UDP datagram to memcached's port, scanned with get_allowed = single
 * && plain && allowed: NOT_GET for what is no get request at all (not counted as one). */
BMC_INLINE __u32 bmc_rx_udp_verdict(const struct bmc_rx *rx, int single, int plain, int allowed,
                                    __u32 max_amp)
{
    __u32 v = bmc_rx_verdict(rx, max_amp);

    if (v == BMC_STAT_PASS_NOT_GET)
        return v;
    if (!single)
        return BMC_STAT_PASS_MULTI_DGRAM;
    if (!plain)
        return BMC_STAT_PASS_NOT_PLAIN;
    if (!allowed)
        return BMC_STAT_PASS_NOT_ALLOWED;
    return v;
}

/* Finish the reply in scratch->out: frame header echoing the request id, sequence 0 of
 * 1, then the items, then END. Returns the UDP payload length. */
BMC_INLINE __u32 bmc_rx_build_reply(struct bmc_scratch *sc, const struct bmc_rx *rx)
{
    __u32 off = rx->out_len & BMC_SCRATCH_MASK;

    sc->out[0] = sc->in[0];
    sc->out[1] = sc->in[1];
    sc->out[2] = 0;
    sc->out[3] = 0;
    sc->out[4] = 0;
    sc->out[5] = 1;
    sc->out[6] = 0;
    sc->out[7] = 0;
    sc->out[off] = 'E';
    sc->out[off + 1] = 'N';
    sc->out[off + 2] = 'D';
    sc->out[off + 3] = '\r';
    sc->out[off + 4] = '\n';
    return off + BMC_END_LEN;
}

/* An IPv4 header the stack accepts: its checksum verifies, and its options are padding
 * only (NOP, EOL); the stack refuses a source route by default and a malformed option
 * list always, and walking option lengths would cost the verifier a path per layout.
 * Returns 0 or the pass counter. A subprogram of its own: the verifier follows the loops'
 * exits to its return, not through the rest of the caller. */
BMC_SUBPROG int bmc_ipv4_header_check(const struct bmc_scratch *sc, __u32 l3, __u32 ihl)
{
    __u32 i, sum = 0, opt = 0;

    if (!sc)
        return BMC_STAT_PASS_MALFORMED;
    for (i = 0; i < 60; i += 2) {
        if (i >= ihl)
            break;
        sum += bmc_w16(sc, l3 + i);
    }
    if (bmc_fold16(sum) != 0xffff)
        return BMC_STAT_PASS_IP_CSUM;
    for (i = 20; i < 60; i++) {
        if (i >= ihl)
            break;
        opt |= bmc_h8(sc, l3 + i) & 0xfe;  /* nonzero unless NOP (1) or EOL (0); no branch */
    }
    return opt ? (int)BMC_STAT_PASS_SOURCE_ROUTE : 0;
}

/* Would the Linux stack deliver this UDP datagram (headers in scratch->hdr, its
 * payload_len payload bytes in scratch->in) to a socket of this host? 0 if so, else the
 * pass counter that says why not. What it checks, as the stack does before any socket
 * sees the datagram: unicast to the interface's MAC; a VLAN the host has configured; a
 * valid IPv4 header checksum and no IPv4 option but padding (so no source route); a source that is not broadcast,
 * multicast, unspecified, loopback from outside, v4-mapped or the host's own; a
 * destination that is one of the host's unicast addresses; a UDP checksum that verifies,
 * is absent (IPv4 only), or holds only the folded pseudo-header sum that a local
 * sender's checksum offload leaves (CHECKSUM_PARTIAL, which the stack trusts). Netfilter
 * and rp_filter are not modelled. The socket itself is the caller's to look up. */
BMC_SUBPROG int bmc_rx_deliverable(struct bmc_env *env, const struct bmc_scratch *sc,
                                   const struct bmc_frame *f, __u32 payload_len)
{
    const struct bmc_config *cfg = bmc_env_config(env);
    __u32 l3, l4, i, sum = 0, pseudo, field, udp_len, ihl, t, dst[4];
    int own = 0, v6;

    if (!sc || !f)
        return BMC_STAT_PASS_MALFORMED;
    if (!cfg->check_delivery)
        return 0;
    l3 = f->l3_off;
    l4 = f->l4_off;
    v6 = f->answerable == 6;

    for (i = 0; i < 6; i++)
        if (sc->hdr[i] != cfg->mac[i])
            return BMC_STAT_PASS_NOT_OUR_MAC;
    if (l3 == BMC_ETH_HLEN + 4 && !bmc_env_vlan(env, bmc_h16(sc, BMC_ETH_HLEN) & 0xfff))
        return BMC_STAT_PASS_VLAN;
    if (l3 > BMC_ETH_HLEN + 4 || l4 < l3 + 20 || l4 > l3 + 60)
        return BMC_STAT_PASS_NOT_PLAIN;
    ihl = l4 - l3;
    bmc_frame_dst(sc, f, dst);
    if (v6) {
        __u32 z10 = 0, rest = 0;
        for (i = 0; i < 10; i++)
            z10 |= f->src[i];
        for (i = 10; i < 15; i++)
            rest |= f->src[i];
        /* multicast, unspecified, loopback, v4-mapped */
        if (f->src[0] == 0xff || (z10 == 0 && rest == 0 && f->src[15] == 0) ||
            (z10 == 0 && rest == 0 && f->src[15] == 1 && !cfg->loopback) ||
            (z10 == 0 && f->src[10] == 0xff && f->src[11] == 0xff))
            return BMC_STAT_PASS_BAD_SOURCE;
    } else {
        t = (__u32)bmc_ipv4_header_check(sc, l3, ihl);
        if (t)
            return (int)t;
        t = f->src[12];
        if (t == 0 || t >= 224 || (t == 127 && !cfg->loopback))
            return BMC_STAT_PASS_BAD_SOURCE;
    }
    own = bmc_env_local(env, f->src);
    if (own == BMC_LOCAL_BROADCAST || (own && !cfg->loopback))
        return BMC_STAT_PASS_BAD_SOURCE;
    if (bmc_env_local(env, (const __u8 *)dst) != BMC_LOCAL_UNICAST)
        return BMC_STAT_PASS_NOT_LOCAL;

    /* UDP checksum: the pseudo-header (addresses, protocol, UDP length), the UDP header
     * and the payload sum to 0xffff when it verifies. */
    field = bmc_h16(sc, l4 + 6);
    if (field == 0)
        return v6 ? (int)BMC_STAT_PASS_UDP_CSUM : 0;
    udp_len = bmc_h16(sc, l4 + 4);
    pseudo = BMC_IPPROTO_UDP + udp_len;
    if (v6) {
        for (i = 0; i < 16; i += 2)
            pseudo += bmc_h16(sc, l3 + 8 + i) + bmc_h16(sc, l3 + 24 + i);
    } else {
        for (i = 0; i < 4; i += 2)
            pseudo += bmc_h16(sc, l3 + 12 + i) + bmc_h16(sc, l3 + 16 + i);
    }
    pseudo = bmc_fold16(pseudo);
    if (field == pseudo)
        return 0;
    sum = pseudo + bmc_h16(sc, l4) + bmc_h16(sc, l4 + 2) + udp_len + field;
    sum = bmc_fold16(sum + ((__u32)bmc_sum_scratch(sc, payload_len, 1) & 0xffff));
    return sum == 0xffff ? 0 : (int)BMC_STAT_PASS_UDP_CSUM;
}

/* Turn the request's headers, as copied into scratch->hdr, into the reply's: MACs,
 * addresses and UDP ports swapped, a VLAN tag and IPv4 options kept, lengths set for a
 * payload of payload_len bytes (already in scratch->out), TTL or hop limit 64. IPv4: the
 * header checksum recomputed and the UDP checksum zero (optional there; the payload
 * changed entirely). IPv6: the UDP checksum, which IPv6 requires, over the pseudo-header,
 * the UDP header and the payload. Word by word (bmc_w16: every field is a 16-bit word at
 * an even offset). Returns the headers' length, 0 if it cannot. */
BMC_INLINE __u32 bmc_reply_headers(struct bmc_scratch *sc, const struct bmc_frame *f, __u32 payload_len)
{
    const __u32 l3 = f->l3_off, l4 = f->l4_off, ihl = l4 - l3;
    const int v6 = f->answerable == 6;
    const __u32 addr = l3 + (v6 ? 8 : 12), addr_len = v6 ? 16 : 4;
    __u32 i, sum = 0, v;

    /* Ethernet with at most one tag, then 20 to 60 bytes of IPv4 or 40 of IPv6: every
     * offset below stays under 18 + 60 + 8. */
    if (l3 > BMC_ETH_HLEN + 4 || l4 < l3 + 20 || l4 > l3 + 60 || (v6 && ihl != 40) ||
        payload_len > BMC_MAX_PAYLOAD)
        return 0;
    for (i = 0; i < 6; i += 2)
        bmc_w16_swap(sc, i, i + 6);
    for (i = 0; i < 16; i += 2) {  /* IPv4: 4 bytes at 12 and 16; IPv6: 16 at 8 and 24 */
        if (i >= addr_len)
            break;
        bmc_w16_swap(sc, addr + i, addr + addr_len + i);
    }
    bmc_w16_swap(sc, l4, l4 + 2);
    v = 8 + payload_len;
    bmc_w16_set(sc, l4 + 4, bmc_wire16(v));
    bmc_w16_set(sc, l4 + 6, 0);
    if (v6) {
        bmc_w16_set(sc, l3 + 4, bmc_wire16(v));
        sc->hdr[(l3 + 7) & (BMC_HDR_MAX - 1)] = 64;
        for (i = 0; i < 32; i += 2)  /* pseudo-header: addresses, length, next header */
            sum += bmc_w16(sc, l3 + 8 + i);
        sum += bmc_wire16(v) + bmc_wire16(BMC_IPPROTO_UDP);
        for (i = 0; i < 8; i += 2)
            sum += bmc_w16(sc, l4 + i);
        sum += bmc_wire16((__u32)bmc_sum_scratch(sc, payload_len, 0) & 0xffff);
        sum = ~bmc_fold16(sum) & 0xffff;
        if (sum == 0)
            sum = 0xffff;  /* zero means "no checksum" */
        bmc_w16_set(sc, l4 + 6, sum);
        return l4 + 8;
    }
    bmc_w16_set(sc, l3 + 2, bmc_wire16(ihl + v));
    sc->hdr[(l3 + 8) & (BMC_HDR_MAX - 1)] = 64;
    bmc_w16_set(sc, l3 + 10, 0);
    for (i = 0; i < 60; i += 2) {
        if (i >= ihl)
            break;
        sum += bmc_w16(sc, l3 + i);
    }
    bmc_w16_set(sc, l3 + 10, ~bmc_fold16(sum) & 0xffff);
    return l4 + 8;
}

/* Is this UDP request one datagram (sequence 0 of 1)? */
BMC_INLINE int bmc_frame_single(const __u8 *frame)
{
    return frame[2] == 0 && frame[3] == 0 && frame[4] == 0 && frame[5] == 1;
}

/* A fill's outcome, counted and (sampled) traced: accepted, skipped or rejected. */
BMC_INLINE void bmc_tx_outcome(struct bmc_env *env, struct bmc_scratch *sc, struct bmc_tx *tx, __u32 r)
{
    bmc_env_stat(env, r);
    if (bmc_trace_sampled(env, sc))
        bmc_trace_fill(env, sc, tx, r);
}

/* A VALUE line just ended at tx->st.pos: offer its item as a fill and skip its data. */
BMC_SUBPROG int bmc_tx_value(struct bmc_env *env, struct bmc_scratch *sc, struct bmc_tx *tx)
{
    __u32 data_end, item_len, start, r;
    const struct bmc_config *cfg = bmc_env_config(env);
    struct bmc_small_bucket *sb;
    struct bmc_large_bucket *lb;
    struct bmc_global *g = bmc_env_global(env);
    struct bmc_found f;

    if (!sc || !tx)
        return 1;
    /* The data block and its "\r\n" follow the VALUE line. */
    data_end = tx->st.pos + tx->st.value_bytes;
    if (tx->st.value_bytes > BMC_MAX_PAYLOAD || data_end + 2 > tx->end ||
        sc->in[data_end & BMC_SCRATCH_MASK] != '\r' ||
        sc->in[(data_end + 1) & BMC_SCRATCH_MASK] != '\n') {
        bmc_tx_outcome(env, sc, tx, BMC_STAT_FILL_MALFORMED);
        return 1;
    }
    start = tx->st.prev_line_start;
    item_len = data_end + 2 - start;
    tx->st.pos = data_end + 2;
    tx->st.line_start = data_end + 2;  /* the next line starts after the data block */
    if (tx->st.value_cas) {
        bmc_tx_outcome(env, sc, tx, BMC_STAT_FILL_CAS);
        return 0;
    }
    sb = bmc_env_small(env, bmc_small_index(cfg, tx->st.key_hash));
    lb = bmc_env_large(env, bmc_large_index(cfg, tx->st.key_hash));
    if (!sb || !lb || !g)
        return 1;
    r = bmc_fill_claim(sb, lb, g, cfg, tx->st.key_hash, tx->st.key_len, item_len, tx->now, &f);
    if (r == BMC_STAT_FILL_OK) {
        /* bmc_fill_claim chose the table by item_len; the clamps restate it for the
         * verifier and never cut an item. */
        if (f.large)
            BMC_COPY_TO_ENTRY(((struct bmc_large_entry *)f.e)->data, sc->in + (start & BMC_SCRATCH_MASK),
                     item_len > BMC_LARGE_DATA ? BMC_LARGE_DATA : item_len);
        else
            BMC_COPY_TO_ENTRY(((struct bmc_small_entry *)f.e)->data, sc->in + (start & BMC_SCRATCH_MASK),
                     item_len > BMC_SMALL_DATA ? BMC_SMALL_DATA : item_len);
        bmc_seq_publish(f.e, f.seq);
    }
    bmc_tx_outcome(env, sc, tx, r);
    return 0;
}

/* One byte of a reply payload. Returns 1 once the payload is consumed. */
BMC_INLINE int bmc_tx_byte(struct bmc_env *env, struct bmc_scratch *sc, struct bmc_tx *tx)
{
    __u32 pos = tx->st.pos;
    int next_is_lf;

    if (pos >= tx->end || pos > BMC_SCRATCH_MASK)
        return 1;
    next_is_lf = pos + 1 < tx->end && sc->in[(pos + 1) & BMC_SCRATCH_MASK] == '\n';
    if (bmc_scan_step(&tx->st, sc->in[pos & BMC_SCRATCH_MASK], next_is_lf) & BMC_ACT_VALUE)
        return bmc_tx_value(env, sc, tx);
    return 0;
}

#endif /* BMC_DATAPATH_H */
