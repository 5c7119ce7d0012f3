// SPDX-License-Identifier: GPL-2.0
/* The floor of a cached get (bmc-hitcost's "floor: ideal hit"): about the least any XDP
 * program must do to answer `get <key>\r\n` from bmc's cache, to set beside bmc_rx's cost
 * per hit. It runs on bmcd's own cache maps (bmc-hitcost hands it their descriptors) with
 * the core's layout, lookup and seqlock (bmc_find, bmc_seq_retry), so the table, the
 * entry and the item are the full program's. What it does: an untagged IPv4 frame without
 * options read in place, the key hashed and compared, the bucket searched under the
 * cache's rules (generation, epoch, age by a clock read once per tick), the item copied
 * into the frame grown at its tail, addresses and ports swapped, the IPv4 checksum
 * recomputed, the UDP checksum zero, the answer counted (as the echo floor counts). What
 * it leaves out, which bmc_rx does: the stack delivery checks and the socket memo, the
 * allowlist, its other counters, the trace, other shapes
 * (VLAN, options, IPv6, multi-get, large items), leases on a miss, and the scratch copies
 * that let one parser serve every shape. Benchmark only: never attached by bmc. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "../bpf/bmc_bpf_env.h"  /* the cache's maps are bmcd's, reused by descriptor */
#include "bench_packet.h"

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct bmc_coarse_clock);
} ideal_clock SEC(".maps");

/* Answers sent (XDP_TX), for bmc-floor's stats. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} ideal_answered SEC(".maps");

/* bmcd's configuration, copied in before load. */
const volatile struct bmc_config ideal_cfg = {.port = BMC_DEFAULT_PORT};

#define IDEAL_PAYLOAD (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr))
#define IDEAL_KEY (IDEAL_PAYLOAD + BMC_FRAME_HDR_LEN + 4)  /* after "get " */

/* The item and "END\r\n" into the frame at the reply's payload (after memcached's frame
 * header), 8 bytes at a time, the last word ending exactly at the reply's end. */
static __always_inline int put_reply(struct xdp_md *ctx, const __u8 *item, __u32 item_len)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    __u8 *dst = (__u8 *)data + IDEAL_PAYLOAD + BMC_FRAME_HDR_LEN, *p;
    __u32 i, last;

    for (i = 0; i < BMC_SMALL_DATA; i += 8) {
        if (i + 8 > item_len)
            break;
        p = dst + i;
        asm volatile("" : "+r"(p));
        if ((void *)(p + 8) > end)
            return -1;
        *(__u64 *)p = *(const __u64 *)(item + i);
    }
    last = item_len - 8;
    asm volatile("" : "+r"(last));
    if (last > BMC_SMALL_DATA - 8)
        return -1;
    p = dst + last;
    asm volatile("" : "+r"(p));
    if ((void *)(p + 8 + 5) > end)
        return -1;
    *(__u64 *)p = *(const __u64 *)(item + last);
    p[8] = 'E', p[9] = 'N', p[10] = 'D', p[11] = '\r', p[12] = '\n';
    return 0;
}

