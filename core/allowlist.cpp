#include "allowlist.hpp"

#include <arpa/inet.h>

#include <cstring>

namespace bmc {

Prefix Prefix::parse(const std::string &cidr) {
    Prefix p;
    const auto slash = cidr.find('/');
    const std::string host = cidr.substr(0, slash);
    in_addr v4;
    in6_addr v6;
    std::uint32_t max_len;
    std::uint32_t base = 0;
    if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
        p.addr[10] = p.addr[11] = 0xff;
        std::memcpy(p.addr.data() + 12, &v4, 4);
        max_len = 32;
        base = 96;
    } else if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
        std::memcpy(p.addr.data(), &v6, 16);
        max_len = 128;
    } else {
        throw std::invalid_argument("'" + cidr + "' is not an IPv4 or IPv6 address or prefix");
    }
    std::uint32_t len = max_len;
    if (slash != std::string::npos) {
        const std::string bits = cidr.substr(slash + 1);
        if (bits.empty() || bits.size() > 3 || bits.find_first_not_of("0123456789") != std::string::npos ||
            std::stoul(bits) > max_len)
            throw std::invalid_argument("'" + cidr + "': prefix length must be 0 to " + std::to_string(max_len));
        len = std::uint32_t(std::stoul(bits));
    }
    p.len = base + len;
    for (std::uint32_t bit = p.len; bit < 128; bit++)  // keep the network part only
        p.addr[bit / 8] &= std::uint8_t(~(0x80u >> (bit % 8)));
    // An IPv6 prefix admits IPv6 clients, unless it is written inside ::ffff:0:0/96: then
    // it names IPv4 clients, as a v4-mapped address does.
    p.family = p.len >= 96 && std::memcmp(p.addr.data(), "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0 ? 4 : 6;
    return p;
}

bool Prefix::contains(const std::uint8_t *a, std::uint8_t client_family) const {
    if (client_family != family) return false;
    std::uint32_t full = len / 8, rest = len % 8;
    if (std::memcmp(a, addr.data(), full) != 0) return false;
    if (!rest) return true;
    std::uint8_t mask = std::uint8_t(0xff << (8 - rest));
    return (a[full] & mask) == (addr[full] & mask);
}

std::string Prefix::str() const {
    char buf[INET6_ADDRSTRLEN];
    const bool v4 = len >= 96 && std::memcmp(addr.data(), "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0;
    if (v4) {
        inet_ntop(AF_INET, addr.data() + 12, buf, sizeof buf);
        return std::string(buf) + "/" + std::to_string(len - 96);
    }
    inet_ntop(AF_INET6, addr.data(), buf, sizeof buf);
    return std::string(buf) + "/" + std::to_string(len);
}

}  // namespace bmc

#include <ifaddrs.h>
#include <netinet/in.h>

namespace bmc {

std::vector<Prefix> interface_networks(const std::string &iface) {
    std::vector<Prefix> out;
    ifaddrs *list = nullptr;
    if (getifaddrs(&list) != 0) return out;
    for (ifaddrs *a = list; a; a = a->ifa_next) {
        if (!a->ifa_addr || !a->ifa_netmask || iface != a->ifa_name) continue;
        char buf[INET6_ADDRSTRLEN];
        int bits = 0;
        if (a->ifa_addr->sa_family == AF_INET) {
            auto *in = reinterpret_cast<sockaddr_in *>(a->ifa_addr);
            auto *mask = reinterpret_cast<sockaddr_in *>(a->ifa_netmask);
            bits = __builtin_popcount(mask->sin_addr.s_addr);
            inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
        } else if (a->ifa_addr->sa_family == AF_INET6) {
            auto *in = reinterpret_cast<sockaddr_in6 *>(a->ifa_addr);
            auto *mask = reinterpret_cast<sockaddr_in6 *>(a->ifa_netmask);
            for (auto b : mask->sin6_addr.s6_addr) bits += __builtin_popcount(b);
            inet_ntop(AF_INET6, &in->sin6_addr, buf, sizeof buf);
        } else {
            continue;
        }
        out.push_back(Prefix::parse(std::string(buf) + "/" + std::to_string(bits)));
    }
    freeifaddrs(list);
    return out;
}

}  // namespace bmc

namespace bmc {

std::string interface_ipv4(const std::string &iface) {
    std::string out;
    ifaddrs *list = nullptr;
    if (getifaddrs(&list) != 0) return out;
    for (ifaddrs *a = list; a && out.empty(); a = a->ifa_next) {
        if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET || iface != a->ifa_name) continue;
        char buf[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in *>(a->ifa_addr)->sin_addr, buf, sizeof buf);
        out = buf;
    }
    freeifaddrs(list);
    return out;
}

}  // namespace bmc

#include <net/if.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstring>

namespace bmc {

namespace {
bool iface_ioctl(const std::string &iface, unsigned long req, ifreq &ifr) {
    std::memset(&ifr, 0, sizeof ifr);
    if (iface.size() >= IFNAMSIZ) return false;
    std::memcpy(ifr.ifr_name, iface.c_str(), iface.size());
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    bool ok = ioctl(fd, req, &ifr) == 0;
    close(fd);
    return ok;
}
}  // namespace

bool interface_is_loopback(const std::string &iface) {
    ifreq ifr;
    return iface_ioctl(iface, SIOCGIFFLAGS, ifr) && (ifr.ifr_flags & IFF_LOOPBACK);
}

bool interface_mac(const std::string &iface, std::uint8_t mac[6]) {
    ifreq ifr;
    if (!iface_ioctl(iface, SIOCGIFHWADDR, ifr)) return false;
    std::memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    return true;
}

}  // namespace bmc
