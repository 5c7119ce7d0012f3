#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "datapath.hpp"

namespace bmc::test {

// Tests that need root (BPF, namespaces) run in CI; elsewhere without root they skip.
inline bool ci() {
    const char *v = std::getenv("CI");
    return v && std::string(v) == "true";
}

#define BMC_REQUIRE_ROOT()                                                                     \
    do {                                                                                       \
        if (geteuid() != 0) {                                                                  \
            if (::bmc::test::ci()) FAIL() << "needs root, and CI=true forbids skipping";      \
            GTEST_SKIP() << "needs root";                                                      \
        }                                                                                      \
    } while (0)

// Cache memory owned by a test, in the shared layout.
struct OwnedCache {
    std::vector<bmc_small_bucket> small;
    std::vector<bmc_large_bucket> large;
    bmc_global global{};

    OwnedCache(std::uint32_t n_small, std::uint32_t n_large) : small(n_small), large(n_large) {
        std::memset(small.data(), 0, small.size() * sizeof(bmc_small_bucket));
        std::memset(large.data(), 0, large.size() * sizeof(bmc_large_bucket));
    }
    CacheMemory mem() {
        return {small.data(), std::uint32_t(small.size()), large.data(), std::uint32_t(large.size()),
                &global};
    }
};

// What the packet tests' server host delivers (tests/packet.cpp builds frames to it):
// MAC 02:00:00:00:00:01, 198.18.0.1 and 2001:db8::c612:1 (broadcast 198.18.0.255), VLANs 2 and 7.
inline Delivery test_delivery() {
    Delivery d;
    d.mac = {0x02, 0, 0, 0, 0, 0x01};
    std::array<std::uint8_t, 16> v4{}, v6{}, bcast{};
    v4[10] = v4[11] = 0xff;
    v4[12] = 198, v4[13] = 18, v4[14] = 0, v4[15] = 1;
    bcast = v4;
    bcast[15] = 255;
    v6[0] = 0x20, v6[1] = 0x01, v6[2] = 0x0d, v6[3] = 0xb8;
    v6[12] = 198, v6[13] = 18, v6[14] = 0, v6[15] = 1;
    d.local = {{v4, BMC_LOCAL_UNICAST}, {v6, BMC_LOCAL_UNICAST}, {bcast, BMC_LOCAL_BROADCAST}};
    d.vlans = {2, 7};
    return d;
}

// Amplification is limited by its own tests; the others use values of any size.
inline bmc_config test_config(std::uint32_t n_small, std::uint32_t n_large, std::uint32_t max_amp = 1000) {
    bmc_config c = default_config();
    c.small_mask = n_small - 1;
    c.large_mask = n_large - 1;
    c.max_amp = max_amp;
    return c;
}

}  // namespace bmc::test
