// SPDX-License-Identifier: GPL-2.0
/* A lossy link for the end-to-end tests (netem is not built into every kernel): on the
 * server's ingress, drops LOSS_PCT percent of the TCP segments that carry data to port
 * 11211. Untagged IPv4 only, as the testbed sends them. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#define LOSS_PCT 2

SEC("tc")
int lossy(struct __sk_buff *skb)
{
    __u8 h[54];
    __u32 ihl, doff, tot;

    if (bpf_skb_load_bytes(skb, 0, h, sizeof(h)) || h[12] != 0x08 || h[13] != 0 || h[23] != 6)
        return TC_ACT_OK;
    ihl = (h[14] & 0xf) * 4;
    if (ihl != 20)
        return TC_ACT_OK;
    tot = (__u32)h[16] << 8 | h[17];
    doff = (h[46] >> 4) * 4;
    if (((__u32)h[36] << 8 | h[37]) != 11211 || tot <= ihl + doff)
        return TC_ACT_OK;
    return bpf_get_prandom_u32() % 100 < LOSS_PCT ? TC_ACT_SHOT : TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
