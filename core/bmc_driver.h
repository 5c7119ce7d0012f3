/* bmc core: the receive side's per-packet flow, written once for every datapath.
 *
 * From a parsed frame to a verdict: the UDP decision, the fast path or the scanner, the
 * counters, the stack-delivery checks, the reply's fit and its build. Compiled as C++
 * (core/datapath.cpp) and as BPF C (bpf/bmc.bpf.c). The including side supplies only the
 * I/O, before including this header:
 *   struct bmc_io;                                  opaque to this file
 *   bmc_io_load(io, off, dst, len)                  copy len payload bytes at packet offset
 *                                                   off into dst; 0 on success
 *   bmc_io_scan(io, sc, rx)                         bmc_rx_byte until it returns 1 (a loop
 *                                                   in C++, bpf_loop in BPF)
 *   bmc_io_sk_lookup(io, sc, f)                     1 if memcached has a socket the stack
 *                                                   would deliver this datagram to
 *   bmc_io_sock_memo(io)                            BMC_SOCK_MEMOS remembered lookups of
 *                                                   this CPU, or NULL to look up every time
 *   bmc_io_reply(io, sc, hdr_len, payload_len)      make the packet scratch->hdr then
 *                                                   scratch->out; 0 on success
 * and for the send side (memcached's replies, which fill the cache):
 *   struct bmc_tx_io;
 *   bmc_tx_io_load(io, off, dst, len), bmc_tx_io_scan(io, sc, tx) (bmc_tx_byte until 1),
 *   bmc_tx_io_now(io)                               the clock, read only for a reply
 * and the environment of bmc_datapath.h.
 */
#ifndef BMC_DRIVER_H
#define BMC_DRIVER_H

#ifdef __cplusplus
#include "bmc_stream.h"
#endif

#define BMC_RX_PASS 0
#define BMC_RX_TX 1

/* The cost of a hit by stage, for the benchmark only (bench/bmc_hitcost.cpp): a build
 * with BMC_BENCH_STAGE n answers every get unfinished as soon as stage n is done, so that
 * a stage's cost is the difference between two builds' time per hit. 0 (every build bmc
 * runs): no stage ends early. The stages: BMC_HIT_STAGES (core/bmc_layout.hpp). */
#ifndef BMC_BENCH_STAGE
#define BMC_BENCH_STAGE BMC_STAGE_NONE
#endif
#define BMC_STAGE_DONE(n) (BMC_BENCH_STAGE == (n))

/* Replies are Ethernet (a tag at most), IPv4 with options or IPv6, UDP. */
#define BMC_REPLY_HDR_MIN (BMC_ETH_HLEN + 20 + 8)
#define BMC_REPLY_HDR_MAX 128

/* Whether memcached has a socket the stack would deliver this datagram to, the lookup's
 * answer remembered per CPU (core/bmc_frame.h says why that is sound). now: the reading
 * the hit judges ages by, which may lag real time as bmc_rx_live_now says. */
BMC_INLINE int bmc_drive_socket(struct bmc_env *env, struct bmc_io *io, const struct bmc_scratch *sc,
                                const struct bmc_frame *f, __u64 now)
{
    const struct bmc_config *cfg = bmc_env_config(env);
    const struct bmc_global *g = bmc_env_global(env);
    struct bmc_sock_memo *m = bmc_io_sock_memo(io);
    __u32 dst[4], epoch;
    int yes;

    if (!g || !m || !cfg->sock_memo_ns)
        return bmc_io_sk_lookup(io, sc, f);
    /* Read before the lookup: a bind the lookup misses starts a later epoch. */
    epoch = BMC_READ_ONCE(g->epoch);
    bmc_frame_dst(sc, f, dst);
    m += bmc_sock_memo_slot(dst);
    yes = bmc_sock_memo_find(m, dst, f->answerable, epoch, now);
    if (yes >= 0)
        return yes;
    yes = bmc_io_sk_lookup(io, sc, f);
    bmc_sock_memo_put(m, dst, f->answerable, epoch, now + cfg->sock_memo_ns, yes);
    return yes;
}

/* 0 if the stack would deliver the datagram (headers in scratch->hdr, len payload bytes
 * in scratch->in) to memcached's socket, else the pass counter that says why not. */
BMC_INLINE __u32 bmc_drive_deliverable(struct bmc_env *env, struct bmc_io *io, const struct bmc_scratch *sc,
                                       const struct bmc_frame *f, __u32 len, __u64 now)
{
    __u32 d = (__u32)bmc_rx_deliverable(env, sc, f, len) & 0xff;

    if (!d && bmc_env_config(env)->check_socket && !bmc_drive_socket(env, io, sc, f, now))
        d = BMC_STAT_PASS_NO_SOCKET;
    return d;
}

