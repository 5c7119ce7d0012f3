// bmc-xdpgen: capacity measurement with an in-kernel generator. Run inside the client
// namespace. It attaches a sink to the client end of the veth (replies are counted and
// dropped there), then injects GET requests with BPF_PROG_RUN and live frames
// (BPF_F_TEST_XDP_LIVE_FRAMES, the mechanism of xdp-trafficgen): each run of the
// generator program rebuilds a request and sends it with XDP_TX to the server end.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <vector>

#include "bmc_bench.skel.h"
#include "datapath.hpp"
#include "workload.hpp"
#include "zipf.hpp"

using namespace bmc::bench;

namespace {

constexpr std::uint32_t kMaxFrame = 1024, kMaxWidth = 32, kKeyMax = 32, kSeq = 65536;

struct Template {  // mirrors struct gen_template in bench.bpf.c
    std::uint8_t bytes[kMaxFrame];
    std::uint32_t len, width, key_len, id_off;
    std::uint32_t key_off[kMaxWidth];
};

bool parse_mac(const std::string &s, std::uint8_t *out) {
    unsigned v[6];
    if (std::sscanf(s.c_str(), "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) return false;
    for (int i = 0; i < 6; i++) out[i] = std::uint8_t(v[i]);
    return true;
}

void put16(std::uint8_t *p, std::uint16_t v) {
    p[0] = std::uint8_t(v >> 8);
    p[1] = std::uint8_t(v);
}

std::uint64_t sum_count(bmc_bench *skel, std::uint32_t key) {
    std::vector<std::uint64_t> v(static_cast<std::size_t>(libbpf_num_possible_cpus()));
    std::uint64_t s = 0;
    if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.bench_count), &key, v.data()) == 0)
        for (auto x : v) s += x;
    return s;
}

}  // namespace

