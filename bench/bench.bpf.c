// SPDX-License-Identifier: GPL-2.0
/* Benchmark datapath pieces (not part of the cache):
 *   bench_client  on the client's interface: run with BPF_PROG_RUN and live frames (and
 *                 4 bytes of metadata) it is the request generator; on frames arriving from the server it is the sink
 *                 that checks every reply and measures its round trip. One program does
 *                 both, so that being attached keeps it in the XDP dispatcher: a program
 *                 that is not attached anywhere is added to and removed from the
 *                 dispatcher by every BPF_PROG_RUN call (two synchronize_rcu, ~20 ms).
 *   bench_echo    the floor: bounces each request back with XDP_TX, no cache work */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "bench_packet.h"
#include "bench_shared.h"

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct bench_template);
} gen_tmpl SEC(".maps");

/* Key names in the order they are requested (a Zipf or uniform sample drawn by the tool). */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, BENCH_IDS);
    __type(key, __u32);
    __type(value, struct bench_key);
} gen_keys SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, BENCH_SLOTS);
    __type(key, __u32);
    __type(value, struct bench_request);
} requests SEC(".maps");

/* The sum of the item hashes of the exact reply to each request id. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, BENCH_IDS);
    __type(key, __u32);
    __type(value, __u64);
} expected SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct bench_counters);
} bench_count SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct bench_pace);
} pace SEC(".maps");

/* Round trips of correct answers, ns, bench_hist_bucket() buckets. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, BENCH_HIST_BUCKETS);
    __type(key, __u32);
    __type(value, __u64);
} latency SEC(".maps");

/* Set before load. The reply layout is fixed by the workload: every item of a reply is
 * item_len bytes ("VALUE <key> <flags> <bytes>\r\n<data>\r\n"), width items per request,
 * then "END\r\n"; in echo mode the one item is the request's payload and there is no END. */
const volatile __u16 bench_port = 11211;
const volatile __u16 gen_port = 40000;
const volatile __u32 server_ip = 0; /* network order */
const volatile __u32 client_ip = 0;
const volatile __u32 gen_threads = 1;
const volatile __u32 item_len = 8;
const volatile __u32 item_words = 1; /* bench_words_per_item(item_len) */
const volatile __u32 max_items = 1;  /* BENCH_MAX_PAYLOAD / item_len */
const volatile __u32 width = 1;
const volatile __u8 expect_echo = 0;

static __always_inline struct bench_counters *counters(void)
{
    __u32 zero = 0;
    return bpf_map_lookup_elem(&bench_count, &zero);
}

/* Live frames are recycled without being reset, and the cache rewrites them into
 * replies: rebuild the whole request every time. */
static __always_inline int generate(struct xdp_md *ctx, struct bench_counters *c)
{
    __u32 zero = 0, i, slot, len, key_len, id, seq, state;
    struct bench_template *t = bpf_map_lookup_elem(&gen_tmpl, &zero);
    struct bench_pace *pc = bpf_map_lookup_elem(&pace, &zero);
    struct bench_request *r;
    struct bench_key *k;
    __u16 wire_id, sport;

    if (!t || !pc)
        return XDP_ABORTED;
    if (pc->period) {
        /* Open loop: requests are due at fixed times whatever the replies; a run before
         * its time sends nothing. Live frames are flushed every batch, so a request waits
         * at most a batch of such runs (about 50 ns each) before it leaves. */
        __u64 now = bpf_ktime_get_ns() * 16;
        if (!pc->next || now > pc->next + 16000000) {
            pc->lagged += pc->next != 0;
            pc->next = now;
        }
        if (now < pc->next)
            return XDP_DROP;
        pc->next += pc->period;
    }
    /* Each generator thread runs on its own CPU (0 .. gen_threads - 1): the ids it uses
     * are its CPU's residue class, so no two threads share one. */
    seq = (__u32)(c->generated++ * gen_threads + bpf_get_smp_processor_id());
    id = seq & (BENCH_IDS - 1);
    state = seq & (BENCH_SLOTS - 1);
    len = t->len;
    key_len = t->key_len;
    if (len < ETH_HLEN || len >= BENCH_MAX_FRAME || key_len == 0 || key_len >= BENCH_KEY_MAX)
        return XDP_ABORTED;
    if (bpf_xdp_store_bytes(ctx, 0, t->bytes, len))
        return XDP_ABORTED;
    wire_id = bpf_htons((__u16)id);
    bpf_xdp_store_bytes(ctx, t->id_off & (BENCH_MAX_FRAME - 1), &wire_id, sizeof(wire_id));
    /* The UDP checksum is 0 (none, valid over IPv4), so the port changes alone. */
    sport = bpf_htons((__u16)(gen_port + (state >> 16)));
    bpf_xdp_store_bytes(ctx, (t->id_off - 8) & (BENCH_MAX_FRAME - 1), &sport, sizeof(sport));
    for (i = 0; i < BENCH_MAX_WIDTH; i++) {
        if (i >= t->width)
            break;
        slot = (id * t->width + i) & (BENCH_IDS - 1);
        k = bpf_map_lookup_elem(&gen_keys, &slot);
        if (!k)
            return XDP_ABORTED;
        if (bpf_xdp_store_bytes(ctx, t->key_off[i] & (BENCH_MAX_FRAME - 1), k->name, key_len))
            return XDP_ABORTED;
    }
    r = bpf_map_lookup_elem(&requests, &state);
    if (!r)
        return XDP_ABORTED;
    r->sum = 0;
    r->items = 0;
    r->outstanding = 1;
    r->sent_ns = bpf_ktime_get_ns();
    return XDP_TX;
}

/* A datagram from the server to the generator's port: hash its items, and when the last
 * one has come, judge the reply against the exact one expected for its id. */
