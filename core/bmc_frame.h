/* bmc core: the L2-L4 headers in front of a request or reply, as the cache parses them
 * before the grammar (bmc_grammar.h) reads the payload. One definition compiled as C++
 * and as BPF C, like the grammar.
 */
#ifndef BMC_FRAME_H
#define BMC_FRAME_H

#ifdef __cplusplus
#include "bmc_grammar.h"
#endif

/* Ethernet, at most one 802.1Q/802.1ad tag, IPv4 (options allowed) or IPv6 (up to four
 * hop-by-hop, routing, destination-options or fragment headers), then TCP or UDP. The
 * headers are read from a copy of the frame's first BMC_HDR_MAX bytes; every byte index
 * is masked, which keeps the BPF instantiation in bounds without per-read checks. */
#define BMC_ETH_P_IP 0x0800
#define BMC_ETH_P_IPV6 0x86dd
#define BMC_ETH_P_8021Q 0x8100
#define BMC_ETH_P_8021AD 0x88a8
#define BMC_IPPROTO_TCP 6
#define BMC_IPPROTO_UDP 17

BMC_INLINE __u32 bmc_h8(const struct bmc_scratch *sc, __u32 off)
{
    BMC_OPAQUE(off); /* clang must not drop the mask on offsets it can bound itself */
    return sc->hdr[off & (BMC_HDR_MAX - 1)];
}

BMC_INLINE __u32 bmc_h16(const struct bmc_scratch *sc, __u32 off)
{
    return bmc_h8(sc, off) << 8 | bmc_h8(sc, off + 1);
}

/* A 16-bit word of the headers at an even offset, as it lies in memory. Every header
 * field the reply rewrites is such a word (the IP header starts at 14 or 18 and is a
 * multiple of 4 long), and a one's-complement sum is the same in either byte order (RFC
 * 1071), so checksums are summed, folded and stored in memory order. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "bmc's header words assume a little-endian target"
#endif
BMC_INLINE __u32 bmc_w16(const struct bmc_scratch *sc, __u32 off)
{
    BMC_OPAQUE(off);
    return bmc_load16(sc->hdr + (off & (BMC_HDR_MAX - 2)));
}

BMC_INLINE void bmc_w16_set(struct bmc_scratch *sc, __u32 off, __u32 v)
{
    BMC_OPAQUE(off);
    bmc_store16(sc->hdr + (off & (BMC_HDR_MAX - 2)), (__u16)v);
}

BMC_INLINE void bmc_w16_swap(struct bmc_scratch *sc, __u32 a, __u32 b)
{
    __u32 t = bmc_w16(sc, a);

    bmc_w16_set(sc, a, bmc_w16(sc, b));
    bmc_w16_set(sc, b, t);
}

/* A number as the 16-bit big-endian word it is on the wire, read in memory order. */
BMC_INLINE __u32 bmc_wire16(__u32 v)
{
    return (v >> 8 & 0xff) | (v & 0xff) << 8;
}

BMC_INLINE __u32 bmc_fold16(__u32 sum)
{
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return sum;
}

/* The folded sum of the first len bytes of scratch->out (or, with in, scratch->in) as
 * 16-bit big-endian words (an odd last byte padded with zero): UDP checksums. Byte pairs
 * at a time: 8 bytes at a time (as 32-bit halves) measured no faster for payloads this
 * short (bmc-hitcost's IPv6 get, the two builds side by side). */
BMC_SUBPROG int bmc_sum_scratch(const struct bmc_scratch *sc, __u32 len, int in)
{
    const __u8 *b;
    __u32 i, sum = 0;

    if (!sc || len > BMC_MAX_PAYLOAD)
        return 0;
    b = in ? sc->in : sc->out;
    for (i = 0; i < BMC_MAX_PAYLOAD; i += 2) {
        if (i + 1 >= len)
            break;
        sum += (__u32)b[i] << 8 | b[i + 1];
    }
    if (len & 1)
        sum += (__u32)b[(len - 1) & BMC_SCRATCH_MASK] << 8;
    return (int)bmc_fold16(sum);
}