/* A UDP datagram to memcached's port, its frame parsed into f (not malformed). plain:
 * f->answerable; allowed: the client may be answered from the cache. */
BMC_INLINE int bmc_drive_rx_udp(struct bmc_env *env, struct bmc_io *io, struct bmc_scratch *sc,
                                struct bmc_rx *rx, const struct bmc_frame *f, int allowed, __u64 now)
{
    const struct bmc_config *cfg = bmc_env_config(env);
    __u32 len = f->payload_len, verdict, reply_len, hdr_len;
    int single, plain = f->answerable != 0;

    BMC_OPAQUE(len);
    if (len > BMC_MAX_PAYLOAD || len < BMC_FRAME_HDR_LEN) {
        bmc_env_stat(env, BMC_STAT_PASS_MALFORMED);
        return BMC_RX_PASS;
    }
    if (bmc_io_load(io, f->payload_off, sc->in, len))
        return BMC_RX_PASS;
    if (BMC_STAGE_DONE(BMC_STAGE_LOADED))
        return BMC_RX_TX;
    single = bmc_frame_single(sc->in);
    bmc_rx_begin(rx, BMC_FRAME_HDR_LEN, len, single && plain && allowed, now);
    if (!(rx->st.get_line && !cfg->general_only && bmc_rx_fast_get(env, sc, rx)) &&
        sc->in[BMC_FRAME_HDR_LEN] != BMC_BIN_MAGIC_REQ)
        bmc_io_scan(io, sc, rx);
    if (BMC_STAGE_DONE(BMC_STAGE_FOUND))
        return BMC_RX_TX;

    verdict = bmc_rx_udp_verdict(rx, single, plain, allowed, cfg->max_amp);
    if (verdict == BMC_STAT_PASS_NOT_GET)
        return BMC_RX_PASS;
    bmc_env_stat(env, BMC_STAT_GET_REQS);
    if (verdict == BMC_STAT_HIT_REQS)
        verdict = bmc_drive_deliverable(env, io, sc, f, len, now) ?: verdict;
    if (BMC_STAGE_DONE(BMC_STAGE_CHECKED))
        return BMC_RX_TX;
#ifndef BMC_NO_TRACE
    rx->client_port = (__u16)bmc_h16(sc, f->l4_off);  /* for the trace, before the reply turns the headers */
#endif
    if (verdict == BMC_STAT_HIT_REQS) {
        reply_len = bmc_rx_build_reply(sc, rx);
        hdr_len = bmc_reply_headers(sc, f, reply_len);
        BMC_OPAQUE(hdr_len);
        if (BMC_STAGE_DONE(BMC_STAGE_BUILT))
            return BMC_RX_TX;
        if (hdr_len < BMC_REPLY_HDR_MIN || hdr_len > BMC_REPLY_HDR_MAX || reply_len > BMC_MAX_PAYLOAD ||
            bmc_io_reply(io, sc, hdr_len, reply_len))
            verdict = BMC_STAT_PASS_NO_ROOM;
    }
    bmc_env_stat(env, verdict);
    if (bmc_trace_sampled(env, sc))
        bmc_trace_get(env, sc, rx, f, verdict);
    return verdict == BMC_STAT_HIT_REQS ? BMC_RX_TX : BMC_RX_PASS;
}

/* A frame leaving the server, parsed into f: a single-datagram UDP reply from memcached
 * offers its VALUE items as fills. */
BMC_INLINE void bmc_drive_tx(struct bmc_tx_io *io, struct bmc_scratch *sc, struct bmc_tx *tx,
                             const struct bmc_frame *f)
{
    __u32 len = f->payload_len;

    if (f->proto != BMC_IPPROTO_UDP || !f->from_server || !f->complete)
        return;
    BMC_OPAQUE(len);
    if (len < BMC_FRAME_HDR_LEN || len > BMC_MAX_PAYLOAD)
        return;
    if (bmc_tx_io_load(io, f->payload_off, sc->in, len) || !bmc_frame_single(sc->in))
        return;
    bmc_scan_init(&tx->st, BMC_FRAME_HDR_LEN, 0);
    tx->now = bmc_tx_io_now(io);
    tx->end = len;
    tx->pad = 0;
    bmc_tx_io_scan(io, sc, tx);
}

#endif /* BMC_DRIVER_H */
