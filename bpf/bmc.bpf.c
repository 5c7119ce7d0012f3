// SPDX-License-Identifier: GPL-2.0
/* bmc kernel datapath: XDP ingress answers cached gets and invalidates on writes, TC
 * egress fills from memcached's replies. The grammar, cache layout and cache rules come
 * from core/ through the generated bmc_gen.h; this file only parses headers, drives the
 * shared code over the payload and rewrites packets. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Environment for the shared code. Ordering: see core/bmc_cache.h (x86-64 TSO). */
#define BMC_READ_ONCE(x) (*(volatile __typeof__(x) *)&(x))
#define BMC_WRITE_ONCE(x, v) (*(volatile __typeof__(x) *)&(x) = (v))
#define BMC_SMP_RMB() asm volatile("" ::: "memory")
#define BMC_SMP_WMB() asm volatile("" ::: "memory")
/* The source of every copy is a map value the caller already validated; the helper
 * copies a variable length in one call where a byte loop would cost verifier states. */
#define BMC_COPY(dst, src, len) bpf_probe_read_kernel((dst), (len), (src))

#define BMC_SUBPROG __attribute__((noinline))
/* Hides a value's range from clang, so that the masks the verifier needs are emitted. */
#define BMC_OPAQUE(x) asm volatile("" : "+r"(x))
#include "bmc_gen.h"


struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __uint(max_entries, BMC_DEFAULT_SMALL_BUCKETS);
    __type(key, __u32);
    __type(value, struct bmc_small_bucket);
} bmc_small SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __uint(max_entries, BMC_DEFAULT_LARGE_BUCKETS);
    __type(key, __u32);
    __type(value, struct bmc_large_bucket);
} bmc_large SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct bmc_global);
} bmc_global_state SEC(".maps");

/* Clients the cache may answer; everyone else is left to memcached. */
struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(max_entries, BMC_MAX_ALLOW);
    __type(key, struct bmc_allow_key);
    __type(value, __u8);
} bmc_allow SEC(".maps");

/* AF_XDP mode: the socket of each RX queue. */
struct {
    __uint(type, BPF_MAP_TYPE_XSKMAP);
    __uint(max_entries, BMC_MAX_QUEUES);
    __type(key, __u32);
    __type(value, __u32);
} bmc_xsks SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, BMC_NUM_STATS);
    __type(key, __u32);
    __type(value, __u64);
} bmc_stats SEC(".maps");



const volatile struct bmc_config bmc_cfg = {
    .port = BMC_DEFAULT_PORT,
    .small_mask = BMC_DEFAULT_SMALL_BUCKETS - 1,
    .large_mask = BMC_DEFAULT_LARGE_BUCKETS - 1,
    .max_amp = BMC_DEFAULT_MAX_AMP,
    .max_age_ns = 10ULL * 1000000000ULL,
    .fill_guard_ns = 10ULL * 1000000ULL,
};

/* The kernel datapath has no per-call environment: its maps are globals. */
struct bmc_env {
    int unused;
};

static __always_inline struct bmc_small_bucket *bmc_env_small(struct bmc_env *env, __u32 idx)
{
    return bpf_map_lookup_elem(&bmc_small, &idx);
}

static __always_inline struct bmc_large_bucket *bmc_env_large(struct bmc_env *env, __u32 idx)
{
    return bpf_map_lookup_elem(&bmc_large, &idx);
}

static __always_inline struct bmc_global *bmc_env_global(struct bmc_env *env)
{
    __u32 zero = 0;
    return bpf_map_lookup_elem(&bmc_global_state, &zero);
}

/* The shared code reads the configuration through a plain pointer. Laundering it through
 * asm keeps clang from folding those reads into the initializer above: the values are
 * the ones the loader wrote into .rodata before load. */
static __always_inline const struct bmc_config *bmc_env_config(struct bmc_env *env)
{
    const struct bmc_config *cfg = (const struct bmc_config *)&bmc_cfg;

    asm volatile("" : "+r"(cfg));
    return cfg;
}

