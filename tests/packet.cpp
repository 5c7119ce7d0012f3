#include "packet.hpp"
#include "wire.hpp"

#include <algorithm>
#include <cstring>

#include "datapath.hpp"

namespace bmc::test {
namespace {


Bytes eth_header(std::uint16_t type, int vlan) {
    Bytes f(14);
    const std::uint8_t dmac[6] = {0x02, 0, 0, 0, 0, 0x01}, smac[6] = {0x02, 0, 0, 0, 0, 0x02};
    std::copy(dmac, dmac + 6, f.begin());
    std::copy(smac, smac + 6, f.begin() + 6);
    if (vlan >= 0) {
        bmc::put_be16(&f[12], 0x8100);
        f.resize(18);
        bmc::put_be16(&f[14], std::uint16_t(vlan));
        bmc::put_be16(&f[16], type);
    } else {
        bmc::put_be16(&f[12], type);
    }
    return f;
}

Bytes ip6_frame(Endpoint src, Endpoint dst, std::uint8_t proto, const Bytes &l4, FrameOptions o) {
    Bytes f = eth_header(0x86dd, o.vlan);
    const std::size_t ip = f.size();
    Bytes ext;
    std::uint8_t first = proto;
    if (o.fragment) {  // fragment header: offset 0, M set
        ext = {proto, 0, 0, 1, 0, 0, 0x12, 0x34};
        first = 44;
    }
    if (o.hop_by_hop) {  // 8 bytes: next, len 0, PadN
        Bytes hbh = {first, 0, 1, 4, 0, 0, 0, 0};
        hbh.insert(hbh.end(), ext.begin(), ext.end());
        ext = hbh;
        first = 0;
    }
    f.resize(ip + 40);
    f[ip] = 0x60;
    bmc::put_be16(&f[ip + 4], std::uint16_t(ext.size() + l4.size()));
    f[ip + 6] = first;
    f[ip + 7] = 64;
    const std::uint8_t prefix[6] = {0x20, 0x01, 0x0d, 0xb8, 0, 0};
    std::copy(prefix, prefix + 6, f.begin() + long(ip + 8));
    bmc::put_be32(&f[ip + 20], src.ip);
    std::copy(prefix, prefix + 6, f.begin() + long(ip + 24));
    bmc::put_be32(&f[ip + 36], dst.ip);
    f.insert(f.end(), ext.begin(), ext.end());
    const std::size_t l4_off = f.size();
    f.insert(f.end(), l4.begin(), l4.end());
    if (proto == 17) {  // IPv6 requires the UDP checksum: pseudo-header, header, payload
        std::uint32_t sum = 0;
        auto add = [&](const std::uint8_t *p, std::size_t n) {
            for (std::size_t i = 0; i < n; i += 2) sum += std::uint32_t(p[i] << 8 | (i + 1 < n ? p[i + 1] : 0));
        };
        add(f.data() + ip + 8, 32);
        sum += std::uint32_t(l4.size()) + 17;
        add(f.data() + l4_off, l4.size());
        while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
        std::uint16_t c = std::uint16_t(~sum);
        bmc::put_be16(&f[l4_off + 6], c ? c : 0xffff);
    }
    return f;
}

Bytes ip_frame(Endpoint src, Endpoint dst, std::uint8_t proto, const Bytes &l4, FrameOptions o) {
    if (o.ipv6) return ip6_frame(src, dst, proto, l4, o);
    const std::size_t ihl = 20 + o.ip_options;
    Bytes f = eth_header(0x0800, o.vlan);
    const std::size_t ip = f.size();
    f.resize(ip + ihl);
    f[ip] = std::uint8_t(0x40 | (ihl / 4));
    bmc::put_be16(&f[ip + 2], std::uint16_t(ihl + l4.size()));
    bmc::put_be16(&f[ip + 4], 0x4242);
    bmc::put_be16(&f[ip + 6], o.fragment ? 0x2000 : 0x4000);
    f[ip + 8] = 64;
    f[ip + 9] = proto;
    bmc::put_be32(&f[ip + 12], src.ip);
    bmc::put_be32(&f[ip + 16], dst.ip);
    for (std::size_t i = 0; i < o.ip_options; i++) f[ip + 20 + i] = 1;  // NOPs
    std::uint16_t c = ipv4_header_checksum(f.data() + ip, ihl);
    std::memcpy(f.data() + ip + 10, &c, 2);
    f.insert(f.end(), l4.begin(), l4.end());
    return f;
}

}  // namespace

Bytes bytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

Bytes udp_frame(Endpoint src, Endpoint dst, const Bytes &payload, FrameOptions o) {
    Bytes u(8);
    bmc::put_be16(&u[0], src.port);
    bmc::put_be16(&u[2], dst.port);
    bmc::put_be16(&u[4], std::uint16_t(8 + payload.size()));
    u.insert(u.end(), payload.begin(), payload.end());
    return ip_frame(src, dst, 17, u, o);
}

Bytes tcp_frame(Endpoint src, Endpoint dst, const Bytes &payload, FrameOptions o) {
    Bytes t(20);
    bmc::put_be16(&t[0], src.port);
    bmc::put_be16(&t[2], dst.port);
    bmc::put_be32(&t[4], 1000);
    bmc::put_be32(&t[8], 2000);
    t[12] = 5 << 4;
    t[13] = 0x18;  // PSH ACK
    bmc::put_be16(&t[14], 65535);
    t.insert(t.end(), payload.begin(), payload.end());
    return ip_frame(src, dst, 6, t, o);
}

Bytes mc_udp(std::string_view text, std::uint16_t req_id, std::uint16_t seq, std::uint16_t total) {
    Bytes b(8);
    bmc::put_be16(&b[0], req_id);
    bmc::put_be16(&b[2], seq);
    bmc::put_be16(&b[4], total);
    b.insert(b.end(), text.begin(), text.end());
    return b;
}

Bytes bin_request(std::uint8_t opcode, std::string_view key, std::string_view extras,
                  std::string_view value) {
    Bytes b(24);
    b[0] = 0x80;
    b[1] = opcode;
    bmc::put_be16(&b[2], std::uint16_t(key.size()));
    b[4] = std::uint8_t(extras.size());
    bmc::put_be32(&b[8], std::uint32_t(extras.size() + key.size() + value.size()));
    b.insert(b.end(), extras.begin(), extras.end());
    b.insert(b.end(), key.begin(), key.end());
    b.insert(b.end(), value.begin(), value.end());
    return b;
}

std::string payload_text(const Bytes &f) {  // untagged IPv4 frames
    std::size_t ihl = (f[14] & 0xf) * 4u, off = 14 + ihl + 8 + 8;
    return off <= f.size() ? std::string(f.begin() + long(off), f.end()) : std::string();
}

}  // namespace bmc::test
