// bmc-floor: the benchmark's floors on an interface until SIGINT/SIGTERM.
//   --kind xdp    an XDP program that bounces each memcached request back with XDP_TX
//   --kind afxdp  bmc's XDP program in AF_XDP mode, and a poller per queue, built from the
//                 backend's XSK parts, that bounces each request
//   --kind ideal  the floor of a hit (bench/bench_ideal.bpf.c) on a cache of bmc's layout
//                 filled beforehand with the workload's keys (bench/workload.hpp)
//   --kind afxdp-ideal
//                 the same floor of a hit for the AF_XDP backend: the afxdp kind's pollers,
//                 answering from such a cache with bench/ideal_hit.hpp
// The echoes do no cache work: they measure what the path itself costs; the ideal hit
// measures what the least cache work adds to it.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "afxdp_backend.hpp"
#include "bench_shared.h"
#include "bmc_bench.skel.h"
#include "frames.hpp"
#include "ideal_floor.hpp"
#include "ideal_hit.hpp"
#include "percpu.hpp"
#include "poll_loop.hpp"
#include "workload.hpp"
#include "xsk.hpp"

namespace {

// The echo: swap MACs, IPv4 addresses and UDP ports in place (the generator sends
// untagged IPv4), UDP checksum zero.
void bounce(std::uint8_t *f, std::uint32_t len) {
    constexpr std::uint32_t kHdrLen = BMC_ETH_HLEN + 20 + 8;
    if (len < kHdrLen) return;
    std::uint8_t t[6];
    std::memcpy(t, f, 6);
    std::memcpy(f, f + 6, 6);
    std::memcpy(f + 6, t, 6);
    std::memcpy(t, f + 26, 4);
    std::memcpy(f + 26, f + 30, 4);
    std::memcpy(f + 30, t, 4);
    std::memcpy(t, f + 34, 2);
    std::memcpy(f + 34, f + 36, 2);
    std::memcpy(f + 36, t, 2);
    f[40] = f[41] = 0;
}

// Frames the AF_XDP floors' pollers took, and in how many batches (as bmcd's rx_frames
// and rx_batches).
struct Batches {
    std::atomic<std::uint64_t> frames{0}, batches{0};
    void add(std::uint32_t n) {
        frames.fetch_add(n, std::memory_order_relaxed);
        batches.fetch_add(1, std::memory_order_relaxed);
    }
};

// One queue's echo: the backend's poll loop (poll_loop.hpp), no cache work.
struct Echo {
    std::atomic<std::uint64_t> &echoed;
    Batches &batches;
    bool send_queued(bmc::XskQueue &) { return false; }
    void prefetch(const std::uint8_t *, std::uint32_t) {}
    bool answer(std::uint8_t *frame, std::uint32_t &len, std::uint32_t, std::uint64_t) {
        bounce(frame, len);
        return true;
    }
    void tx_dropped() {}
    void batch_done(std::uint32_t n) {
        echoed.fetch_add(n, std::memory_order_relaxed);
        batches.add(n);
    }
};

void echo_loop(bmc::XskQueue &q, const std::atomic<bool> &stop, std::atomic<std::uint64_t> &echoed, Batches &b) {
    Echo echo{echoed, b};
    bmc::poll_queue(q, stop, {}, echo);
}

// One queue's ideal hit (ideal_hit.hpp) in the same loop, with the backend's hint ahead.
struct IdealPoller {
    bmc::CacheMemory mem;
    bmc_config cfg;
    std::atomic<std::uint64_t> &answered;
    Batches &batches;
    std::uint64_t batch_answers = 0;
    bool send_queued(bmc::XskQueue &) { return false; }
    void prefetch(const std::uint8_t *frame, std::uint32_t len) { bmc::prefetch_buckets(mem, cfg, frame, len); }
    bool answer(std::uint8_t *frame, std::uint32_t &len, std::uint32_t room, std::uint64_t now) {
        const bool hit = bmc::bench::ideal_hit(mem, cfg, frame, len, room, now);
        batch_answers += hit;
        return hit;
    }
    void tx_dropped() {}
    void batch_done(std::uint32_t n) {
        answered.fetch_add(batch_answers, std::memory_order_relaxed);
        batch_answers = 0;
        batches.add(n);
    }
};

void ideal_loop(bmc::XskQueue &q, const std::atomic<bool> &stop, const bmc::KernelBackend &kern,
                std::atomic<std::uint64_t> &answered, Batches &b) {
    IdealPoller p{kern.cache(), kern.config(), answered, b};
    bmc::poll_queue(q, stop, {}, p);
}

// The workload's items into the cache, as bmc fills it (a get's miss takes the lease,
// memcached's reply fills): the least popular first, so that where more keys hash to a
// bucket than it has ways, the most popular stay. Returns the items the cache kept.
std::uint64_t fill(bmc::KernelBackend &kern, const bmc::bench::Workload &w) {
    bmc_config cfg = kern.config();
    cfg.check_delivery = 0;  // frames built here, not received
    bmc::Datapath dp(kern.cache(), cfg, bmc::Allowlist::everyone(), bmc::Delivery{});
    const std::array<std::uint8_t, 6> mac{};
    const std::uint32_t client = 0xC6120002u, server = 0xC6120001u;
    auto get = [&](std::uint64_t k) {
        auto f = bmc::bench::frame(mac, client, server, 40000, cfg.port, "get " + bmc::bench::key_name(w, k) + "\r\n");
        return dp.ingress(f, bmc::monotonic_ns()).action == bmc::Action::Tx;
    };
    for (std::uint64_t k = w.keys; k >= 1; k--) {
        get(k);
        dp.egress(bmc::bench::frame(mac, server, client, cfg.port, 40000, bmc::bench::expected_reply(w, {k})),
                  bmc::monotonic_ns());
    }
    std::uint64_t kept = 0;
    for (std::uint64_t k = 1; k <= w.keys; k++) kept += get(k);
    return kept;
}

}  // namespace

