// bmc-xdpgen: the in-kernel load generator and reply checker. Runs on the client host (or
// in the client namespace of a testbed). It attaches bench_client to the client's
// interface, then injects GET requests with BPF_PROG_RUN and live frames
// (BPF_F_TEST_XDP_LIVE_FRAMES, the mechanism of xdp-trafficgen); each run of the program
// rebuilds a request and sends it with XDP_TX. Replies come back to the same program,
// which checks each against the exact bytes expected for its request id and records the
// round trip from the generator's own timestamp.
//
// A plan: N capacity runs (as fast as the generator goes), then paced runs (open loop) at
// fractions of the median capacity for latency, each after a warm-up.
#include <arpa/inet.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "client_prog.hpp"
#include "zipf.hpp"

using namespace bmc::bench;

namespace {

bool parse_mac(const std::string &s, Mac &out) {
    unsigned v[6];
    char extra;
    if (std::sscanf(s.c_str(), "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &extra) != 6)
        return false;
    for (int i = 0; i < 6; i++) {
        if (v[i] > 255) return false;
        out[i] = std::uint8_t(v[i]);
    }
    return true;
}

bool iface_mac(const std::string &iface, Mac &mac) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, iface.c_str(), IFNAMSIZ - 1);
    bool ok = s >= 0 && ioctl(s, SIOCGIFHWADDR, &ifr) == 0;
    if (ok) std::memcpy(mac.data(), ifr.ifr_hwaddr.sa_data, 6);
    if (s >= 0) close(s);
    return ok;
}

bool iface_ipv4(const std::string &iface, std::uint32_t &addr) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, iface.c_str(), IFNAMSIZ - 1);
    bool ok = s >= 0 && ioctl(s, SIOCGIFADDR, &ifr) == 0;
    if (ok) addr = reinterpret_cast<sockaddr_in *>(&ifr.ifr_addr)->sin_addr.s_addr;
    if (s >= 0) close(s);
    return ok;
}

// Busy time of a CPU from /proc/stat (everything but idle and iowait), in ticks.
struct CpuTimes {
    std::uint64_t busy = 0, total = 0;
};

std::vector<CpuTimes> cpu_times() {
    std::vector<CpuTimes> out;
    std::ifstream f("/proc/stat");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("cpu", 0) != 0 || line.size() < 4 || !std::isdigit(static_cast<unsigned char>(line[3]))) continue;
        std::istringstream in(line.substr(line.find(' ')));
        std::uint64_t v[8] = {};
        for (auto &x : v) in >> x;
        CpuTimes t;
        for (int i = 0; i < 8; i++) t.total += v[i];
        t.busy = t.total - v[3] - v[4];
        out.push_back(t);
    }
    return out;
}

struct Run {
    std::string kind;  // capacity or paced
    double target_rps = 0, elapsed_s = 0;
    ClientSnapshot d;
    std::vector<double> cpu_busy;
    std::uint64_t calls = 0;
    double call_us_mean = 0, call_us_max = 0;
    int failures = 0;
    std::uint64_t lagged = 0;
    std::uint64_t prog_runs = 0, prog_ns = 0;  // bench_client's own accounting
};

class Generator {
public:
    Generator(ClientProgram &prog, int ifindex, unsigned threads) : prog_(prog), ifindex_(ifindex), threads_(threads) {}

