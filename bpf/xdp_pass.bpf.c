// SPDX-License-Identifier: GPL-2.0
/* Attached to the client end of a veth testbed: frames sent back with XDP_TX on a veth
 * are delivered only if the peer runs an XDP program. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
