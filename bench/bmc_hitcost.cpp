// bmc-hitcost: what a cached get costs bmc_rx, by configuration, request shape and stage.
// Runs one cached get through bmc_rx with BPF_PROG_TEST_RUN, one run per call (a run
// rewrites the frame into its reply, so repeats would measure something else), under the
// kernel's own accounting (kernel.bpf_stats_enabled: run_time_ns / run_cnt), for every
// configuration loaded side by side and measured in interleaved rounds: the stack-delivery
// checks with and without memcached's socket looked up, the general scanner against the
// fast path, each request shape, the decision trace, and builds that stop after each
// stage of the hit (BMC_BENCH_STAGE, core/bmc_driver.h), whose differences say where a
// hit's time goes; beside them the floor of a hit (bench/bench_ideal.bpf.c), the AF_XDP
// poller's datapath (the core as C++) and the poller's floor of a hit (the same work in
// C++, bench/ideal_hit.hpp), each checked to reply as bmc_rx does. --spread
// cycles the single-key gets through many keys, so that their buckets leave the core's
// caches. Run it in the server namespace of a testbed: the host's addresses and
// the interface's MAC are read there, and a UDP socket on the port stands in for
// memcached's.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "afxdp_backend.hpp"
#include "frames.hpp"
#include "ideal_floor.hpp"
#include "ideal_hit.hpp"
#include "kernel_backend.hpp"

namespace {

using bmc::bench::Bytes;
using bmc::bench::frame;
using bmc::bench::IdealFloor;
using bmc::bench::kServer6;
using bmc::bench::Shape;

int run(int fd, Bytes in, Bytes *reply = nullptr) {
    Bytes out(4096);
    LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in.data(), .data_out = out.data(),
                .data_size_in = std::uint32_t(in.size()), .data_size_out = std::uint32_t(out.size()), .repeat = 1);
    if (bpf_prog_test_run_opts(fd, &o) != 0) return -1;
    if (reply) *reply = Bytes(out.begin(), out.begin() + o.data_size_out);
    return int(o.retval);
}

std::pair<std::uint64_t, std::uint64_t> stats(int fd) {
    bpf_prog_info info{};
    __u32 len = sizeof info;
    bpf_obj_get_info_by_fd(fd, &info, &len);
    return {info.run_time_ns, info.run_cnt};
}

}  // namespace

