/* Packet rewriting shared by the benchmark's XDP programs (bench.bpf.c's echo and
 * bench_ideal.bpf.c's floor of a hit). BPF C. */
#ifndef BMC_BENCH_PACKET_H
#define BMC_BENCH_PACKET_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>

/* Turns a request's Ethernet, IPv4 and UDP headers into its reply's: MACs, addresses and
 * ports swapped, the UDP checksum zero (optional over IPv4; the payload is rewritten).
 * The IPv4 checksum holds: swapping addresses leaves their sum as it was. */
static __always_inline void bench_turn(struct ethhdr *eth, struct iphdr *ip, struct udphdr *udp)
{
    unsigned char mac[ETH_ALEN];
    __u32 addr = ip->saddr;
    __u16 port = udp->source;

    __builtin_memcpy(mac, eth->h_source, ETH_ALEN);
    __builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
    __builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
    ip->saddr = ip->daddr;
    ip->daddr = addr;
    udp->source = udp->dest;
    udp->dest = port;
    udp->check = 0;
}

#endif /* BMC_BENCH_PACKET_H */
