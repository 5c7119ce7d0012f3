// SPDX-License-Identifier: GPL-2.0
/* Benchmark datapath pieces (not part of the cache):
 *   bench_gen   in-kernel request generator, run with BPF_PROG_RUN and live frames
 *   bench_sink  absorbs replies on the client end and counts them
 *   bench_echo  the floor: bounces each request back with XDP_TX, no cache work */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define GEN_MAX_FRAME 1024
#define GEN_MAX_WIDTH 32
#define GEN_KEY_MAX 32
#define GEN_SEQ 65536

struct gen_template {
    __u8 bytes[GEN_MAX_FRAME];
    __u32 len;
    __u32 width;
    __u32 key_len;
    __u32 id_off;                 /* offset of the memcached request id */
    __u32 key_off[GEN_MAX_WIDTH]; /* offsets of the keys in the frame */
};

struct gen_key {
    __u8 name[GEN_KEY_MAX];
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct gen_template);
} gen_tmpl SEC(".maps");

/* Key names in the order they are requested (a Zipf or uniform sample drawn by the tool). */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, GEN_SEQ);
    __type(key, __u32);
    __type(value, struct gen_key);
} gen_keys SEC(".maps");

/* [0] frames generated or echoed, [1] reply datagrams absorbed, [2] of those, the ones
 * that end a reply ("END\r\n"): requests answered */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 3);
    __type(key, __u32);
    __type(value, __u64);
} bench_count SEC(".maps");

const volatile __u16 bench_port = 11211;

static __always_inline __u64 bump(__u32 which)
{
    __u64 *v = bpf_map_lookup_elem(&bench_count, &which);
    if (!v)
        return 0;
    return (*v)++;
}

/* Live frames are recycled without being reset, and the cache rewrites them into
 * replies: rebuild the whole request every time. */
SEC("xdp")
int bench_gen(struct xdp_md *ctx)
{
    __u32 zero = 0, i, slot, len, key_len;
    struct gen_template *t = bpf_map_lookup_elem(&gen_tmpl, &zero);
    struct gen_key *k;
    __u64 n = bump(0);
    __u16 id;

    if (!t)
        return XDP_ABORTED;
    len = t->len;
    key_len = t->key_len;
    if (len < ETH_HLEN || len >= GEN_MAX_FRAME || key_len == 0 || key_len >= GEN_KEY_MAX)
        return XDP_ABORTED;
    if (bpf_xdp_store_bytes(ctx, 0, t->bytes, len))
        return XDP_ABORTED;
    id = bpf_htons((__u16)n);
    bpf_xdp_store_bytes(ctx, t->id_off & (GEN_MAX_FRAME - 1), &id, sizeof(id));
    for (i = 0; i < GEN_MAX_WIDTH; i++) {
        if (i >= t->width)
            break;
        slot = (__u32)(n * t->width + i) & (GEN_SEQ - 1);
        k = bpf_map_lookup_elem(&gen_keys, &slot);
        if (!k)
            return XDP_ABORTED;
        if (bpf_xdp_store_bytes(ctx, t->key_off[i] & (GEN_MAX_FRAME - 1), k->name, key_len))
            return XDP_ABORTED;
    }
    return XDP_TX;
}

SEC("xdp")
int bench_sink(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = data + sizeof(*eth);
    struct udphdr *udp = (void *)(ip + 1);

    if ((void *)(udp + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 ||
        ip->protocol != IPPROTO_UDP || udp->source != bpf_htons(bench_port))
        return XDP_PASS;
    bump(1);
    __u8 tail[5];
    __u32 len = bpf_xdp_get_buff_len(ctx);
    if (len >= sizeof(*eth) + sizeof(*ip) + sizeof(*udp) + sizeof(tail) &&
        !bpf_xdp_load_bytes(ctx, len - sizeof(tail), tail, sizeof(tail)) && tail[0] == 'E' &&
        tail[1] == 'N' && tail[2] == 'D' && tail[3] == '\r' && tail[4] == '\n')
        bump(2);
    return XDP_DROP;
}

SEC("xdp")
int bench_echo(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = data + sizeof(*eth);
    struct udphdr *udp = (void *)(ip + 1);
    unsigned char mac[ETH_ALEN];
    __u32 addr;
    __u16 port;

    if ((void *)(udp + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 ||
        ip->protocol != IPPROTO_UDP || udp->dest != bpf_htons(bench_port))
        return XDP_PASS;
    __builtin_memcpy(mac, eth->h_source, ETH_ALEN);
    __builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
    __builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
    addr = ip->saddr;
    ip->saddr = ip->daddr;
    ip->daddr = addr;
    port = udp->source;
    udp->source = udp->dest;
    udp->dest = port;
    udp->check = 0;
    bump(0);
    return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