int main(int argc, char **argv) {
    CLI::App app{"bmc-hitcost: per-hit cost of bmc_rx's stack-delivery checks (run in a testbed's server namespace)"};
    std::string iface = "bmcs0", json_path;
    std::uint32_t runs = 100000, rounds = 5;
    app.add_option("-i,--iface", iface, "the interface whose MAC and host addresses the frames use");
    app.add_option("--runs", runs, "hits per configuration and round");
    app.add_option("--rounds", rounds, "interleaved rounds");
    app.add_option("--json", json_path, "write results here");
    std::uint32_t spread = 1, small_buckets = 1024, large_buckets = 64;
    app.add_option("--spread", spread,
                   "single-key gets cycle through this many keys (those the table keeps), so that in a table of bmcd's "
                   "default size each hit reads a bucket from beyond the core's own caches, as under the generator's workload")
        ->check(CLI::Range(1u, 1000000u))
        ->capture_default_str();
    const auto power_of_two = CLI::Validator(
        [](std::string &v) {
            const unsigned long n = std::stoul(v);
            return n && !(n & (n - 1)) && n <= (1u << 24) ? std::string() : "not a power of two up to 2^24";
        },
        "POWER OF TWO");
    app.add_option("--small-buckets", small_buckets, "the table's small buckets (bmcd's default: 16384)")
        ->check(power_of_two)
        ->capture_default_str();
    app.add_option("--large-buckets", large_buckets, "the table's large buckets (bmcd's default: 1024)")
        ->check(power_of_two)
        ->capture_default_str();
    std::string only;
    app.add_option("--only", only,
                   "measure only the configurations whose name contains one of these '|'-separated words (to profile one)");
    std::string variant_object;
    app.add_option("--variant", variant_object,
                   "also measure this build of bmc.bpf.c as 'variant' (the fast-path configuration) and 'variant: IPv6 get', to compare a change "
                   "in one run (the code's cost only: confirm under load with bench/harness.py --per-packet, since effects on the "
                   "packet's path, such as the headroom an answer leaves, do not show here)");
    std::string no_trace_object =
        (std::filesystem::read_symlink("/proc/self/exe").parent_path().parent_path() / "bpf" / "bmc_kern_no_trace.bpf.o")
            .string();
    app.add_option("--no-trace-object", no_trace_object,
                   "bmc.bpf.c built with the decision trace compiled out (bpf/bmc_kern_no_trace.bpf.o)")
        ->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    libbpf_set_print([](libbpf_print_level, const char *, va_list) { return 0; });

    std::string prev;
    std::getline(std::ifstream("/proc/sys/kernel/bpf_stats_enabled"), prev);
    std::ofstream("/proc/sys/kernel/bpf_stats_enabled") << "1";
    // memcached's stand-in: the socket bpf_sk_lookup_udp must find.
    int sock = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(11211);
    inet_pton(AF_INET, "198.18.0.1", &a.sin_addr);
    if (bind(sock, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
        std::perror("bmc-hitcost: bind 198.18.0.1:11211");
        return 1;
    }
    // Request shapes, each answered from the cache: their own configuration, loaded
    // side by side, every check on but the socket lookup (the testbed has no IPv6
    // socket for memcached).
    struct Config {
        std::string name;
        bool delivery, socket;
        std::unique_ptr<bmc::KernelBackend> be;
        std::vector<double> ns;
        bool general = false;
        std::vector<Bytes> gets;  // each run asks the next (one, or --spread single-key gets)
        std::vector<Bytes> fills;
        std::uint32_t trace_every = 0;  // the decision trace on: 1 get in this many recorded
        std::string object_file;        // a build variant instead of bmcd's object
        std::uint64_t sock_memo_ns = bmc::default_config().sock_memo_ns;
        bool ideal = false;                // the ideal-hit floor instead of bmc_rx
        std::unique_ptr<IdealFloor> floor;
        bool poller = false;               // the AF_XDP poller's datapath (C++) instead of bmc_rx
        bool ideal_poller = false;         // with poller: the ideal hit in C++ (ideal_hit.hpp) instead
        std::unique_ptr<bmc::Datapath> dp;
        int prog_fd() const { return floor ? floor->fd() : be->xdp_prog_fd(); }
    };
    // One get through a poller configuration: the backend's datapath, or the ideal hit.
    auto poller_answer = [](Config &c, std::uint8_t *frame, std::uint32_t &len, std::uint32_t room, std::uint64_t now) {
        if (c.ideal_poller) return bmc::bench::ideal_hit(c.be->cache(), c.be->config(), frame, len, room, now);
        return c.dp->ingress(frame, len, room, now).action == bmc::Action::Tx;
    };
    bmc::Delivery d = bmc::Delivery::of_interface(iface);
    d.vlans.push_back(10);
    {
        std::array<std::uint8_t, 16> a{};
        std::copy(kServer6.begin(), kServer6.end(), a.begin());
        d.local.emplace_back(a, BMC_LOCAL_UNICAST);
    }
    const std::string value(32, 'v');
    auto key = [](std::uint32_t i) {  // 16 bytes
        char k[32];
        std::snprintf(k, sizeof k, "hot-key-%08u", i);
        return std::string(k);
    };
    // n keys from key(first) on
    auto get_of = [&](std::uint32_t n, Shape sh, std::uint32_t first = 0) {
        std::string t = "get";
        for (std::uint32_t i = 0; i < n; i++) t += " " + key(first + i);
        return frame(d.mac, 0xC6120002u, 0xC6120001u, 40000, 11211, t + "\r\n", sh);
    };
    auto fill_of = [&](std::uint32_t n, std::uint32_t first = 0) {
        std::string t;
        for (std::uint32_t i = 0; i < n; i++) t += "VALUE " + key(first + i) + " 0 32\r\n" + value + "\r\n";
        return frame(d.mac, 0xC6120001u, 0xC6120002u, 11211, 40000, t + "END\r\n");
    };
    // Spread gets: the single-key configurations ask key(0) to key(spread - 1) in turn.
    const auto spread_out = [&](Config &c, Shape sh) {
        for (std::uint32_t k = 1; k < spread; k++) {
            c.gets.push_back(get_of(1, sh, k));
            c.fills.push_back(fill_of(1, k));
        }
    };
    std::vector<Config> cfgs;
    auto add = [&](std::string name, bool delivery, bool socket, bool general, std::uint32_t keys, Shape sh) {
        Config c;
        c.name = std::move(name);
        c.delivery = delivery;
        c.socket = socket;
        c.general = general;
        c.gets.push_back(get_of(keys, sh));
        c.fills.push_back(fill_of(keys));
        if (keys == 1) spread_out(c, sh);
        cfgs.push_back(std::move(c));
    };
    add("checks and socket lookup", true, true, false, 1, {});
    add("socket lookup on every hit (no memo)", true, true, false, 1, {});
    cfgs.back().sock_memo_ns = 0;
    add("checks without socket lookup", true, false, false, 1, {});
    add("no checks", false, false, false, 1, {});
    add("general scanner, checks and socket", true, true, true, 1, {});
    add("shape: get, 1 key (fast path)", true, false, false, 1, {});
    add("shape: get, 1 key, general scanner", true, false, true, 1, {});
    add("shape: get, 4 keys", true, false, false, 4, {});
    add("shape: get, 16 keys", true, false, false, 16, {});
    add("shape: VLAN-tagged get", true, false, false, 1, {10, false, false});
    add("shape: get with IPv4 options", true, false, false, 1, {-1, true, false});
    add("shape: IPv6 get", true, false, false, 1, {-1, false, true});
    // The decision trace: off in every configuration above (one load and one branch per
    // decision); on, every get or 1 in 64 recorded into the ring buffer (drained between
    // runs, outside the measured program time).
    add("trace on, every get", true, false, false, 1, {});
    cfgs.back().trace_every = 1;
    add("trace on, 1 get in 64", true, false, false, 1, {});
    cfgs.back().trace_every = 64;
    // Against "shape: get, 1 key (fast path)", the same with the trace off: what the
    // trace costs when nobody listens.
    add("trace compiled out", true, false, false, 1, {});
    cfgs.back().object_file = no_trace_object;
    // Where a hit's time goes: builds that answer unfinished after each stage of the hit
    // (core/bmc_driver.h, BMC_STAGE_*), the fast path's configuration otherwise; the
    // full program is "shape: get, 1 key (fast path)".
    const std::string of_all = " of " + std::to_string(bmc_hit_stage_names.size() + 1) + ": ";
    for (std::size_t stage = 1; stage <= bmc_hit_stage_names.size(); stage++) {
        add("stage " + std::to_string(stage) + of_all + std::string(bmc_hit_stage_names[stage - 1]), true, false, false, 1,
            {});
        cfgs.back().object_file = (std::filesystem::path(no_trace_object).parent_path() /
                                   ("bmc_kern_stage" + std::to_string(stage) + ".bpf.o"))
                                      .string();
    }
    // The floor: the least a program must do to answer this get from the same cache
    // (bench/bench_ideal.bpf.c), against "shape: get, 1 key (fast path)" and "no checks".
    add("floor: ideal hit", false, false, false, 1, {});
    cfgs.back().ideal = true;
    // The same gets through the AF_XDP poller's datapath: the core compiled as C++
    // (bmc::Datapath::ingress, configured as backends/afxdp runs it: the allowlist and the
    // delivery checks are bmc_rx's before it redirects) on the same cache memory, timed
    // by the clock around each round (a fresh copy of the request per run included).
    add("poller: get, 1 key (fast path)", true, false, false, 1, {});
    cfgs.back().poller = true;
    add("poller: get, 4 keys", true, false, false, 4, {});
    cfgs.back().poller = true;
    add("poller: IPv6 get", true, false, false, 1, {-1, false, true});
    cfgs.back().poller = true;
    // The poller's floor: bench/ideal_hit.hpp, the ideal hit's work in C++.
    add("poller floor: ideal hit", true, false, false, 1, {});
    cfgs.back().poller = cfgs.back().ideal_poller = true;
    if (!variant_object.empty()) {
        add("variant", true, false, false, 1, {});
        cfgs.back().object_file = variant_object;
        add("variant: IPv6 get", true, false, false, 1, {-1, false, true});
        cfgs.back().object_file = variant_object;
    }
    std::erase_if(cfgs, [&](const Config &c) {
        for (std::size_t from = 0;;) {
            const std::size_t bar = only.find('|', from);
            if (c.name.find(only.substr(from, bar - from)) != std::string::npos) return false;
            if (bar == std::string::npos) return true;
            from = bar + 1;
        }
    });
    if (cfgs.empty()) {
        std::fprintf(stderr, "bmc-hitcost: no configuration's name contains '%s'\n", only.c_str());
        return 2;
    }
    try {
        for (auto &c : cfgs) {
            bmc::KernelOptions o;
            o.attach = false;
            o.delivery = d;
            o.check_socket_unattached = true;
            o.check_socket = c.socket;
            o.sock_memo_ns = c.sock_memo_ns;
            o.check_delivery = c.delivery;
            o.general_only = c.general;
            o.object_file = c.object_file;
            o.small_buckets = small_buckets;
            o.large_buckets = large_buckets;
            o.max_age_ns = 3600ULL * 1000000000ULL;
            o.fill_guard_ns = 0;
            o.max_amp = 100;
            o.allow = bmc::Allowlist({bmc::Prefix::parse("198.18.0.0/15"), bmc::Prefix::parse("2001:2::/48")});
            c.be = std::make_unique<bmc::KernelBackend>(o);
            for (std::size_t k = 0; k < c.gets.size(); k++) {
                run(c.be->xdp_prog_fd(), c.gets[k]);   // miss: the leases
                run(c.be->tc_prog_fd(), c.fills[k]);   // memcached's reply fills
            }
            if (c.ideal || c.poller) {
                // The floor and the poller answer exactly as bmc_rx does, byte for byte.
                Bytes full_reply, reply = c.gets[0];
                bool answered;
                if (c.ideal) {
                    c.floor = std::make_unique<IdealFloor>(*c.be);
                    answered = run(c.floor->fd(), c.gets[0], &reply) == XDP_TX;
                } else {
                    c.dp = bmc::poller_datapath(*c.be);  // as the AF_XDP backend runs it
                    auto len = std::uint32_t(reply.size());
                    reply.resize(4096);
                    answered = poller_answer(c, reply.data(), len, std::uint32_t(reply.size()), bmc::monotonic_ns());
                    reply.resize(len);
                }
                if (!answered) throw bmc::Error(c.name + ": did not answer the get");
                if (run(c.be->xdp_prog_fd(), c.gets[0], &full_reply) != XDP_TX || full_reply != reply)
                    throw bmc::Error(c.name + ": its reply differs from bmc_rx's");
            }
            // Keys the table did not keep (more than a bucket's ways hashed there) are left out.
            std::vector<Bytes> kept{c.gets[0]};
            for (std::size_t k = 1; k < c.gets.size(); k++)
                if (run(c.prog_fd(), c.gets[k]) == XDP_TX) kept.push_back(std::move(c.gets[k]));
            c.gets = std::move(kept);
            if (run(c.prog_fd(), c.gets[0]) != XDP_TX) {
                std::string why;
                const auto k = c.be->read_counters();
                for (std::uint32_t i = 0; i < BMC_NUM_STATS; i++)
                    if (k[i]) why += " " + std::string(bmc_stat_names[i]) + "=" + std::to_string(k[i]);
                throw bmc::Error(c.name + ": the get is no hit (counters:" + why + ")");
            }
        }
        for (auto &c : cfgs) c.be->cache().global->trace_every = c.trace_every;
        for (std::uint32_t r = 0; r < rounds; r++) {
            for (auto &c : cfgs) {
                if (c.poller) {
                    Bytes buf(4096);
                    std::uint32_t hits = 0;
                    const std::uint64_t now = bmc::monotonic_ns();  // the poller reads it once per batch
                    const auto t0 = std::chrono::steady_clock::now();
                    for (std::uint32_t i = 0; i < runs; i++) {
                        const Bytes &g = c.gets[i % c.gets.size()];
                        std::memcpy(buf.data(), g.data(), g.size());
                        auto len = std::uint32_t(g.size());
                        hits += poller_answer(c, buf.data(), len, std::uint32_t(buf.size()), now);
                    }
                    const auto t1 = std::chrono::steady_clock::now();
                    if (hits != runs) throw bmc::Error(c.name + ": not every run was a hit");
                    c.ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / runs);
                    continue;
                }
                const int fd = c.prog_fd();
                ring_buffer *ring = c.trace_every ? ring_buffer__new(c.be->trace_ring_fd(),
                                                                     [](void *, void *, std::size_t) { return 0; },
                                                                     nullptr, nullptr)
                                                  : nullptr;
                auto [t0, n0] = stats(fd);
                std::uint32_t hits = 0;
                for (std::uint32_t i = 0; i < runs; i++) {
                    hits += run(fd, c.gets[i % c.gets.size()]) == XDP_TX;
                    if (ring) ring_buffer__consume(ring);
                }
                if (ring) ring_buffer__free(ring);
                auto [t1, n1] = stats(fd);
                if (hits != runs) throw bmc::Error(c.name + ": not every run was a hit");
                c.ns.push_back(double(t1 - t0) / double(n1 - n0));
            }
        }
    } catch (const bmc::Error &e) {
        std::ofstream("/proc/sys/kernel/bpf_stats_enabled") << prev;
        std::fprintf(stderr, "bmc-hitcost: %s\n", e.what());
        return 1;
    }
    std::ofstream("/proc/sys/kernel/bpf_stats_enabled") << prev;
    nlohmann::json j;
    for (auto &c : cfgs) {
        auto v = c.ns;
        std::sort(v.begin(), v.end());
        j[c.name] = {{"ns_per_hit_rounds", c.ns}, {"median_ns_per_hit", v[v.size() / 2]}, {"keys", c.gets.size()}};
        std::printf("%-38s median %.0f ns per hit (rounds:", c.name.c_str(), v[v.size() / 2]);
        for (double x : c.ns) std::printf(" %.0f", x);
        std::printf(")\n");
    }
    j["note"] = "bmc_rx run_time_ns / run_cnt under kernel.bpf_stats_enabled, which adds its own ~70 ns per run to each";
    if (!json_path.empty()) std::ofstream(json_path) << j.dump(1) << "\n";
    return 0;
}