/* The IP version of a parsed frame (4 or 6): whose allowlist prefixes apply. */
BMC_INLINE __u8 bmc_frame_family(const struct bmc_scratch *sc, const struct bmc_frame *f)
{
    return (bmc_h8(sc, f->l3_off) >> 4) == 6 ? 6 : 4;
}

/* Fills *f from the headers in sc->hdr (hlen = min(frame length, BMC_HDR_MAX) bytes
 * valid). f->proto stays 0 for anything that is not TCP or UDP the cache can place:
 * other protocols, non-first fragments, headers beyond BMC_HDR_MAX. */
BMC_SUBPROG int bmc_parse_frame(const struct bmc_scratch *sc, __u32 pkt_len, __u32 hlen, __u32 port,
                                struct bmc_frame *f)
{
    __u32 off = BMC_ETH_HLEN, type, l4, l3_end, nh = 0, i, ihl, tot, frag;
    int vlan = 0, v4 = 0, v4_any = 0, v6_bare = 0, fragmented = 0;

    if (!sc || !f)
        return 0;
    __builtin_memset(f, 0, sizeof(*f));
    if (hlen > BMC_HDR_MAX || hlen > pkt_len || hlen < BMC_ETH_HLEN)
        return 0;
    type = bmc_h16(sc, 12);
    if (type == BMC_ETH_P_8021Q || type == BMC_ETH_P_8021AD) {
        if (off + 4 > hlen)
            return 0;
        type = bmc_h16(sc, off + 2);
        off += 4;
        vlan = 1;
    }
    if (type == BMC_ETH_P_IP) {
        if (off + 20 > hlen || (bmc_h8(sc, off) >> 4) != 4)
            return 0;
        ihl = (bmc_h8(sc, off) & 0xf) * 4;
        tot = bmc_h16(sc, off + 2);
        if (ihl < 20 || tot < ihl || off + tot > pkt_len)
            return 0;
        frag = bmc_h16(sc, off + 6);
        if (frag & 0x1fff)
            return 0; /* not the first fragment: no ports */
        f->src[10] = 0xff;
        f->src[11] = 0xff;
        for (i = 0; i < 4; i++)
            f->src[12 + i] = (__u8)bmc_h8(sc, off + 12 + i);
        fragmented = (frag & 0x2000) != 0;
        nh = bmc_h8(sc, off + 9);
        l4 = off + ihl;
        l3_end = off + tot;
        v4 = ihl == 20;
        v4_any = 1;
    } else if (type == BMC_ETH_P_IPV6) {
        if (off + 40 > hlen || (bmc_h8(sc, off) >> 4) != 6)
            return 0;
        l3_end = off + 40 + bmc_h16(sc, off + 4);
        if (l3_end > pkt_len)
            return 0;
        for (i = 0; i < 16; i++)
            f->src[i] = (__u8)bmc_h8(sc, off + 8 + i);
        nh = bmc_h8(sc, off + 6);
        l4 = off + 40;
        v6_bare = nh == BMC_IPPROTO_UDP;
        for (i = 0; i < 4; i++) {
            if (l4 + 8 > hlen)
                return 0;
            if (nh == 0 || nh == 43 || nh == 60) {
                nh = bmc_h8(sc, l4);
                l4 += (bmc_h8(sc, l4 + 1) + 1) * 8;
            } else if (nh == 44) {
                if (bmc_h16(sc, l4 + 2) & 0xfff8)
                    return 0; /* not the first fragment */
                fragmented = (bmc_h8(sc, l4 + 3) & 1) != 0;
                nh = bmc_h8(sc, l4);
                l4 += 8;
            } else {
                break;
            }
        }
    } else {
        return 0;
    }
    if (l4 > l3_end)
        return 0;
    if (nh == BMC_IPPROTO_UDP) {
        __u32 udp_len;
        if (l4 + 8 > hlen || l4 + 8 > l3_end)
            return 0;
        udp_len = bmc_h16(sc, l4 + 4);
        f->payload_off = l4 + 8;
        f->payload_len = l3_end - l4 - 8;
        if (udp_len < 8 || (!fragmented && udp_len > l3_end - l4))
            f->malformed = 1;
        else if (udp_len - 8 < f->payload_len)
            f->payload_len = udp_len - 8;
        f->complete = !fragmented && !f->malformed;
    } else if (nh == BMC_IPPROTO_TCP) {
        __u32 doff;
        if (l4 + 20 > hlen || l4 + 20 > l3_end)
            return 0;
        doff = (bmc_h8(sc, l4 + 12) >> 4) * 4;
        if (doff < 20 || l4 + doff > l3_end)
            return 0;
        f->payload_off = l4 + doff;
        f->payload_len = l3_end - l4 - doff;
    } else {
        return 0;
    }
    f->proto = (__u8)nh;
    f->l4_off = l4;
    f->from_server = bmc_h16(sc, l4) == port;
    f->to_server = bmc_h16(sc, l4 + 2) == port;
    f->plain = !vlan && v4 && !fragmented;
    f->answerable = fragmented ? 0 : v4_any ? 4 : v6_bare ? 6 : 0;
    f->l3_off = (__u8)off;
    return 0;
}