static __always_inline int absorb(struct xdp_md *ctx, struct bench_counters *c, struct iphdr *ip,
                                  struct udphdr *udp)
{
    void *end = (void *)(long)ctx->data_end;
    __u8 *hdr = (void *)(udp + 1), *payload = hdr + 8;
    __u32 id, state, plen, body, n, item, k, base, total_items, one = 1;
    __u64 sum = 0, h = 0, total, *want, *slot;
    struct bench_request *r;
    int last;

    c->datagrams++;
    if ((void *)payload > end || ip->saddr != server_ip || ip->daddr != client_ip || hdr[2] || hdr[3] ||
        hdr[4] || hdr[5] != 1 || hdr[6] || hdr[7]) {
        c->bad_header++;
        return XDP_DROP;
    }
    plen = (__u32)(end - (void *)payload);
    if (plen > BENCH_MAX_PAYLOAD || bpf_ntohs(udp->len) != plen + 16) {
        c->bad_header++;
        return XDP_DROP;
    }
    id = (__u32)hdr[0] << 8 | hdr[1];
    state = bench_slot(bpf_ntohs(udp->dest) - gen_port, id);
    r = bpf_map_lookup_elem(&requests, &state);
    if (!r || !r->outstanding) {
        c->unexpected++;
        return XDP_DROP;
    }
    last = expect_echo;
    body = plen;
    if (!expect_echo && plen >= 5 && payload + 5 <= (__u8 *)end) {
        __u32 off = plen - 5;
        __u8 *e;
        /* The mask gives the verifier a bound it keeps; the barrier stops clang dropping it. */
        asm volatile("" : "+r"(off));
        e = payload + (off & 0x7ff);
        if (e + 5 <= (__u8 *)end && e[0] == 'E' && e[1] == 'N' && e[2] == 'D' && e[3] == '\r' && e[4] == '\n') {
            last = 1;
            body = plen - 5;
        }
    }
    n = body / item_len;
    if (n * item_len != body)
        n = 0, last = 1, body = ~0u; /* not a sequence of items: judged wrong below */
    base = __sync_fetch_and_add(&r->items, n);
    /* item_len, item_words and max_items are constants to the verifier (it does not divide),
     * so every offset below is known and each word is explored once. */
    for (item = 0; item < max_items; item++) {
        __u8 *it = payload + item * item_len;
        if (item >= n || it + item_len > (__u8 *)end)
            break;
        h = bench_item_seed(base + item);
        for (k = 0; k < item_words; k++)
            h = bench_mix(h, *(__u64 *)(it + bench_word_offset(k, item_len)));
        sum += bench_item_final(h, item_len);
    }
    total = __sync_fetch_and_add(&r->sum, sum) + sum;
    if (!last)
        return XDP_DROP;
    /* Exactly one datagram ends a request: the one whose exchange finds it outstanding. */
    if (__sync_lock_test_and_set(&r->outstanding, 0) == 0) {
        c->unexpected++;
        return XDP_DROP;
    }
    total_items = base + n;
    want = bpf_map_lookup_elem(&expected, &id);
    if (body != ~0u && total_items == width && want && total == *want) {
        __u64 rtt = bpf_ktime_get_ns() - r->sent_ns;
        __u32 b = bench_hist_bucket(rtt);
        c->answered++;
        slot = bpf_map_lookup_elem(&latency, &b);
        if (slot)
            *slot += one;
    } else if (body == 0 && total_items == 0) {
        c->missed++;
    } else if (body != ~0u && total_items < width) {
        c->incomplete++;
    } else {
        c->wrong++;
    }
    return XDP_DROP;
}

SEC("xdp")
int bench_client(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = data + sizeof(*eth);
    struct udphdr *udp = (void *)(ip + 1);
    struct bench_counters *c;

    if ((void *)(udp + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 ||
        ip->protocol != IPPROTO_UDP)
        return XDP_PASS;
    c = counters();
    if (!c)
        return XDP_PASS;
    /* A generator run (BPF_PROG_RUN) carries 4 bytes of metadata; frames from a device
     * carry none. The frame's bytes cannot tell: live frames are recycled unreset, and a
     * recycled one may hold a reply. */
    if ((void *)(long)ctx->data_meta < data) {
        /* Sent frames keep their metadata through XDP_TX on a veth: drop it, or replies
         * would come back looking like generator runs. */
        if (bpf_xdp_adjust_meta(ctx, 4))
            return XDP_ABORTED;
        return generate(ctx, c);
    }
    if (udp->source == bpf_htons(bench_port) && (__u16)(bpf_ntohs(udp->dest) - gen_port) < BENCH_PORTS)
        return absorb(ctx, c, ip, udp);
    return XDP_PASS;
}

/* The teaching guide's lab 5: extra work per echoed packet, in iterations of a trivial
 * bpf_loop callback (bmc-floor --work); 0 in the benchmark's floor. */
const volatile __u32 bench_echo_work = 0;

static long echo_work_cb(__u32 i, void *acc)
{
    *(__u64 *)acc = *(__u64 *)acc * 31 + i;
    return 0;
}

SEC("xdp")
int bench_echo(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = data + sizeof(*eth);
    struct udphdr *udp = (void *)(ip + 1);
    struct bench_counters *c;

    if ((void *)(udp + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 ||
        ip->protocol != IPPROTO_UDP || udp->dest != bpf_htons(bench_port))
        return XDP_PASS;
    if (bench_echo_work) {
        __u64 acc = 0;

        bpf_loop(bench_echo_work, echo_work_cb, &acc, 0);
        asm volatile("" : : "r"(acc));
    }
    bench_turn(eth, ip, udp);
    c = counters();
    if (c)
        c->echoed++;
    return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
