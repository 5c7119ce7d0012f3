// The clients the cache may answer: IPv4 and IPv6 prefixes. IPv4 is held mapped into
// ::ffff:0:0/96, as the BPF LPM trie holds it, so one lookup serves both families.
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

    // "198.18.0.0/15", "2001:db8::/32", or an address alone (a host). Throws
    // std::invalid_argument with a one-line reason.
    static Prefix parse(const std::string &cidr);
    std::string str() const;
    bool contains(const std::uint8_t *addr16) const;
};

class Allowlist {
public:
    Allowlist() = default;
    explicit Allowlist(std::vector<Prefix> prefixes) : prefixes_(std::move(prefixes)) {}
    static Allowlist everyone() { return Allowlist({Prefix{{}, 0}}); }

    bool contains(const std::uint8_t *addr16) const {
        for (const auto &p : prefixes_)
            if (p.contains(addr16)) return true;
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