static __always_inline void bmc_env_stat(struct bmc_env *env, __u32 stat)
{
    __u64 *v;

    /* Reading env keeps clang from dropping it from global subprograms' calls, which
     * the verifier would reject. */
    if (!env)
        return;
    v = bpf_map_lookup_elem(&bmc_stats, &stat);
    if (v)
        *v += 1;
}

#include "bmc_gen_datapath.h"

/* Per-CPU working memory. The scan state lives here rather than on the stack: values
 * loaded from a map are unknown to the verifier, so each bpf_loop callback verifies once
 * instead of once per distinct parser state. */
struct bmc_percpu {
    struct bmc_scratch sc;
    struct bmc_rx rx;
    struct bmc_tx tx;
    struct bmc_frame frame;
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct bmc_percpu);
} bmc_scratch_map SEC(".maps");

static __always_inline struct bmc_percpu *percpu(void)
{
    __u32 zero = 0;
    return bpf_map_lookup_elem(&bmc_scratch_map, &zero);
}

/* Hide what clang knows about a length so that the bounds checks that follow are
 * emitted on the very register the helper receives (clang 19 otherwise folds them into
 * earlier compares the verifier cannot connect). */
static __always_inline __u32 opaque(__u32 v)
{
    asm volatile("" : "+r"(v));
    return v;
}

/* A callback must visibly return 0 or 1. Global subprograms' results are unknown to the
 * verifier, and clang drops a plain mask it can prove redundant, so mask in asm. */
static __always_inline long loop_result(long r)
{
    asm volatile("%0 &= 1" : "+r"(r));
    return r;
}

/* bpf_loop callbacks: verified once, whatever the payload length. */
static long rx_text_cb(__u32 i, void *unused)
{
    struct bmc_percpu *p = percpu();
    struct bmc_env env = {};
    return p ? loop_result(bmc_rx_byte(&env, &p->sc, &p->rx)) : 1;
}

static long rx_binary_cb(__u32 i, void *unused)
{
    struct bmc_percpu *p = percpu();
    struct bmc_env env = {};
    return p ? loop_result(bmc_rx_binary_cmd(&env, &p->sc, &p->rx)) : 1;
}

static long tx_text_cb(__u32 i, void *unused)
{
    struct bmc_percpu *p = percpu();
    struct bmc_env env = {};
    return p ? loop_result(bmc_tx_byte(&env, &p->sc, &p->tx)) : 1;
}

/* Scan a payload already in scratch->in from `start`; binary if it starts with the
 * binary magic. */
static __always_inline void rx_scan(struct bmc_percpu *p, __u32 start, __u32 len, int get_allowed)
{
    struct bmc_env env = {};
    struct bmc_rx *rx = &p->rx;

    bmc_scan_init(&rx->st, start, get_allowed);
    rx->now = bpf_ktime_get_ns();
    rx->end = len;
    rx->out_len = BMC_FRAME_HDR_LEN;
    rx->hits = rx->misses = 0;
    rx->get_done = rx->trailing = rx->too_big = rx->pad = 0;
    if (p->sc.in[start & BMC_SCRATCH_MASK] == BMC_BIN_MAGIC_REQ) {
        bpf_loop(BMC_MAX_SCAN_CMDS, rx_binary_cb, NULL, 0);
        return;
    }
    bpf_loop(BMC_MAX_PAYLOAD, rx_text_cb, NULL, 0);
    bmc_rx_finish(&env, rx);
}


/* Turn the request into the reply: headers rewritten in scratch->hdr by the shared
 * code, payload built in scratch->out. The frame grows at the tail where the driver
 * left room, else at the head: veth frames made from socket buffers have little
 * tailroom but always XDP_PACKET_HEADROOM in front. */