/* The socket lookup's answer, remembered per CPU for the destinations of recent hits
 * (bmc_drive_socket in core/bmc_driver.h). Sound because memcached's sockets starting
 * and ending start a new epoch (bmc_bind4/6 after the socket is hashed, bmc_release),
 * and an answer only counts in the epoch it was looked up in, which its caller read
 * before the lookup:
 *  - a bind after the lookup starts a new epoch, so a "no" goes with it;
 *  - a release starts one before the socket is unhashed, so a lookup in between may
 *    remember a "yes" for the new epoch; but that epoch has no entries to serve until
 *    memcached's replies fill them, and a memcached that answers has its sockets.
 * Sockets the epoch does not follow (bound outside the observed cgroup, or before bmcd
 * started) are followed by the expiry: an answer is used until cfg->sock_memo_ns after
 * the reading that looked it up, by the same clock, which may lag real time by up to
 * cfg->clock_margin_ns (bmc_rx_live_now). */

/* A parsed frame's destination address, IPv4 as ::ffff:a.b.c.d, in 32-bit words in
 * memory order (as bmc_frame.src). The addresses lie at even offsets. */
BMC_INLINE void bmc_frame_dst(const struct bmc_scratch *sc, const struct bmc_frame *f, __u32 dst[4])
{
    __u32 i, a;

    if (f->answerable == 6) {
        a = f->l3_off + 24;
        for (i = 0; i < 4; i++)
            dst[i] = bmc_w16(sc, a + 4 * i) | bmc_w16(sc, a + 4 * i + 2) << 16;
        return;
    }
    a = f->l3_off + 16;
    dst[0] = 0;
    dst[1] = 0;
    dst[2] = 0xffff0000u;  /* bytes 00 00 ff ff */
    dst[3] = bmc_w16(sc, a) | bmc_w16(sc, a + 2) << 16;
}

BMC_INLINE __u32 bmc_sock_memo_slot(const __u32 dst[4])
{
    __u32 h = dst[0] ^ dst[1] ^ dst[2] ^ dst[3];

    return (h ^ h >> 8 ^ h >> 16 ^ h >> 24) & (BMC_SOCK_MEMOS - 1);
}

/* 1 or 0: the remembered answer for dst in this epoch at clock reading now; -1: none. */
BMC_INLINE int bmc_sock_memo_find(const struct bmc_sock_memo *m, const __u32 dst[4], __u8 family, __u32 epoch,
                                  __u64 now)
{
    if (m->family != family || m->epoch != epoch || now >= m->until_ns ||
        ((m->addr[0] ^ dst[0]) | (m->addr[1] ^ dst[1]) | (m->addr[2] ^ dst[2]) | (m->addr[3] ^ dst[3])))
        return -1;
    return m->deliverable;
}

BMC_INLINE void bmc_sock_memo_put(struct bmc_sock_memo *m, const __u32 dst[4], __u8 family, __u32 epoch,
                                  __u64 until_ns, int deliverable)
{
    __u32 i;

    for (i = 0; i < 4; i++)
        m->addr[i] = dst[i];
    m->family = family;
    m->epoch = epoch;
    m->until_ns = until_ns;
    m->deliverable = deliverable ? 1 : 0;
}

#endif /* BMC_FRAME_H */
