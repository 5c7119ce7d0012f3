// libFuzzer: whole frames through the C++ datapath, alternately as requests (ingress)
// and as memcached's replies (egress), on one small cache so that fills, hits and
// invalidations happen.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "datapath.hpp"

namespace {
struct Cache {
    std::vector<bmc_small_bucket> small = std::vector<bmc_small_bucket>(8);
    std::vector<bmc_large_bucket> large = std::vector<bmc_large_bucket>(2);
    bmc_global global{};
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    static Cache cache;
    static bmc::Datapath *dp = [] {
        bmc_config cfg = bmc::default_config();
        cfg.small_mask = 7;
        cfg.large_mask = 1;
        cfg.fill_guard_ns = 0;
        cfg.max_amp = 1000;
        return new bmc::Datapath({cache.small.data(), 8, cache.large.data(), 2, &cache.global}, cfg,
                                 bmc::Allowlist::everyone(), bmc::Delivery{});
    }();
    static std::uint64_t now = 1000000000;
    if (size < 1) return 0;
    std::vector<std::uint8_t> frame(data + 1, data + size);
    now += 1000;
    if (data[0] & 1) {
        dp->egress(frame, now);
    } else {
        const std::vector<std::uint8_t> before = frame;
        // Whatever the cache does not answer goes up unchanged.
        if (dp->ingress(frame, now).action == bmc::Action::Pass && frame != before) __builtin_trap();
    }
    return 0;
}