static __always_inline int rx_reply(struct xdp_md *ctx, struct bmc_percpu *p, __u32 payload_len)
{
    __u32 hdr_len;
    int delta;

    if (payload_len > BMC_MAX_PAYLOAD || payload_len < BMC_FRAME_HDR_LEN)
        return -1;
    hdr_len = opaque(bmc_reply_headers(&p->sc, &p->frame, payload_len));
    if (hdr_len < BMC_ETH_HLEN + 28 || hdr_len > 128)
        return -1;
    delta = (int)(hdr_len + payload_len) - (int)bpf_xdp_get_buff_len(ctx);
    if (bpf_xdp_adjust_tail(ctx, delta) && (delta < 0 || bpf_xdp_adjust_head(ctx, -delta)))
        return -1;
    if (bpf_xdp_store_bytes(ctx, 0, p->sc.hdr, hdr_len))
        return -1;
    return bpf_xdp_store_bytes(ctx, hdr_len, p->sc.out, payload_len) ? -1 : 0;
}

static __always_inline int rx_udp(struct xdp_md *ctx, struct bmc_percpu *p, __u32 payload_off,
                                  __u32 payload_len, int plain_ip, int allowed)
{
    struct bmc_env env = {};
    __u32 verdict, reply_len;
    int single;

    payload_len = opaque(payload_len);
    if (payload_len > BMC_MAX_PAYLOAD || payload_len < BMC_FRAME_HDR_LEN) {
        bmc_env_stat(&env, BMC_STAT_PASS_MALFORMED);
        return XDP_PASS;
    }
    if (bpf_xdp_load_bytes(ctx, payload_off, p->sc.in, payload_len))
        return XDP_PASS;
    single = bmc_frame_single(p->sc.in);
    rx_scan(p, BMC_FRAME_HDR_LEN, payload_len, single && plain_ip && allowed);

    verdict = bmc_rx_udp_verdict(&p->rx, single, plain_ip, allowed, bmc_env_config(&env)->max_amp);
    if (verdict == BMC_STAT_PASS_NOT_GET)
        return XDP_PASS;
    bmc_env_stat(&env, BMC_STAT_GET_REQS);
    if (verdict != BMC_STAT_HIT_REQS) {
        bmc_env_stat(&env, verdict);
        return XDP_PASS;
    }
    reply_len = bmc_rx_build_reply(&p->sc, &p->rx);
    if (rx_reply(ctx, p, reply_len)) {
        bmc_env_stat(&env, BMC_STAT_PASS_NO_ROOM);
        return XDP_PASS;
    }
    bmc_env_stat(&env, BMC_STAT_HIT_REQS);
    return XDP_TX;
}

static __always_inline void rx_tcp(struct xdp_md *ctx, struct bmc_percpu *p, __u32 payload_off,
                                   __u32 payload_len)
{
    struct bmc_env env = {};

    payload_len = opaque(payload_len);    if (payload_len == 0)
        return;
    if (payload_len > BMC_MAX_PAYLOAD) {
        /* Larger than any segment at a 1500-byte MTU: its commands cannot be scanned. */
        bmc_rx_flush(&env, BMC_STAT_INVAL_GLOBAL, bpf_ktime_get_ns());
        return;
    }
    if (bpf_xdp_load_bytes(ctx, payload_off, p->sc.in, payload_len))
        return;
    rx_scan(p, 0, payload_len, 0);
}

/* Copies the frame's first bytes into scratch and finds its L4 payload there. */
static __always_inline struct bmc_frame *parse(struct bmc_percpu *p, __u32 pkt_len, long loaded)
{
    if (loaded)
        return NULL;
    bmc_parse_frame(&p->sc, pkt_len, pkt_len > BMC_HDR_MAX ? BMC_HDR_MAX : pkt_len, bmc_cfg.port,
                    &p->frame);
    return &p->frame;
}

static __always_inline __u32 header_len(__u32 pkt_len)
{
    return opaque(pkt_len > BMC_HDR_MAX ? BMC_HDR_MAX : pkt_len);
}

