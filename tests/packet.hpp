// Builds Ethernet/IPv4/UDP|TCP frames for the packet tests.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bmc::test {

using Bytes = std::vector<std::uint8_t>;

struct Endpoint {
    std::uint32_t ip;  // host order
    std::uint16_t port;
};

inline constexpr Endpoint kClient{0xC6120002u, 40000};  // 198.18.0.2
inline constexpr Endpoint kServer{0xC6120001u, 11211};  // 198.18.0.1

struct FrameOptions {
    std::uint8_t ip_options = 0;  // bytes of IP options (multiple of 4)
    bool fragment = false;        // first fragment: MF set (IPv4) or a fragment header (IPv6)
    bool ipv6 = false;            // 2001:db8::2 -> 2001:db8::1 instead of the IPv4 addresses
    bool hop_by_hop = false;      // IPv6: a hop-by-hop options header before L4
    int vlan = -1;                // an 802.1Q tag with this VLAN id
};

Bytes udp_frame(Endpoint src, Endpoint dst, const Bytes &payload, FrameOptions o = {});
Bytes tcp_frame(Endpoint src, Endpoint dst, const Bytes &payload, FrameOptions o = {});

// memcached UDP frame header + text.
Bytes mc_udp(std::string_view text, std::uint16_t req_id = 0x1234, std::uint16_t seq = 0,
             std::uint16_t total = 1);
Bytes bytes(std::string_view s);

// Binary protocol request: opcode, key, extras and value.
Bytes bin_request(std::uint8_t opcode, std::string_view key, std::string_view extras = {},
                  std::string_view value = {});

// Request from client to server / reply from server to client.
inline Bytes get_request(std::string_view text, std::uint16_t id = 0x1234) {
    return udp_frame(kClient, kServer, mc_udp(text, id));
}
inline Bytes reply_frame(std::string_view text, std::uint16_t id = 0x1234) {
    return udp_frame(kServer, kClient, mc_udp(text, id));
}
inline Bytes tcp_request(std::string_view text) {
    return tcp_frame(kClient, kServer, bytes(text));
}

std::string payload_text(const Bytes &frame);  // UDP payload after the 8-byte mc header

}  // namespace bmc::test
