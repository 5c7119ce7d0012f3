// What the server's stack delivers, read from the system (Delivery::of_interface).
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "datapath.hpp"

namespace bmc {
namespace {

std::array<std::uint8_t, 16> mapped(const sockaddr *sa) {
    std::array<std::uint8_t, 16> a{};
    if (sa->sa_family == AF_INET) {
        a[10] = a[11] = 0xff;
        std::memcpy(a.data() + 12, &reinterpret_cast<const sockaddr_in *>(sa)->sin_addr, 4);
    } else {
        std::memcpy(a.data(), &reinterpret_cast<const sockaddr_in6 *>(sa)->sin6_addr, 16);
    }
    return a;
}

}  // namespace

Delivery Delivery::of_interface(const std::string &iface) {
    Delivery d;
    d.loopback = interface_is_loopback(iface);
    interface_mac(iface, d.mac.data());
    ifaddrs *list = nullptr;
    if (getifaddrs(&list) == 0) {
        for (ifaddrs *a = list; a; a = a->ifa_next) {
            if (!a->ifa_addr || (a->ifa_addr->sa_family != AF_INET && a->ifa_addr->sa_family != AF_INET6))
                continue;
            d.local.emplace_back(mapped(a->ifa_addr), std::uint8_t(BMC_LOCAL_UNICAST));
            // Without a configured broadcast address glibc reports the address itself.
            if (a->ifa_addr->sa_family == AF_INET && (a->ifa_flags & IFF_BROADCAST) && a->ifa_broadaddr) {
                const auto b = mapped(a->ifa_broadaddr);
                if (b != mapped(a->ifa_addr) && b[12] != 0)
                    d.local.emplace_back(b, std::uint8_t(BMC_LOCAL_BROADCAST));
            }
        }
        freeifaddrs(list);
    }
    // An address that is the host's own stays unicast whatever else claims it.
    std::stable_sort(d.local.begin(), d.local.end(), [](const auto &x, const auto &y) { return x.second > y.second; });
    std::array<std::uint8_t, 16> limited{};
    limited[10] = limited[11] = 0xff;
    limited[12] = limited[13] = limited[14] = limited[15] = 0xff;
    d.local.emplace_back(limited, std::uint8_t(BMC_LOCAL_BROADCAST));
    // "vlan0.7 | 7 | eth0" for each 802.1Q device (the 8021q module's table).
    std::ifstream vlans("/proc/net/vlan/config");
    std::string line;
    while (std::getline(vlans, line)) {
        std::istringstream in(line);
        std::string name, bar1, bar2, parent;
        unsigned vid = 0;
        if (in >> name >> bar1 >> vid >> bar2 >> parent && bar1 == "|" && parent == iface && vid < 4096)
            d.vlans.push_back(std::uint16_t(vid));
    }
    return d;
}

}  // namespace bmc