static __always_inline int client_allowed(const struct bmc_frame *f)
{
    struct bmc_allow_key key = {.prefixlen = 128};

    __builtin_memcpy(key.addr, f->src, sizeof(key.addr));
    return bpf_map_lookup_elem(&bmc_allow, &key) != NULL;
}

/* In AF_XDP mode a plain single-datagram get goes to the AF_XDP socket of its queue,
 * which answers it from the same cache; with no socket there it passes to the stack. */
static __always_inline int afxdp_get(struct xdp_md *ctx, struct bmc_frame *f)
{
    struct bmc_global *g = bmc_env_global(NULL);
    __u8 head[BMC_FRAME_HDR_LEN + 5];

    if (!g || BMC_READ_ONCE(g->mode) != BMC_MODE_AFXDP || !f->plain || f->malformed ||
        !client_allowed(f))
        return 0;
    if (bpf_xdp_load_bytes(ctx, f->payload_off, head, sizeof(head)) || !bmc_frame_single(head))
        return 0;
    return head[8] == 'g' && head[9] == 'e' && head[10] == 't' &&
           (head[11] == ' ' || (head[11] == 's' && head[12] == ' '));
}

SEC("xdp")
int bmc_rx(struct xdp_md *ctx)
{
    struct bmc_env env = {};
    struct bmc_percpu *p = percpu();
    __u32 pkt_len = bpf_xdp_get_buff_len(ctx), hlen = header_len(pkt_len);
    struct bmc_frame *f;

    if (!p || hlen < BMC_ETH_HLEN || hlen > BMC_HDR_MAX)
        return XDP_PASS;
    f = parse(p, pkt_len, bpf_xdp_load_bytes(ctx, 0, p->sc.hdr, hlen));
    if (!f || !f->to_server)
        return XDP_PASS;
    if (f->proto == BMC_IPPROTO_UDP) {
        if (afxdp_get(ctx, f)) {
            bmc_env_stat(&env, BMC_STAT_REDIRECT);
            return bpf_redirect_map(&bmc_xsks, ctx->rx_queue_index, XDP_PASS);
        }
        if (f->malformed) {
            bmc_env_stat(&env, BMC_STAT_PASS_MALFORMED);
            return XDP_PASS;
        }
        return rx_udp(ctx, p, f->payload_off, f->payload_len, f->answerable, client_allowed(f));
    }
    if (f->proto == BMC_IPPROTO_TCP)
        rx_tcp(ctx, p, f->payload_off, f->payload_len);
    return XDP_PASS;
}

SEC("tc")
int bmc_tx(struct __sk_buff *skb)
{
    struct bmc_percpu *p = percpu();
    __u32 pkt_len = skb->len, hlen = header_len(pkt_len), payload_len;
    struct bmc_frame *f;

    if (!p || hlen < BMC_ETH_HLEN || hlen > BMC_HDR_MAX)
        return TC_ACT_OK;
    f = parse(p, pkt_len, bpf_skb_load_bytes(skb, 0, p->sc.hdr, hlen));
    if (!f || f->proto != BMC_IPPROTO_UDP || !f->from_server || !f->complete)
        return TC_ACT_OK;
    payload_len = opaque(f->payload_len);
    if (payload_len < BMC_FRAME_HDR_LEN || payload_len > BMC_MAX_PAYLOAD)
        return TC_ACT_OK;
    if (bpf_skb_load_bytes(skb, f->payload_off, p->sc.in, payload_len) || !bmc_frame_single(p->sc.in))
        return TC_ACT_OK;
    bmc_scan_init(&p->tx.st, BMC_FRAME_HDR_LEN, 0);
    p->tx.now = bpf_ktime_get_ns();
    p->tx.end = payload_len;
    p->tx.pad = 0;
    bpf_loop(BMC_MAX_PAYLOAD, tx_text_cb, NULL, 0);
    return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
