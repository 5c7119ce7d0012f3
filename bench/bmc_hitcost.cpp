// bmc-hitcost: what the stack-delivery checks and the fast path change per hit. Runs one cached get through
// bmc_rx with BPF_PROG_TEST_RUN, one run per call (a run rewrites the frame into its
// reply, so repeats would measure something else), under the kernel's own accounting
// (kernel.bpf_stats_enabled: run_time_ns / run_cnt), for four configurations loaded side
// by side and measured in interleaved rounds: every check with memcached's socket looked
// up (bpf_sk_lookup_udp), the checks without the socket lookup, no checks, and every
// check with the fast path for "get <key>" off (the general scanner). Run it in
// the server namespace of a testbed: the host's addresses and the interface's MAC are read
// there, and a UDP socket on the port stands in for memcached's.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kernel_backend.hpp"

namespace {

using Bytes = std::vector<std::uint8_t>;

void put16(Bytes &b, std::size_t off, std::uint16_t v) {
    b[off] = std::uint8_t(v >> 8);
    b[off + 1] = std::uint8_t(v);
}

// Ethernet/IPv4/UDP with memcached's frame header; UDP checksum 0 (none, valid over IPv4).
Bytes frame(const std::array<std::uint8_t, 6> &dst_mac, std::uint32_t src, std::uint32_t dst, std::uint16_t sport,
            std::uint16_t dport, const std::string &text) {
    Bytes f(14 + 20 + 8 + 8);
    std::copy(dst_mac.begin(), dst_mac.end(), f.begin());
    f[6] = 0x02, f[11] = 0x02;
    put16(f, 12, 0x0800);
    f[14] = 0x45;
    put16(f, 16, std::uint16_t(20 + 8 + 8 + text.size()));
    f[22] = 64;
    f[23] = 17;
    put16(f, 26, std::uint16_t(src >> 16)), put16(f, 28, std::uint16_t(src));
    put16(f, 30, std::uint16_t(dst >> 16)), put16(f, 32, std::uint16_t(dst));
    std::uint16_t c = bmc::ipv4_header_checksum(f.data() + 14, 20);
    std::memcpy(f.data() + 24, &c, 2);
    put16(f, 34, sport), put16(f, 36, dport), put16(f, 38, std::uint16_t(8 + 8 + text.size()));
    f[42] = 0x12, f[43] = 0x34, f[47] = 1;  // request id, sequence 0 of 1
    f.insert(f.end(), text.begin(), text.end());
    return f;
}

int run(int fd, Bytes in) {
    Bytes out(4096);
    LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in.data(), .data_out = out.data(),
                .data_size_in = std::uint32_t(in.size()), .data_size_out = std::uint32_t(out.size()), .repeat = 1);
    return bpf_prog_test_run_opts(fd, &o) == 0 ? int(o.retval) : -1;
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
    struct Config {
        const char *name;
        bool delivery, socket;
        std::unique_ptr<bmc::KernelBackend> be;
        std::vector<double> ns;
        bool general = false;
    };
    std::vector<Config> cfgs;
    cfgs.push_back({"checks and socket lookup", true, true, nullptr, {}});
    cfgs.push_back({"checks without socket lookup", true, false, nullptr, {}});
    cfgs.push_back({"no checks", false, false, nullptr, {}});
    cfgs.push_back({"general scanner, checks and socket", true, true, nullptr, {}});
    cfgs.back().general = true;
    const bmc::Delivery d = bmc::Delivery::of_interface(iface);
    const std::string value(32, 'v');
    const Bytes get = frame(d.mac, 0xC6120002u, 0xC6120001u, 40000, 11211, "get hot-key-0123456\r\n");
    const Bytes reply = frame(d.mac, 0xC6120001u, 0xC6120002u, 11211, 40000,
                              "VALUE hot-key-0123456 0 32\r\n" + value + "\r\nEND\r\n");
    try {
        for (auto &c : cfgs) {
            bmc::KernelOptions o;
            o.attach = false;
            o.delivery = d;
            o.check_socket_unattached = true;
            o.check_socket = c.socket;
            o.check_delivery = c.delivery;
            o.general_only = c.general;
            o.small_buckets = 1024;
            o.large_buckets = 64;
            o.max_age_ns = 3600ULL * 1000000000ULL;
            o.fill_guard_ns = 0;
            c.be = std::make_unique<bmc::KernelBackend>(o);
            run(c.be->xdp_prog_fd(), get);         // miss: a lease
            run(c.be->tc_prog_fd(), reply);        // memcached's reply fills
            if (run(c.be->xdp_prog_fd(), get) != XDP_TX) throw bmc::Error(std::string(c.name) + ": the get is no hit");
        }
        for (std::uint32_t r = 0; r < rounds; r++) {
            for (auto &c : cfgs) {
                const int fd = c.be->xdp_prog_fd();
                auto [t0, n0] = stats(fd);
                std::uint32_t hits = 0;
                for (std::uint32_t i = 0; i < runs; i++) hits += run(fd, get) == XDP_TX;
                auto [t1, n1] = stats(fd);
                if (hits != runs) throw bmc::Error(std::string(c.name) + ": not every run was a hit");
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
        j[c.name] = {{"ns_per_hit_rounds", c.ns}, {"median_ns_per_hit", v[v.size() / 2]}};
        std::printf("%-30s median %.0f ns per hit (rounds:", c.name, v[v.size() / 2]);
        for (double x : c.ns) std::printf(" %.0f", x);
        std::printf(")\n");
    }
    j["note"] = "bmc_rx run_time_ns / run_cnt under kernel.bpf_stats_enabled, which adds its own ~70 ns per run to each";
    if (!json_path.empty()) std::ofstream(json_path) << j.dump(1) << "\n";
    return 0;
}
