// Request and reply frames of the benchmark's tools (bmc-hitcost, bmc-floor): a memcached
// UDP datagram in Ethernet (a VLAN tag), IPv4 (options) or IPv6, as a client or memcached
// sends it.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "datapath.hpp"
#include "wire.hpp"

namespace bmc::bench {

using Bytes = std::vector<std::uint8_t>;

struct Shape {
    int vlan = -1;         // an 802.1Q tag with this id
    bool ip_options = false;  // four bytes of NOP options (IPv4)
    bool ipv6 = false;
};

constexpr std::array<std::uint8_t, 16> kClient6 = {0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2},
                                        kServer6 = {0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

// Ethernet (a tag), IPv4 (options) or IPv6, UDP with memcached's frame header. The UDP
// checksum is zero over IPv4 (none, valid there) and computed over IPv6 (required).
inline Bytes frame(const std::array<std::uint8_t, 6> &dst_mac, std::uint32_t src, std::uint32_t dst, std::uint16_t sport,
            std::uint16_t dport, const std::string &text, Shape sh = {}) {
    Bytes f(12);
    std::copy(dst_mac.begin(), dst_mac.end(), f.begin());
    f[6] = 0x02, f[11] = 0x02;
    auto push16 = [&](std::uint16_t v) {
        f.push_back(std::uint8_t(v >> 8));
        f.push_back(std::uint8_t(v));
    };
    if (sh.vlan >= 0) {
        push16(0x8100);
        push16(std::uint16_t(sh.vlan));
    }
    push16(sh.ipv6 ? 0x86dd : 0x0800);
    const std::size_t l3 = f.size();
    const std::uint32_t udp_len = 8 + 8 + std::uint32_t(text.size());
    if (sh.ipv6) {
        f.resize(l3 + 40);
        f[l3] = 0x60;
        bmc::put_be16(&f[l3 + 4], std::uint16_t(udp_len));
        f[l3 + 6] = 17;
        f[l3 + 7] = 64;
        std::copy(kClient6.begin(), kClient6.end(), f.begin() + long(l3) + 8);
        std::copy(kServer6.begin(), kServer6.end(), f.begin() + long(l3) + 24);
        if (src == 0xC6120001u) {  // from the server: addresses the other way round
            std::copy(kServer6.begin(), kServer6.end(), f.begin() + long(l3) + 8);
            std::copy(kClient6.begin(), kClient6.end(), f.begin() + long(l3) + 24);
        }
    } else {
        const std::uint32_t ihl = sh.ip_options ? 24 : 20;
        f.resize(l3 + ihl, 0x01);  // options: NOP
        f[l3] = std::uint8_t(0x40 | ihl / 4);
        f[l3 + 1] = 0;
        bmc::put_be16(&f[l3 + 2], std::uint16_t(ihl + udp_len));
        bmc::put_be16(&f[l3 + 4], 0);
        bmc::put_be16(&f[l3 + 6], 0);
        f[l3 + 8] = 64;
        f[l3 + 9] = 17;
        bmc::put_be16(&f[l3 + 10], 0);
        bmc::put_be16(&f[l3 + 12], std::uint16_t(src >> 16)), bmc::put_be16(&f[l3 + 14], std::uint16_t(src));
        bmc::put_be16(&f[l3 + 16], std::uint16_t(dst >> 16)), bmc::put_be16(&f[l3 + 18], std::uint16_t(dst));
        std::uint16_t c = bmc::ipv4_header_checksum(f.data() + l3, ihl);
        std::memcpy(f.data() + l3 + 10, &c, 2);
    }
    const std::size_t l4 = f.size();
    f.resize(l4 + 8);
    bmc::put_be16(&f[l4], sport), bmc::put_be16(&f[l4 + 2], dport), bmc::put_be16(&f[l4 + 4], std::uint16_t(udp_len));
    const std::uint8_t hdr[8] = {0x12, 0x34, 0, 0, 0, 1, 0, 0};  // request id, sequence 0 of 1
    f.insert(f.end(), hdr, hdr + 8);
    f.insert(f.end(), text.begin(), text.end());
    if (sh.ipv6) {
        std::uint32_t sum = 17 + udp_len;
        for (std::size_t i = l3 + 8; i < l3 + 40; i += 2) sum += std::uint32_t(f[i] << 8 | f[i + 1]);
        for (std::size_t i = l4; i < f.size(); i += 2) sum += std::uint32_t(f[i] << 8 | (i + 1 < f.size() ? f[i + 1] : 0));
        while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
        const auto c = std::uint16_t(~sum);
        bmc::put_be16(&f[l4 + 6], c ? c : 0xffff);
    }
    return f;
}

}  // namespace bmc::bench