SEC("xdp")
int bench_ideal_hit(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    const struct bmc_config *cfg = (const struct bmc_config *)&ideal_cfg;
    struct ethhdr *eth = data;
    struct iphdr *ip = data + sizeof(*eth);
    struct udphdr *udp = (void *)(ip + 1);
    __u8 *req = (void *)(udp + 1), *key = req + BMC_FRAME_HDR_LEN + 4;
    __u32 h = BMC_FNV_OFFSET, key_len, idx, zero = 0, i, item_len, sum = 0;
    struct bmc_small_bucket *sb;
    struct bmc_large_bucket *lb;
    struct bmc_global *g;
    struct bmc_coarse_clock *clk;
    __u64 *answered;
    struct bmc_found f;
    __u16 *w;
    __u8 c;
    int delta;

    asm volatile("" : "+r"(cfg));  /* the loader's values, not the initializer's */
    if ((void *)(key + 3) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 ||
        ip->protocol != IPPROTO_UDP || ip->frag_off & bpf_htons(0x3fff) || udp->dest != bpf_htons(cfg->port))
        return XDP_PASS;
    if (req[2] | req[3] | req[4] | (req[5] ^ 1) | (req[8] ^ 'g') | (req[9] ^ 'e') | (req[10] ^ 't') | (req[11] ^ ' '))
        return XDP_PASS;
    for (i = 0; i < BMC_MAX_KEY_LEN; i++) {
        if ((void *)(key + i + 1) > end)
            return XDP_PASS;
        c = key[i];
        if (c == '\r')
            break;
        if (!bmc_is_key_byte(c))
            return XDP_PASS;
        h = bmc_hash_update(h, c);
    }
    key_len = i;
    /* The longest key whose item fits a small entry: "VALUE <key> 0 0\r\n\r\n". */
    if (key_len == 0 || key_len > BMC_SMALL_DATA - 14 || (void *)(key + key_len + 2) > end ||
        key[key_len + 1] != '\n' || ctx->data_end - ctx->data != IDEAL_KEY + key_len + 2)
        return XDP_PASS;

    clk = bpf_map_lookup_elem(&ideal_clock, &zero);
    g = bpf_map_lookup_elem(&bmc_global_state, &zero);
    idx = bmc_small_index(cfg, h);
    sb = bpf_map_lookup_elem(&bmc_small, &idx);
    idx = bmc_large_index(cfg, h);
    lb = bpf_map_lookup_elem(&bmc_large, &idx);
    if (!clk || !g || !sb || !lb)
        return XDP_PASS;
    if (!bmc_find(sb, lb, g, cfg, h, key_len, bmc_coarse_now(clk) + cfg->clock_margin_ns, &f) || f.large)
        return XDP_PASS;
    item_len = BMC_READ_ONCE(f.e->item_len);
    if (item_len < 6 + key_len + 8 || item_len > BMC_SMALL_DATA)
        return XDP_PASS;
    /* An item starts "VALUE <key> ": its key against the request's, still in the frame. */
    {
        const __u8 *ik = (const __u8 *)(f.e + 1) + 6;

        for (i = 0; i < BMC_SMALL_DATA - 14; i++) {
            if (i >= key_len)
                break;
            if ((void *)(key + i + 1) > end || key[i] != ik[i])
                return XDP_PASS;
        }
    }

    delta = (int)(BMC_FRAME_HDR_LEN + item_len + 5) - (int)(BMC_FRAME_HDR_LEN + 4 + key_len + 2);
    if (bpf_xdp_adjust_tail(ctx, delta))
        return XDP_PASS;
    if (put_reply(ctx, (const __u8 *)(f.e + 1), item_len))
        return XDP_DROP;
    if (bmc_seq_retry(f.e, f.seq))
        return XDP_DROP;  /* the entry changed under the copy: the client asks again */

    data = (void *)(long)ctx->data, end = (void *)(long)ctx->data_end;
    eth = data;
    ip = data + sizeof(*eth);
    udp = (void *)(ip + 1);
    if ((void *)(udp + 1) > end)
        return XDP_DROP;
    bench_turn(eth, ip, udp);
    udp->len = bpf_htons(sizeof(*udp) + BMC_FRAME_HDR_LEN + item_len + 5);
    ip->tot_len = bpf_htons(sizeof(*ip) + sizeof(*udp) + BMC_FRAME_HDR_LEN + item_len + 5);
    ip->ttl = 64;
    ip->check = 0;
    w = (__u16 *)ip;
#pragma unroll
    for (i = 0; i < sizeof(*ip) / 2; i++)
        sum += w[i];
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    ip->check = (__u16)~sum;
    answered = bpf_map_lookup_elem(&ideal_answered, &zero);
    if (answered)
        *answered += 1;
    return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