int main(int argc, char **argv) {
    CLI::App app{"bmc-xdpgen: in-kernel GET generator (BPF_PROG_RUN, live frames)"};
    std::string iface = "bmcc0", dst_mac_s, src_ip = "198.18.0.2", dst_ip = "198.18.0.1", json_path;
    Workload w;
    double duration = 5;
    unsigned threads = 1;
    int port = 11211;
    app.add_option("-i,--iface", iface, "client end of the veth");
    app.add_option("--dst-mac", dst_mac_s, "MAC address of the server end")->required();
    app.add_option("--src-ip", src_ip);
    app.add_option("--dst-ip", dst_ip);
    app.add_option("-p,--port", port);
    app.add_option("-k,--keys", w.keys)->check(CLI::Range(std::uint64_t(1), std::uint64_t(100000000)));
    app.add_option("--zipf", w.zipf_s);
    app.add_option("--key-size", w.key_size)->check(CLI::Range(8, 31));
    app.add_option("-w,--multiget", w.width)->check(CLI::Range(1, 30));
    app.add_option("-d,--duration", duration)->check(CLI::Range(0.1, 600.0));
    app.add_option("-t,--threads", threads, "generator threads, one per CPU")->check(CLI::Range(1, 64));
    app.add_option("--json", json_path);
    CLI11_PARSE(app, argc, argv);
    if (w.key_size < key_digits_min(w.keys)) {
        std::fprintf(stderr, "bmc-xdpgen: --key-size too small for %llu keys\n", (unsigned long long)w.keys);
        return 2;
    }

    int ifindex = int(if_nametoindex(iface.c_str()));
    if (!ifindex) {
        std::fprintf(stderr, "bmc-xdpgen: interface '%s' not found\n", iface.c_str());
        return 1;
    }
    bmc_bench *skel = bmc_bench__open();
    if (!skel) return 1;
    skel->rodata->bench_port = std::uint16_t(port);
    if (bmc_bench__load(skel)) {
        std::fprintf(stderr, "bmc-xdpgen: loading the generator failed\n");
        return 1;
    }

    // The request template: Ethernet, IPv4, UDP, memcached frame header, get line.
    Template t{};
    std::uint8_t *f = t.bytes;
    if (!parse_mac(dst_mac_s, f)) {
        std::fprintf(stderr, "bmc-xdpgen: bad --dst-mac\n");
        return 2;
    }
    {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        ifreq ifr{};
        std::strncpy(ifr.ifr_name, iface.c_str(), IFNAMSIZ - 1);
        if (ioctl(s, SIOCGIFHWADDR, &ifr) == 0) std::memcpy(f + 6, ifr.ifr_hwaddr.sa_data, 6);
        close(s);
    }
    put16(f + 12, 0x0800);
    std::vector<std::uint64_t> placeholder(w.width, 1);
    std::string payload = get_request(0, placeholder, w);
    const std::uint32_t l4 = 14 + 20, len = l4 + 8 + std::uint32_t(payload.size());
    if (len >= kMaxFrame) {
        std::fprintf(stderr, "bmc-xdpgen: request too large for the template\n");
        return 2;
    }
    f[14] = 0x45;
    put16(f + 16, std::uint16_t(20 + 8 + payload.size()));
    put16(f + 20, 0x4000);
    f[22] = 64;
    f[23] = 17;
    inet_pton(AF_INET, src_ip.c_str(), f + 26);
    inet_pton(AF_INET, dst_ip.c_str(), f + 30);
    std::uint16_t c = bmc::ipv4_header_checksum(f + 14, 20);
    std::memcpy(f + 24, &c, 2);
    put16(f + l4, 40000);
    put16(f + l4 + 2, std::uint16_t(port));
    put16(f + l4 + 4, std::uint16_t(8 + payload.size()));
    std::memcpy(f + l4 + 8, payload.data(), payload.size());
    t.len = len;
    t.width = w.width;
    t.key_len = w.key_size;
    t.id_off = l4 + 8;
    for (unsigned i = 0; i < w.width; i++) t.key_off[i] = l4 + 8 + 8 + 4 + i * (w.key_size + 1);
    std::uint32_t zero = 0;
    if (bpf_map_update_elem(bpf_map__fd(skel->maps.gen_tmpl), &zero, &t, 0)) return 1;

    // The key sequence: a sample of the workload's distribution.
    Zipf zipf(w.keys, w.zipf_s);
    std::mt19937_64 rng(42);
    for (std::uint32_t i = 0; i < kSeq; i++) {
        std::uint8_t name[kKeyMax] = {};
        std::string k = key_name(w, zipf(rng));
        std::memcpy(name, k.data(), k.size());
        if (bpf_map_update_elem(bpf_map__fd(skel->maps.gen_keys), &i, name, 0)) return 1;
    }

    int sink = bpf_link_create(bpf_program__fd(skel->progs.bench_sink), ifindex, BPF_XDP, nullptr);
    if (sink < 0) {
        std::fprintf(stderr, "bmc-xdpgen: cannot attach the sink to %s (detach its XDP program first)\n",
                     iface.c_str());
        return 1;
    }

    std::atomic<bool> stop{false};
    std::atomic<int> failures{0};
    const std::uint64_t t0 = bmc::monotonic_ns();
    std::vector<std::thread> gens;
    for (unsigned i = 0; i < threads; i++)
        gens.emplace_back([&, i] {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(i % std::thread::hardware_concurrency(), &set);
            pthread_setaffinity_np(pthread_self(), sizeof set, &set);
            xdp_md ctx{};
            ctx.data_end = t.len;
            ctx.ingress_ifindex = std::uint32_t(ifindex);
            while (!stop.load()) {
                LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = t.bytes, .data_size_in = t.len, .ctx_in = &ctx,
                            .ctx_size_in = sizeof ctx, .repeat = 1 << 14, .flags = BPF_F_TEST_XDP_LIVE_FRAMES,
                            .batch_size = 64);
                if (bpf_prog_test_run_opts(bpf_program__fd(skel->progs.bench_gen), &o)) {
                    failures++;
                    break;
                }
            }
        });
    std::this_thread::sleep_for(std::chrono::duration<double>(duration));
    stop = true;
    for (auto &g : gens) g.join();
    const double elapsed = double(bmc::monotonic_ns() - t0) / 1e9;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // replies in flight
    const std::uint64_t sent = sum_count(skel, 0), replies = sum_count(skel, 1), answers = sum_count(skel, 2);
    close(sink);
    bmc_bench__destroy(skel);

    nlohmann::json j = {{"generator", "xdp-live-frames"}, {"threads", threads}, {"keys", w.keys},
                        {"zipf", w.zipf_s}, {"key_size", w.key_size}, {"multiget", w.width},
                        {"elapsed_s", elapsed}, {"sent", sent}, {"replies", replies},
                        {"answers", answers}, {"sent_rps", double(sent) / elapsed},
                        {"reply_rps", double(replies) / elapsed}, {"answer_rps", double(answers) / elapsed},
                        {"failures", failures.load()}};
    if (!json_path.empty()) std::ofstream(json_path) << j.dump() << "\n";
    std::fprintf(stderr, "bmc-xdpgen: sent %.0f req/s; %.0f reply datagrams/s, %.0f complete answers/s\n",
                 double(sent) / elapsed, double(replies) / elapsed, double(answers) / elapsed);
    return failures ? 1 : 0;
}