int main(int argc, char **argv) {
    CLI::App app{"bmc-floor: the benchmark floors on an interface: an XDP_TX or AF_XDP echo of memcached requests, or the ideal hit from a filled cache"};
    std::string iface, kind = "xdp", stats_file;
    app.add_option("-i,--iface", iface, "interface")->required();
    app.add_option("--kind", kind, "xdp, afxdp, ideal or afxdp-ideal")
        ->check(CLI::IsMember({"xdp", "afxdp", "ideal", "afxdp-ideal"}));
    bmc::bench::Workload w;
    app.add_option("-k,--keys", w.keys, "ideal, afxdp-ideal: the workload's keys, filled into the cache first")
        ->check(CLI::Range(1u, 10000000u))
        ->capture_default_str();
    app.add_option("--value-size", w.value_size, "ideal, afxdp-ideal: the workload's value size (items up to 96 bytes)")
        ->check(CLI::Range(1u, 64u))
        ->capture_default_str();
    app.add_option("--stats-file", stats_file, "JSON counters, rewritten every 200 ms")->required();
    std::uint32_t work = 0;
    app.add_option("--work", work, "xdp: extra bpf_loop iterations per echoed packet (the guide's lab 5)")
        ->check(CLI::Range(0u, 1u << 20));
    CLI11_PARSE(app, argc, argv);

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigprocmask(SIG_BLOCK, &sigs, nullptr);

    std::unique_ptr<bmc::KernelBackend> kern;
    std::unique_ptr<bmc::bench::IdealFloor> ideal;
    std::vector<std::unique_ptr<bmc::XskQueue>> queues;
    std::vector<std::thread> pollers;
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> afxdp_echoed{0};
    Batches afxdp_batches;
    bmc_bench *skel = nullptr;
    int link = -1;
    try {
        if (kind == "xdp") {
            skel = bmc_bench__open();
            if (skel) {
                bpf_program__set_autoload(skel->progs.bench_client, false);
                skel->rodata->bench_echo_work = work;
            }
            if (skel && bmc_bench__load(skel)) {
                bmc_bench__destroy(skel);
                skel = nullptr;
            }
            int ifindex = int(if_nametoindex(iface.c_str()));
            if (!skel || !ifindex) throw bmc::Error("cannot load the echo program or find " + iface);
            link = bpf_link_create(bpf_program__fd(skel->progs.bench_echo), ifindex, BPF_XDP, nullptr);
            if (link < 0) throw bmc::Error("XDP attach to " + iface + " failed");
        } else if (kind == "ideal") {
            const int ifindex = int(if_nametoindex(iface.c_str()));
            if (!ifindex) throw bmc::Error("no interface " + iface);
            bmc::KernelOptions ko;
            ko.iface = iface;
            ko.attach = false;
            ko.max_age_ns = 3600ULL * 1000000000ULL;  // the items are never filled again
            kern = std::make_unique<bmc::KernelBackend>(ko);
            const std::uint64_t kept = fill(*kern, w);
            std::fprintf(stderr, "bmc-floor: %llu of %llu items in the cache\n", (unsigned long long)kept,
                         (unsigned long long)w.keys);
            ideal = std::make_unique<bmc::bench::IdealFloor>(*kern);
            link = bpf_link_create(ideal->fd(), ifindex, BPF_XDP, nullptr);
            if (link < 0) throw bmc::Error("XDP attach to " + iface + " failed");
        } else {
            bmc::KernelOptions ko;
            ko.iface = iface;
            const bool afxdp_ideal = kind == "afxdp-ideal";
            if (afxdp_ideal) ko.max_age_ns = 3600ULL * 1000000000ULL;  // the items are never filled again
            kern = std::make_unique<bmc::KernelBackend>(ko);
            if (afxdp_ideal) {
                const std::uint64_t kept = fill(*kern, w);
                std::fprintf(stderr, "bmc-floor: %llu of %llu items in the cache\n", (unsigned long long)kept,
                             (unsigned long long)w.keys);
            }
            std::string notice;
            for (unsigned q = 0; q < bmc::rx_queue_count(iface); q++) {
                queues.push_back(std::make_unique<bmc::XskQueue>(iface, q, 4096, bmc::ZeroCopy::Auto, false, notice));
                if (xsk_socket__update_xskmap(queues.back()->socket(), kern->xsks_map_fd()))
                    throw bmc::Error("registering the AF_XDP socket of queue " + std::to_string(q));
            }
            for (auto &q : queues) {
                if (afxdp_ideal)
                    pollers.emplace_back(ideal_loop, std::ref(*q), std::cref(stop), std::cref(*kern), std::ref(afxdp_echoed),
                                         std::ref(afxdp_batches));
                else
                    pollers.emplace_back(echo_loop, std::ref(*q), std::cref(stop), std::ref(afxdp_echoed),
                                         std::ref(afxdp_batches));
            }
            kern->set_mode(BMC_MODE_AFXDP);
        }
    } catch (const bmc::Error &e) {
        std::fprintf(stderr, "bmc-floor: %s\n", e.what());
        return 1;
    }
    auto echoed = [&]() -> std::uint64_t {
        if (ideal) return ideal->answered();
        if (kern) return afxdp_echoed.load(std::memory_order_relaxed);
        return bmc::percpu_sum<bench_counters>(bpf_map__fd(skel->maps.bench_count), 0).echoed;
    };
    timespec tick{0, 200000000};
    for (;;) {
        int sig = sigtimedwait(&sigs, nullptr, &tick);
        std::ofstream f(stats_file + ".tmp");
        nlohmann::json j{{"kind", kind}, {"echoed", echoed()}};
        if (!queues.empty()) {
            j["rx_frames"] = afxdp_batches.frames.load(std::memory_order_relaxed);
            j["rx_batches"] = afxdp_batches.batches.load(std::memory_order_relaxed);
        }
        f << j.dump() << "\n";
        f.close();
        std::rename((stats_file + ".tmp").c_str(), stats_file.c_str());
        if (sig == SIGINT || sig == SIGTERM) break;
    }
    if (kern && !ideal) kern->set_mode(BMC_MODE_KERNEL);
    stop = true;
    for (auto &t : pollers) t.join();
    queues.clear();
    if (link >= 0) close(link);
    ideal.reset();
    kern.reset();
    if (skel) bmc_bench__destroy(skel);
    return 0;
}
