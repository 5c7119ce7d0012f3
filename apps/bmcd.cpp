// bmcd: runs the bmc cache in front of memcached on one interface until SIGINT/SIGTERM.
#include <bpf/libbpf.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "kernel_backend.hpp"

namespace {

bool g_verbose = false;

// Without --verbose, libbpf stays quiet: failures reach the user as one-line errors.
int libbpf_log(enum libbpf_print_level, const char *fmt, va_list args) {
    return g_verbose ? std::vfprintf(stderr, fmt, args) : 0;
}

nlohmann::json counters_json(const bmc::Counters &c) {
    nlohmann::json j;
    for (std::uint32_t i = 0; i < BMC_NUM_STATS; i++) j[std::string(bmc_stat_names[i])] = c[i];
    return j;
}

std::uint64_t sum(const bmc::Counters &c, std::initializer_list<bmc_stat> which) {
    std::uint64_t s = 0;
    for (auto w : which) s += c[w];
    return s;
}

// One status line: what was answered where, why the rest passed, fills, invalidations.
void print_status(const bmc::Counters &c) {
    std::printf(
        "gets=%llu hits=%llu misses=%llu | pass: miss=%llu partial=%llu gets=%llu malformed=%llu "
        "too_many=%llu too_big=%llu multi_dgram=%llu vlan_ipv6_opts=%llu no_room=%llu | fill ok=%llu "
        "rejected=%llu | inval text=%llu meta=%llu binary=%llu flush=%llu global=%llu\n",
        (unsigned long long)c[BMC_STAT_GET_REQS], (unsigned long long)c[BMC_STAT_HIT_REQS],
        (unsigned long long)(c[BMC_STAT_GET_REQS] - c[BMC_STAT_HIT_REQS]),
        (unsigned long long)c[BMC_STAT_PASS_MISS], (unsigned long long)c[BMC_STAT_PASS_PARTIAL],
        (unsigned long long)c[BMC_STAT_PASS_GETS], (unsigned long long)c[BMC_STAT_PASS_MALFORMED],
        (unsigned long long)c[BMC_STAT_PASS_TOO_MANY_KEYS],
        (unsigned long long)c[BMC_STAT_PASS_TOO_BIG], (unsigned long long)c[BMC_STAT_PASS_MULTI_DGRAM],
        (unsigned long long)c[BMC_STAT_PASS_NOT_PLAIN], (unsigned long long)c[BMC_STAT_PASS_NO_ROOM],
        (unsigned long long)c[BMC_STAT_FILL_OK],
        (unsigned long long)sum(c, {BMC_STAT_FILL_NO_LEASE, BMC_STAT_FILL_GUARD, BMC_STAT_FILL_BUSY,
                                    BMC_STAT_FILL_TOO_BIG, BMC_STAT_FILL_MALFORMED}),
        (unsigned long long)c[BMC_STAT_INVAL_TEXT], (unsigned long long)c[BMC_STAT_INVAL_META],
        (unsigned long long)c[BMC_STAT_INVAL_BINARY], (unsigned long long)c[BMC_STAT_INVAL_FLUSH],
        (unsigned long long)c[BMC_STAT_INVAL_GLOBAL]);
    std::fflush(stdout);
}

bool write_stats_file(const std::string &path, const bmc::Counters &c, const char *state) {
    std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp);
        nlohmann::json j = {{"state", state}, {"counters", counters_json(c)}};
        f << j.dump() << "\n";
        if (!f) return false;
    }
    return std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace

int main(int argc, char **argv) {
    CLI::App app{"bmcd: a first-level cache for memcached, answering UDP gets before the "
                 "network stack (XDP) and filling from memcached's replies (TC egress)."};
    bmc::KernelOptions opts;
    std::string backend = "kernel", xdp_mode = "auto", tc_attach = "auto", stats_file;
    double max_age_s = double(opts.max_age_ns) / 1e9, fill_guard_ms = double(opts.fill_guard_ns) / 1e6;
    double interval_s = 1.0;
    std::uint64_t small_buckets = opts.small_buckets, large_buckets = opts.large_buckets;
    app.add_option("-i,--iface", opts.iface, "interface memcached's clients reach it on")->required();
    app.add_option("-b,--backend", backend, "datapath: kernel (XDP + TC egress)")
        ->check(CLI::IsMember({"kernel", "afxdp"}));
    app.add_option("-p,--port", opts.port, "memcached port (UDP gets, TCP and UDP writes)")
        ->check(CLI::Range(1, 65535));
    app.add_option("--max-age", max_age_s, "seconds an entry may be served after its fill")
        ->check(CLI::PositiveNumber);
    app.add_option("--fill-guard-ms", fill_guard_ms,
                   "a miss this soon after a write to its bucket cannot fill the cache")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--small-buckets", small_buckets, "4-way buckets of 128-byte entries (power of two)");
    app.add_option("--large-buckets", large_buckets, "2-way buckets of 1536-byte entries (power of two)");
    app.add_option("--xdp-mode", xdp_mode, "auto (native, else generic), native or generic")
        ->check(CLI::IsMember({"auto", "native", "generic"}));
    app.add_option("--tc-attach", tc_attach, "auto (TCX link, else tc filter), tcx or netlink")
        ->check(CLI::IsMember({"auto", "tcx", "netlink"}));
    app.add_option("--interval", interval_s, "seconds between status lines; 0 prints none")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--stats-file", stats_file, "keep the counters as JSON in this file");
    app.add_flag("-v,--verbose", g_verbose, "show libbpf's messages");

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp &e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp &e) {
        return app.exit(e);
    } catch (const CLI::ParseError &e) {
        std::fprintf(stderr, "bmcd: %s (see --help)\n", e.what());
        return 2;
    }
    if (backend != "kernel") {
        std::fprintf(stderr, "bmcd: backend '%s' is not available in this build\n", backend.c_str());
        return 2;
    }
    opts.max_age_ns = std::uint64_t(std::llround(max_age_s * 1e9));
    opts.fill_guard_ns = std::uint64_t(std::llround(fill_guard_ms * 1e6));
    opts.xdp_mode = xdp_mode == "native"    ? bmc::XdpMode::Native
                    : xdp_mode == "generic" ? bmc::XdpMode::Generic
                                            : bmc::XdpMode::Auto;
    opts.tc_attach = tc_attach == "tcx"       ? bmc::TcAttach::Tcx
                     : tc_attach == "netlink" ? bmc::TcAttach::Netlink
                                              : bmc::TcAttach::Auto;
    libbpf_set_print(libbpf_log);

    // Signals are taken synchronously so that detaching never races the handler.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, nullptr);

    try {
        opts.small_buckets = bmc::check_bucket_count("--small-buckets", small_buckets);
        opts.large_buckets = bmc::check_bucket_count("--large-buckets", large_buckets);
        bmc::KernelBackend be(opts);
        if (!be.notice().empty()) std::fprintf(stderr, "bmcd: %s\n", be.notice().c_str());
        std::printf("bmcd: serving %s port %u (backend kernel, XDP %s, TC egress %s)\n",
                    opts.iface.c_str(), opts.port, be.xdp_mode().c_str(), be.tc_mode().c_str());
        std::fflush(stdout);
        if (!stats_file.empty() && !write_stats_file(stats_file, be.read_counters(), "running"))
            throw bmc::Error("cannot write " + stats_file);

        const double tick = interval_s > 0 ? std::min(interval_s, 0.2) : 0.2;
        timespec ts{time_t(tick), long((tick - std::floor(tick)) * 1e9)};
        auto next_print = std::chrono::steady_clock::now();
        for (;;) {
            int sig = sigtimedwait(&stop, nullptr, &ts);
            if (sig == SIGINT || sig == SIGTERM) break;
            auto c = be.read_counters();
            if (!stats_file.empty()) write_stats_file(stats_file, c, "running");
            auto now = std::chrono::steady_clock::now();
            if (interval_s > 0 && now >= next_print) {
                print_status(c);
                next_print = now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                       std::chrono::duration<double>(interval_s));
            }
        }
        auto c = be.read_counters();
        if (!stats_file.empty()) write_stats_file(stats_file, c, "stopped");
        print_status(c);
        std::printf("bmcd: detached from %s\n", opts.iface.c_str());
    } catch (const bmc::Error &e) {
        std::fprintf(stderr, "bmcd: %s\n", e.what());
        return 1;
    }
    return 0;
}