    // rate 0: as fast as possible. Otherwise open loop at rate requests/s over all threads.
    Run run(double seconds, double rate) {
        Run r;
        r.kind = rate > 0 ? "paced" : "capacity";
        r.target_rps = rate;
        std::atomic<bool> stop{false};
        std::atomic<int> failures{0};
        std::vector<std::uint64_t> calls(threads_), call_ns(threads_), call_max(threads_);
        prog_.set_pace(rate / threads_);
        const std::uint64_t lagged0 = prog_.lagged();
        const auto before = prog_.snapshot();
        const auto info0 = prog_info();
        const auto cpu0 = cpu_times();
        const std::uint64_t t0 = bmc::monotonic_ns();
        std::vector<std::thread> gens;
        for (unsigned i = 0; i < threads_; i++)
            gens.emplace_back([&, i] {
                cpu_set_t set;
                CPU_ZERO(&set);
                CPU_SET(i, &set);
                pthread_setaffinity_np(pthread_self(), sizeof set, &set);
                // Capacity: 4,096 frames per call, in batches of 64. Paced: the program keeps
                // the time itself (see bench_pace), so a call spins through 65,536 runs in
                // batches of 16 and sends those that are due. Each call sets up and tears
                // down a page pool, which is why calls are long.
                const std::uint32_t batch = rate > 0 ? 16 : 64;
                const int repeat = rate > 0 ? 65536 : 4096;
                xdp_md ctx{};
                ctx.data = ClientProgram::kMetaLen;
                ctx.data_end = std::uint32_t(prog_.run_input().size());
                ctx.ingress_ifindex = std::uint32_t(ifindex_);
                while (!stop.load(std::memory_order_relaxed)) {
                    LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = prog_.run_input().data(),
                                .data_size_in = std::uint32_t(prog_.run_input().size()),
                                .ctx_in = &ctx, .ctx_size_in = sizeof ctx, .repeat = repeat,
                                .flags = BPF_F_TEST_XDP_LIVE_FRAMES, .batch_size = batch);
                    const std::uint64_t c0 = bmc::monotonic_ns();
                    if (bpf_prog_test_run_opts(prog_.prog_fd(), &o)) {
                        failures++;
                        break;
                    }
                    const std::uint64_t dt = bmc::monotonic_ns() - c0;
                    calls[i]++;
                    call_ns[i] += dt;
                    call_max[i] = std::max(call_max[i], dt);
                }
            });
        std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
        stop = true;
        for (auto &g : gens) g.join();
        r.elapsed_s = double(bmc::monotonic_ns() - t0) / 1e9;
        const auto cpu1 = cpu_times();
        std::this_thread::sleep_for(std::chrono::milliseconds(30));  // replies in flight
        r.d = prog_.snapshot() - before;
        const auto info1 = prog_info();
        r.prog_runs = info1.run_cnt - info0.run_cnt;
        r.prog_ns = info1.run_time_ns - info0.run_time_ns;
        for (unsigned i = 0; i < threads_ && i < cpu0.size() && i < cpu1.size(); i++) {
            const double total = double(cpu1[i].total - cpu0[i].total);
            r.cpu_busy.push_back(total > 0 ? double(cpu1[i].busy - cpu0[i].busy) / total : 0);
        }
        std::uint64_t ns = 0, mx = 0;
        for (unsigned i = 0; i < threads_; i++) r.calls += calls[i], ns += call_ns[i], mx = std::max(mx, call_max[i]);
        r.call_us_mean = r.calls ? double(ns) / double(r.calls) / 1e3 : 0;
        r.call_us_max = double(mx) / 1e3;
        r.failures = failures.load();
        r.lagged = prog_.lagged() - lagged0;
        return r;
    }

private:
    // run_time_ns and run_cnt count only while kernel.bpf_stats_enabled is on.
    bpf_prog_info prog_info() const {
        bpf_prog_info info{};
        std::uint32_t len = sizeof info;
        bpf_obj_get_info_by_fd(prog_.prog_fd(), &info, &len);
        return info;
    }

    ClientProgram &prog_;
    int ifindex_;
    unsigned threads_;
};

