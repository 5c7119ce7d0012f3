#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
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

// Amplification is limited by its own tests; the others use values of any size.
inline bmc_config test_config(std::uint32_t n_small, std::uint32_t n_large, std::uint32_t max_amp = 1000) {
    bmc_config c = default_config();
    c.small_mask = n_small - 1;
    c.large_mask = n_large - 1;
    c.max_amp = max_amp;
    return c;
}

}  // namespace bmc::test
