// The cache's seqlock under ThreadSanitizer: the C++ build of the core (built with
// -fsanitize=thread for this test), readers answering gets while writers fill the same
// entries with new values and invalidate them, all on a few buckets so that they collide.
// Fails when a reader serves a torn value (a value's bytes are all one letter, which
// changes with every fill) or when TSan reports a data race (halt_on_error).
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "datapath.hpp"
#include "packet.hpp"

using namespace bmc;
using namespace bmc::test;

namespace {

constexpr int kKeys = 4, kValueLen = 40;
constexpr auto kDuration = std::chrono::seconds(3);

struct Shared {
    std::vector<bmc_small_bucket> small = std::vector<bmc_small_bucket>(2);
    std::vector<bmc_large_bucket> large = std::vector<bmc_large_bucket>(2);
    bmc_global global{};
    CacheMemory mem() { return {small.data(), 2, large.data(), 2, &global}; }
};

bmc_config config() {
    bmc_config c = default_config();
    c.small_mask = 1;
    c.large_mask = 1;
    c.fill_guard_ns = 0;
    c.max_age_ns = 3600ULL * 1000000000ULL;
    c.check_delivery = 0;
    c.max_amp = 100;
    return c;
}

Allowlist allow() { return Allowlist({Prefix::parse("198.18.0.2/32")}); }

std::string key(int k) { return "race-key-" + std::to_string(k); }

}  // namespace

int main() {
    Shared cache;
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> answered{0}, torn{0}, fills{0};
    const auto deadline = std::chrono::steady_clock::now() + kDuration;
    std::vector<std::thread> threads;

    for (int w = 0; w < 2; w++)
        threads.emplace_back([&, w] {
            Datapath dp(cache.mem(), config(), allow(), Delivery{});
            Observer obs(cache.mem(), config());
            for (std::uint64_t n = 0; !stop.load(std::memory_order_relaxed); n++) {
                const int k = int((n + std::uint64_t(w)) % kKeys);
                const char letter = char('a' + (n * 2 + std::uint64_t(w)) % 26);
                auto get = get_request("get " + key(k) + "\r\n");
                dp.ingress(get, monotonic_ns());  // a miss takes the lease
                const std::string item = "VALUE " + key(k) + " 0 " + std::to_string(kValueLen) + "\r\n" +
                                         std::string(kValueLen, letter) + "\r\n";
                dp.egress(reply_frame(item + "END\r\n"), monotonic_ns());
                if (n % 7 == 0) {  // a write: the observer invalidates the key's bucket
                    const Bytes set = mc_udp("set " + key(k) + " 0 0 1\r\nx\r\n");
                    obs.datagram(set, monotonic_ns());
                }
            }
            fills += dp.counters()[BMC_STAT_FILL_OK];
        });
    for (int r = 0; r < 2; r++)
        threads.emplace_back([&, r] {
            Datapath dp(cache.mem(), config(), allow(), Delivery{});
            for (std::uint64_t n = 0; !stop.load(std::memory_order_relaxed); n++) {
                const int k = int((n + std::uint64_t(r)) % kKeys);
                auto frame = get_request("get " + key(k) + "\r\n");
                if (dp.ingress(frame, monotonic_ns()).action != Action::Tx) continue;
                answered++;
                const std::string text = payload_text(frame);
                const auto v = text.find("\r\n") + 2;
                const std::string value = text.substr(v, kValueLen);
                if (value.size() != std::size_t(kValueLen) ||
                    value.find_first_not_of(value[0]) != std::string::npos) {
                    if (torn++ < 3) std::fprintf(stderr, "cache_race_test: torn value '%s'\n", value.c_str());
                }
            }
        });
    while (std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    stop = true;
    for (auto &t : threads) t.join();
    std::printf("cache_race_test: %llu fills, %llu answers, %llu torn\n", (unsigned long long)fills.load(),
                (unsigned long long)answered.load(), (unsigned long long)torn.load());
    if (torn || answered < 100 || fills < 100) {
        std::fprintf(stderr, "cache_race_test: FAILED (%s)\n", torn ? "torn values served" : "too little happened");
        return 1;
    }
    return 0;
}