nlohmann::json to_json(const Run &r) {
    const auto &c = r.d.c;
    const double e = r.elapsed_s;
    nlohmann::json j = {{"kind", r.kind},
                        {"elapsed_s", e},
                        {"sent", c.generated},
                        {"datagrams", c.datagrams},
                        {"answered", c.answered},
                        {"wrong", c.wrong},
                        {"missed", c.missed},
                        {"incomplete", c.incomplete},
                        {"unexpected", c.unexpected},
                        {"bad_header", c.bad_header},
                        {"unanswered", c.generated - std::min(c.generated, c.answered + c.wrong + c.missed + c.incomplete)},
                        {"sent_rps", double(c.generated) / e},
                        {"answer_rps", double(c.answered) / e},
                        {"generator_cpu_busy", r.cpu_busy},
                        {"calls", r.calls},
                        {"call_us_mean", r.call_us_mean},
                        {"call_us_max", r.call_us_max},
                        {"failures", r.failures}};
    if (r.prog_runs)
        j["client_prog"] = {{"runs", r.prog_runs}, {"ns_per_run", double(r.prog_ns) / double(r.prog_runs)}};
    if (r.kind == "paced") {
        j["target_rps"] = r.target_rps;
        j["lagged"] = r.lagged;
        nlohmann::json hist = nlohmann::json::array();
        for (std::uint32_t b = 0; b < BENCH_HIST_BUCKETS; b++)
            if (r.d.hist[b]) hist.push_back({bench_hist_lower(b + 1) - 1, r.d.hist[b]});
        j["latency_ns"] = {{"count", r.d.latency_count()},
                           {"p50", r.d.quantile(0.5)},
                           {"p90", r.d.quantile(0.9)},
                           {"p99", r.d.quantile(0.99)},
                           {"p999", r.d.quantile(0.999)},
                           {"histogram", hist}};
    }
    return j;
}

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int main(int argc, char **argv) {
    CLI::App app{"bmc-xdpgen: in-kernel GET generator and reply checker (BPF_PROG_RUN, live frames).\n"
                 "Runs on the client: --iface is the client's interface, --server-ip and --server-mac\n"
                 "name the server (its MAC, or the next hop's)."};
    app.get_formatter()->column_width(36);
    std::string iface, server_mac_s, server_ip_s, client_ip_s, json_path, expect = "memcached";
    ClientConfig cfg;
    double duration = 2, warmup = 0.5;
    unsigned runs = 1;
    std::vector<double> latency_at, rates;
    app.add_option("-i,--iface", iface, "the client's interface")->required();
    app.add_option("--server-ip", server_ip_s, "memcached's (or the echo's) IPv4 address")->required();
    app.add_option("--server-mac", server_mac_s, "the server's MAC, or the next hop's")->required();
    app.add_option("--client-ip", client_ip_s, "source address (default: --iface's IPv4 address)");
    app.add_option("-p,--port", cfg.port, "memcached's UDP port")->capture_default_str();
    app.add_option("--src-port", cfg.gen_port,
                   "the first of the generator's " + std::to_string(BENCH_PORTS) + " UDP source ports")
        ->check(CLI::Range(1, 65536 - BENCH_PORTS))
        ->capture_default_str();
    app.add_option("-k,--keys", cfg.w.keys, "key count (preloaded with bmc-bench --preload)")
        ->check(CLI::Range(std::uint64_t(1), std::uint64_t(100000000)))
        ->capture_default_str();
    app.add_option("--zipf", cfg.w.zipf_s, "Zipf exponent of key popularity (0: uniform)")->capture_default_str();
    app.add_option("--key-size", cfg.w.key_size, "key length")->check(CLI::Range(8, 31))->capture_default_str();
    app.add_option("--value-size", cfg.w.value_size, "value length (as preloaded)")
        ->check(CLI::Range(1, 1300))
        ->capture_default_str();
    app.add_option("-w,--multiget", cfg.w.width, "keys per get")->check(CLI::Range(1, 30))->capture_default_str();
    app.add_option("--expect", expect, "memcached: replies are memcached's answers; echo: the requests bounced")
        ->check(CLI::IsMember({"memcached", "echo"}))
        ->capture_default_str();
    app.add_option("-d,--duration", duration, "seconds per run")->check(CLI::Range(0.05, 600.0))->capture_default_str();
    app.add_option("--warmup", warmup, "seconds of load before every run, not counted")
        ->check(CLI::Range(0.0, 60.0))
        ->capture_default_str();
    app.add_option("--runs", runs, "capacity runs")->check(CLI::Range(0u, 100u))->capture_default_str();
    app.add_option("--latency-at", latency_at, "paced runs at these fractions of the median capacity")
        ->check(CLI::Range(0.001, 2.0))
        ->delimiter(',');
    app.add_option("--rate", rates, "paced runs at these rates (requests/s, all threads together)")
        ->check(CLI::Range(1.0, 1e9))
        ->delimiter(',');
    app.add_option("-t,--threads", cfg.threads, "generator threads, thread i pinned to CPU i")
        ->check(CLI::Range(1u, 64u))
        ->capture_default_str();
    app.add_option("--json", json_path, "write the results here");
    CLI11_PARSE(app, argc, argv);

    cfg.echo = expect == "echo";
    if (cfg.w.key_size < key_digits_min(cfg.w.keys)) {
        std::fprintf(stderr, "bmc-xdpgen: --key-size %u is too small for %llu keys\n", cfg.w.key_size,
                     (unsigned long long)cfg.w.keys);
        return 2;
    }
    if (cfg.threads > std::thread::hardware_concurrency()) {
        std::fprintf(stderr, "bmc-xdpgen: %u threads but %u CPUs\n", cfg.threads, std::thread::hardware_concurrency());
        return 2;
    }
    if (!parse_mac(server_mac_s, cfg.server_mac)) {
        std::fprintf(stderr, "bmc-xdpgen: --server-mac '%s' is not a MAC address\n", server_mac_s.c_str());
        return 2;
    }
    if (inet_pton(AF_INET, server_ip_s.c_str(), &cfg.server_ip) != 1) {
        std::fprintf(stderr, "bmc-xdpgen: --server-ip '%s' is not an IPv4 address\n", server_ip_s.c_str());
        return 2;
    }
    const int ifindex = int(if_nametoindex(iface.c_str()));
    if (!ifindex) {
        std::fprintf(stderr, "bmc-xdpgen: interface '%s' not found\n", iface.c_str());
        return 2;
    }
    if (!iface_mac(iface, cfg.client_mac)) {
        std::fprintf(stderr, "bmc-xdpgen: cannot read the MAC address of %s\n", iface.c_str());
        return 2;
    }
    if (client_ip_s.empty() ? !iface_ipv4(iface, cfg.client_ip)
                            : inet_pton(AF_INET, client_ip_s.c_str(), &cfg.client_ip) != 1) {
        std::fprintf(stderr, "bmc-xdpgen: %s\n",
                     client_ip_s.empty() ? ("no IPv4 address on " + iface + "; give --client-ip").c_str()
                                         : "--client-ip is not an IPv4 address");
        return 2;
    }

    // The key sequence: a sample of the workload's distribution.
    std::vector<std::uint64_t> seq(BENCH_IDS);
    Zipf zipf(cfg.w.keys, cfg.w.zipf_s);
    std::mt19937_64 rng(42);
    for (auto &k : seq) k = zipf(rng);

    std::unique_ptr<ClientProgram> prog;
    try {
        prog = std::make_unique<ClientProgram>(cfg, seq);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "bmc-xdpgen: %s\n", e.what());
        return 1;
    }
    int link = bpf_link_create(prog->prog_fd(), ifindex, BPF_XDP, nullptr);
    if (link < 0) {
        std::fprintf(stderr, "bmc-xdpgen: cannot attach to %s: %s (detach its XDP program first)\n", iface.c_str(),
                     std::strerror(errno));
        return 1;
    }

    Generator gen(*prog, ifindex, cfg.threads);
    nlohmann::json out = {{"generator", "xdp-live-frames"},
                          {"threads", cfg.threads},
                          {"keys", cfg.w.keys},
                          {"zipf", cfg.w.zipf_s},
                          {"key_size", cfg.w.key_size},
                          {"value_size", cfg.w.value_size},
                          {"multiget", cfg.w.width},
                          {"expect", expect},
                          {"reply_item_bytes", prog->item_len()},
                          {"capacity", nlohmann::json::array()},
                          {"latency", nlohmann::json::array()}};
    int failures = 0;
    std::vector<double> caps;
    for (unsigned i = 0; i < runs && !failures; i++) {
        if (warmup > 0) gen.run(warmup, 0);
        Run r = gen.run(duration, 0);
        failures += r.failures;
        caps.push_back(double(r.d.c.answered) / r.elapsed_s);
        out["capacity"].push_back(to_json(r));
        std::fprintf(stderr, "bmc-xdpgen: capacity: sent %.0f/s, answered %.0f/s (wrong %llu, missed %llu), "
                     "generator CPU %.0f %% busy, %.0f us per call\n",
                     double(r.d.c.generated) / r.elapsed_s, caps.back(), (unsigned long long)r.d.c.wrong,
                     (unsigned long long)r.d.c.missed, r.cpu_busy.empty() ? 0.0 : 100 * r.cpu_busy[0], r.call_us_mean);
    }
    const double cap = median(caps);
    out["capacity_rps"] = cap;
    std::vector<std::pair<double, double>> paced;  // (fraction of capacity or 0, rate)
    for (double frac : latency_at)
        if (cap > 0) paced.emplace_back(frac, frac * cap);
    for (double rate : rates) paced.emplace_back(0, rate);
    for (auto [frac, rate] : paced) {
        if (warmup > 0) gen.run(warmup, rate);
        Run r = gen.run(duration, rate);
        failures += r.failures;
        auto j = to_json(r);
        if (frac > 0) j["fraction"] = frac;
        out["latency"].push_back(j);
        std::fprintf(stderr, "bmc-xdpgen: paced at %.0f %% of capacity (%.0f/s): answered %.0f/s, p50 %.1f us, p99 %.1f us\n",
                     100 * frac, rate, double(r.d.c.answered) / r.elapsed_s, double(r.d.quantile(0.5)) / 1e3,
                     double(r.d.quantile(0.99)) / 1e3);
    }
    close(link);
    out["failures"] = failures;
    if (!json_path.empty()) {
        std::ofstream f(json_path);
        f << out.dump() << "\n";
        if (!f) {
            std::fprintf(stderr, "bmc-xdpgen: cannot write %s\n", json_path.c_str());
            return 1;
        }
    }
    return failures ? 1 : 0;
}
