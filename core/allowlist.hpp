// The clients the cache may answer: IPv4 and IPv6 prefixes. IPv4 is held mapped into
// ::ffff:0:0/96 behind a family byte, as the BPF LPM trie holds it: one lookup serves both
// families, and neither family's prefixes admit the other's clients.
#pragma once

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace bmc {

struct Prefix {
    std::array<std::uint8_t, 16> addr{};
    std::uint32_t len = 0;  // bits of addr that must match, 0..128
    std::uint8_t family = 6;  // the clients it admits: 4 (IPv4, or a v4-mapped prefix) or 6

    // "198.18.0.0/15", "2001:db8::/32", or an address alone (a host). Throws
    // std::invalid_argument with a one-line reason.
    static Prefix parse(const std::string &cidr);
    std::string str() const;
    // addr16 as in bmc_frame.src; client_family: the IP version the client speaks.
    bool contains(const std::uint8_t *addr16, std::uint8_t client_family) const;
};

class Allowlist {
public:
    Allowlist() = default;
    explicit Allowlist(std::vector<Prefix> prefixes) : prefixes_(std::move(prefixes)) {}
    static Allowlist everyone() { return Allowlist({Prefix{{}, 0, 6}, Prefix{{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 96, 4}}); }

    bool contains(const std::uint8_t *addr16, std::uint8_t client_family) const {
        for (const auto &p : prefixes_)
            if (p.contains(addr16, client_family)) return true;
        return false;
    }
    const std::vector<Prefix> &prefixes() const { return prefixes_; }

private:
    std::vector<Prefix> prefixes_;
};

}  // namespace bmc

namespace bmc {
// The networks of an interface's IPv4 and IPv6 addresses (empty if it has none).
std::vector<Prefix> interface_networks(const std::string &iface);
// Whether the interface is a loopback device; its hardware address (false if none).
bool interface_is_loopback(const std::string &iface);
bool interface_mac(const std::string &iface, std::uint8_t mac[6]);
// The interface's first IPv4 address as text, or "" if it has none.
std::string interface_ipv4(const std::string &iface);
}  // namespace bmc
