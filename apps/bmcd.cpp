// bmcd: runs the bmc cache in front of memcached on one or more interfaces until
// SIGINT/SIGTERM.
#include <bpf/libbpf.h>
#include <thread>
#include <arpa/inet.h>
#include <net/if.h>
#include <signal.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "afxdp_backend.hpp"
#include "control.hpp"
#include "metrics.hpp"
#include "bmc_cache.h"
#include "kernel_backend.hpp"
#include "inspect.hpp"
#include "memcached_watch.hpp"

namespace {

bool g_verbose = false;

// Log levels: error and warning go to stderr, info (what bmcd is doing) to stdout, debug
// (libbpf's own messages) to stderr. Under systemd each line carries its priority
// (sd-daemon's "<N>" prefix), which journald records.
enum class Level { Error = 3, Warning = 4, Info = 6, Debug = 7 };
Level g_level = Level::Info;
bool g_journal = false;

[[gnu::format(printf, 2, 3)]] void log(Level l, const char *fmt, ...) {
    if (int(l) > int(g_level)) return;
    FILE *out = l == Level::Info ? stdout : stderr;
    va_list ap;
    va_start(ap, fmt);
    if (g_journal) std::fprintf(out, "<%d>", int(l));
    std::fputs("bmcd: ", out);
    std::vfprintf(out, fmt, ap);
    va_end(ap);
    std::fflush(out);
}

// Without --verbose, libbpf stays quiet: failures reach the user as one-line errors.
int libbpf_log(enum libbpf_print_level, const char *fmt, va_list args) {
    return g_verbose || g_level == Level::Debug ? std::vfprintf(stderr, fmt, args) : 0;
}

nlohmann::json counters_json(const bmc::Counters &c) {
    // Counters of the kernel programs and of the userspace core share these names.
    nlohmann::json j;
    for (std::uint32_t i = 0; i < BMC_NUM_STATS; i++) j[std::string(bmc_stat_names[i])] = c[i];
    return j;
}


struct Snapshot {
    std::uint64_t unix_ms = 0, uptime_ms = 0;
    bmc::Counters kernel{};      // every interface's, summed
    bmc::AfxdpCounters afxdp{};  // every interface's pollers, summed
    std::vector<bmc::Counters> kernel_by_iface, afxdp_by_iface;
    bool has_afxdp = false;
    unsigned afxdp_queues = 0;
    const char *backend = "kernel";
};

// One status line: what was answered where, then every pass reason, fill outcome,
// invalidation cause and observer event that is not zero, by its counter name.
void print_status(const Snapshot &s) {
    const bmc::Counters &c = s.kernel, &u = s.afxdp.datapath;
    auto all = [&](std::uint32_t st) { return (unsigned long long)(c[st] + u[st]); };
    std::string line;
    char buf[160];
    std::snprintf(buf, sizeof buf, "[%s] gets=%llu served: xdp=%llu afxdp=%llu memcached=%llu |", s.backend,
                  all(BMC_STAT_GET_REQS), (unsigned long long)c[BMC_STAT_HIT_REQS],
                  (unsigned long long)u[BMC_STAT_HIT_REQS], all(BMC_STAT_GET_REQS) - all(BMC_STAT_HIT_REQS));
    line = buf;
    for (std::uint32_t i = 0; i < BMC_NUM_STATS; i++) {
        const std::string_view name = bmc_stat_names[i];
        if (!all(i) || i == BMC_STAT_GET_REQS || i == BMC_STAT_HIT_REQS || name == "get_keys" || name == "hit_keys")
            continue;
        std::snprintf(buf, sizeof buf, " %.*s=%llu", int(name.size()), name.data(), all(i));
        line += buf;
    }
    log(Level::Info, "%s\n", line.c_str());
}

// The effective configuration, as the stats file reports it.
nlohmann::json g_config;

bool write_stats_file(const std::string &path, const Snapshot &s, const char *state) {
    std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp);
        nlohmann::json j = {{"state", state},           {"backend", s.backend},
                            {"unix_time_ms", s.unix_ms}, {"uptime_ms", s.uptime_ms},
                            {"config", g_config},       {"counters", counters_json(s.kernel)}};
        if (s.has_afxdp)
            j["afxdp"] = {{"counters", counters_json(s.afxdp.datapath)},
                          {"rx_frames", s.afxdp.rx_frames},
                          {"rx_batches", s.afxdp.rx_batches},
                          {"rx_per_queue", s.afxdp.rx_per_queue},
                          {"tx_full", s.afxdp.tx_full},
                          {"rotations", s.afxdp.rotations},
                          {"forwarded", s.afxdp.forwarded},
                          {"relayed", s.afxdp.relayed},
                          {"late", s.afxdp.late},
                          {"relay_dropped", s.afxdp.relay_dropped},
                          {"tx_dropped", s.afxdp.tx_dropped}};
        f << j.dump() << "\n";
        if (!f) return false;
    }
    return std::rename(tmp.c_str(), path.c_str()) == 0;
}

// node_exporter's textfile collector reads whole files: write a new one and rename it.
bool write_textfile(const std::string &path, const std::string &text) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp);
        f << text;
        if (!f) return false;
    }
    return std::rename(tmp.c_str(), path.c_str()) == 0;
}

// A finite number within [lo, hi], with a one-line message otherwise (CLI11's own range
// check prints the bounds in full and lets nan through).
CLI::Validator finite_in(double lo, double hi) {
    return CLI::Validator(
        [lo, hi](std::string &s) -> std::string {
            char *end = nullptr;
            errno = 0;
            const double v = std::strtod(s.c_str(), &end);
            char buf[96];
            std::snprintf(buf, sizeof buf, "must be a number from %g to %g", lo, hi);
            if (s.empty() || *end || errno == ERANGE || !std::isfinite(v) || v < lo || v > hi) return buf;
            return "";
        },
        "NUMBER");
}

// MemAvailable from /proc/meminfo, in bytes (0 if unknown).
std::uint64_t memory_available() {
    std::ifstream f("/proc/meminfo");
    std::string key, unit;
    std::uint64_t kb;
    while (f >> key >> kb >> unit)
        if (key == "MemAvailable:") return kb * 1024;
    return 0;
}

std::string mib(std::uint64_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / (1 << 20));
    return buf;
}

}  // namespace

int main(int argc, char **argv) {
    // A reader that goes away (bmcd | head) must not kill bmcd with things attached.
    signal(SIGPIPE, SIG_IGN);
    CLI::App app{"bmcd: a first-level cache for memcached, answering UDP gets before the network "
                 "stack and filling from memcached's replies.\n"
                 "Backends: kernel (XDP answers gets, TC egress fills) or afxdp (XDP hands gets to "
                 "an AF_XDP poller per queue that answers from the same cache and relays misses).\n"
                 "Switch a running instance: SIGUSR1 selects afxdp, SIGUSR2 selects kernel; the "
                 "cache stays warm and memcached keeps running."};
    app.option_defaults()->always_capture_default();
    bmc::KernelOptions opts;
    std::string backend = "kernel", xdp_mode = "auto", tc_attach = "auto", stats_file;
    double max_age_s = double(opts.max_age_ns) / 1e9, fill_guard_ms = double(opts.fill_guard_ns) / 1e6,
           socket_memo_ms = double(opts.sock_memo_ns) / 1e6;
    double interval_s = 1.0;
    std::uint64_t small_buckets = opts.small_buckets, large_buckets = opts.large_buckets;
    std::vector<std::string> ifaces;
    app.add_option("-i,--iface", ifaces,
                   "interface memcached's clients reach it on (repeatable: every interface is served from the "
                   "one cache)")
        ->required();
    app.add_option("-b,--backend", backend, "datapath at start: kernel or afxdp")
        ->check(CLI::IsMember({"kernel", "afxdp"}));
    bmc::AfxdpOptions xopts;
    std::string zero_copy = "auto";
    app.add_flag("--busy-poll", xopts.busy_poll, "afxdp: pollers spin with busy polling instead of sleeping");
    app.add_option("--zero-copy", zero_copy, "afxdp: auto (zero-copy, else copy), on or off")
        ->check(CLI::IsMember({"auto", "on", "off"}));
    app.add_option("-p,--port", opts.port, "memcached port (UDP gets, TCP and UDP writes)")
        ->check(CLI::Range(1, 65535));
    app.add_option("--max-age", max_age_s, "seconds an entry may be served after its fill")
        ->check(finite_in(0.001, 86400))
        ->capture_default_str();
    app.add_option("--fill-guard-ms", fill_guard_ms,
                   "a miss this soon after a write to its bucket cannot fill the cache")
        ->check(finite_in(0, 10000))
        ->capture_default_str();
    app.add_option("--socket-memo-ms", socket_memo_ms,
                   "how long each CPU may reuse its lookup of memcached's UDP socket for a destination "
                   "address (memcached's own binds and releases end it at once; 0: look up for every hit)")
        ->check(finite_in(0, 1000))
        ->capture_default_str();
    app.add_option("--small-buckets", small_buckets, "4-way buckets of 128-byte entries (power of two)");
    app.add_option("--large-buckets", large_buckets, "2-way buckets of 1536-byte entries (power of two)");
    std::vector<std::string> allow;
    app.add_option("--allow", allow,
                   "answer clients in this prefix from the cache (repeatable; IPv4 or IPv6 CIDR). "
                   "Default: the networks of --iface's addresses. Writes from anyone invalidate.");
    app.add_option("--max-amplification", opts.max_amp,
                   "never answer from the cache with more than this many reply bytes per request byte")
        ->check(CLI::Range(1, 1000));
    std::string memcached_host;
    app.add_option("--memcached", memcached_host,
                   "memcached's IPv4 address, watched over TCP so that a restart flushes the cache "
                   "(default: --iface's first IPv4 address)");
    app.add_option("--xdp-mode", xdp_mode, "auto (native, else generic), native or generic")
        ->check(CLI::IsMember({"auto", "native", "generic"}));
    app.add_option("--tc-attach", tc_attach, "auto (TCX link, else tc filter), tcx or netlink")
        ->check(CLI::IsMember({"auto", "tcx", "netlink"}));
    auto *interval_opt = app.add_option("--interval", interval_s,
                                        "seconds between status lines, printed when something changed; 0 prints "
                                        "none (the default under systemd)")
        ->check(finite_in(0, 3600))
        ->capture_default_str();
    app.add_option("--stats-file", stats_file, "keep the counters as JSON in this file");
    bool pin = false, detach = false;
    std::string pin_dir;
    app.add_flag("--pin", pin,
                 "pinned deployment: the programs and the cache outlive bmcd and keep serving; a later "
                 "bmcd --pin adopts them (warm cache, no gap)");
    app.add_flag("--detach", detach, "remove a pinned deployment from --iface and exit");
    app.add_flag("--adopt-new-epoch", opts.adopt_new_epoch,
                 "with --pin: adopt a pinned cache of another layout version, starting a new epoch");
    app.add_option("--pin-dir", pin_dir, "where pins live (default: /sys/fs/bpf/bmc/IFACE)");
    app.add_option("--cgroup", opts.cgroup,
                   "watch memcached's sockets in this cgroup (v2) and below for writes (default: the root "
                   "of the cgroup2 hierarchy); only sockets on --port in bmcd's network namespace are taken");
    auto *max_conns_opt = app.add_option("--max-connections", opts.max_conns,
                   "memcached connections observed at once (default: memcached's own -c, asked at start, "
                   "else this); data on any further one flushes the cache")
        ->check(CLI::Range(1u, 1u << 22));
    std::string metrics_addr;
    app.add_option("--metrics", metrics_addr,
                   "serve Prometheus metrics at http://ADDR:PORT/metrics (e.g. 127.0.0.1:9711)");
    std::string name;
    app.add_option("--name", name,
                   "this instance's name: its control socket is /run/bmc/NAME.sock, which bmcctl --name "
                   "NAME and memcached tools read (default: --iface, with -nsINODE appended in a network "
                   "namespace other than the host's)");
    app.add_flag("-v,--verbose", g_verbose, "show libbpf's messages (the same as --log-level debug)");
    std::string log_level = "info";
    app.add_option("--log-level", log_level, "error, warning, info (what bmcd does, on stdout) or debug")
        ->check(CLI::IsMember({"error", "warning", "info", "debug"}))
        ->capture_default_str();
    std::string textfile;
    app.add_option("--textfile", textfile,
                   "also write the metrics to this file for node_exporter's textfile collector (a .prom file), "
                   "rewritten with the stats file");
    app.set_version_flag("--version", std::string("bmcd ") + BMC_VERSION + " (cache layout " +
                                          std::to_string(BMC_LAYOUT_VERSION) + ")");
    app.set_config("--config", "", "read options from this file (TOML or INI: option = value, one per line)");

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp &e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp &e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion &e) {
        return app.exit(e);
    } catch (const CLI::ParseError &e) {
        std::fprintf(stderr, "bmcd: %s (see --help)\n", e.what());
        return 2;
    }
    const bool under_systemd = std::getenv("NOTIFY_SOCKET") != nullptr;
    g_level = log_level == "error" ? Level::Error : log_level == "warning" ? Level::Warning
            : log_level == "debug" ? Level::Debug : Level::Info;
    g_journal = std::getenv("JOURNAL_STREAM") != nullptr;
    if (under_systemd && interval_opt->count() == 0) interval_s = 0;  // journald gets what changed only
    // Every flag is checked before anything is attached.
    auto refuse = [](const std::string &msg) {
        std::fprintf(stderr, "bmcd: %s\n", msg.c_str());
        return 2;
    };
    if (!memcached_host.empty()) {
        in_addr a;
        if (inet_pton(AF_INET, memcached_host.c_str(), &a) != 1)
            return refuse("--memcached " + memcached_host + ": give memcached's IPv4 address, not a name");
    }
    for (std::size_t i = 0; i < ifaces.size(); i++) {
        if (std::find(ifaces.begin(), ifaces.begin() + long(i), ifaces[i]) != ifaces.begin() + long(i))
            return refuse("--iface " + ifaces[i] + " is given twice");
        if (backend == "afxdp" && bmc::interface_is_loopback(ifaces[i]))
            return refuse("--backend afxdp on " + ifaces[i] + ": " + bmc::kAfxdpLoopbackRefusal);
    }
    // Every interface exists before the first one is attached.
    for (const auto &i : ifaces)
        if (!detach && if_nametoindex(i.c_str()) == 0) {
            std::fprintf(stderr, "bmcd: interface '%s' not found\n", i.c_str());
            return 1;
        }
    opts.iface = ifaces[0];
    std::string iface_list;
    for (const auto &i : ifaces) iface_list += (iface_list.empty() ? "" : ",") + i;
    for (const std::string &file : {textfile}) {
        if (file.empty()) continue;
        const std::string probe = file + ".tmp";
        std::ofstream f(probe);
        if (!f) return refuse("--textfile " + file + ": cannot write " + probe + " (" + std::strerror(errno) + ")");
        f.close();
        std::remove(probe.c_str());
    }
    if (!stats_file.empty()) {
        const std::string probe = stats_file + ".tmp";
        std::ofstream f(probe);
        if (!f) return refuse("--stats-file " + stats_file + ": cannot write " + probe + " (" + std::strerror(errno) + ")");
        f.close();
        std::remove(probe.c_str());
    }
    std::string metrics_host;
    int metrics_port = 0;
    if (!metrics_addr.empty()) {
        const auto colon = metrics_addr.rfind(':');
        in_addr a;
        char *end = nullptr;
        const long port = colon == std::string::npos ? 0 : std::strtol(metrics_addr.c_str() + colon + 1, &end, 10);
        metrics_host = colon == std::string::npos ? "" : metrics_addr.substr(0, colon);
        if (colon == std::string::npos || *end || port < 1 || port > 65535 ||
            inet_pton(AF_INET, metrics_host.c_str(), &a) != 1)
            return refuse("--metrics " + metrics_addr + ": give IPV4:PORT, e.g. 127.0.0.1:9711");
        metrics_port = int(port);
    }
    // The instance's name: the interface's, and in another network namespace than the
    // host's, that namespace's too, so that bmcds of several namespaces never share a socket.
    if (name.empty()) {
        struct stat ns;
        constexpr ino_t kInitNetns = 0xF0000000;  // PROC_NET_INIT_INO
        name = opts.iface;
        if (stat("/proc/self/ns/net", &ns) == 0 && ns.st_ino != kInitNetns) name += "-ns" + std::to_string(ns.st_ino);
    }
    if (name.empty() || name.find('/') != std::string::npos || name.size() > 64)
        return refuse("--name " + name + ": a name of at most 64 characters without '/'");
    for (std::size_t i = 0; memcached_host.empty() && i < ifaces.size(); i++) memcached_host = bmc::interface_ipv4(ifaces[i]);
    // One observed connection per connection memcached accepts (its -c), and some slack.
    if (!detach && max_conns_opt->count() == 0 && !memcached_host.empty()) {
        if (auto m = bmc::memcached_maxconns(memcached_host, opts.port)) {
            opts.max_conns = std::min<std::uint32_t>(*m + 64, 1u << 22);
            log(Level::Info, "memcached accepts %u connections; observing up to %u\n", *m, opts.max_conns);
        }
    }
    if (!detach) {
        try {
            opts.small_buckets = bmc::check_bucket_count("--small-buckets", small_buckets);
            opts.large_buckets = bmc::check_bucket_count("--large-buckets", large_buckets);
        } catch (const bmc::Error &e) {
            return refuse(e.what());
        }
        // Sizing: each small bucket holds 4 entries of up to 96 bytes of item, each large
        // one 2 of up to 1504; both tables and the connection table are locked memory.
        const std::uint64_t small_b = std::uint64_t(opts.small_buckets) * sizeof(bmc_small_bucket),
                            large_b = std::uint64_t(opts.large_buckets) * sizeof(bmc_large_bucket),
                            conns_b = std::uint64_t(opts.max_conns) * (bmc::conn_state_bytes() + 64);
        const std::uint64_t avail = memory_available();
        if (avail && small_b + large_b + conns_b > avail / 2)
            return refuse("the cache would take " + mib(small_b + large_b + conns_b) + " of " + mib(avail) +
                          " available: size it as --small-buckets x " + std::to_string(sizeof(bmc_small_bucket)) +
                          " B + --large-buckets x " + std::to_string(sizeof(bmc_large_bucket)) +
                          " B, at most half the available memory");
        log(Level::Info, "cache memory %s: small table %u x %zu B = %s, large table %u x %zu B = %s, "
                    "connection table %u x %zu B = %s\n",
                    mib(small_b + large_b + conns_b).c_str(), opts.small_buckets, sizeof(bmc_small_bucket),
                    mib(small_b).c_str(), opts.large_buckets, sizeof(bmc_large_bucket), mib(large_b).c_str(),
                    opts.max_conns, bmc::conn_state_bytes() + 64, mib(conns_b).c_str());
    }
    if (pin_dir.empty()) pin_dir = "/sys/fs/bpf/bmc/" + opts.iface;
    if (detach) {
        try {
            bmc::KernelBackend::detach_pinned(pin_dir);
        } catch (const bmc::Error &e) {
            std::fprintf(stderr, "bmcd: %s\n", e.what());
            return 1;
        }
        log(Level::Info, "detached the pinned deployment in %s\n", pin_dir.c_str());
        return 0;
    }
    if (pin) {
        opts.pin_dir = pin_dir;
        // Every interface a pinned deployment serves is this bmcd's to take over: one it
        // did not list would keep running programs nobody manages.
        for (const std::string &other : bmc::KernelBackend::pinned_extra_ifaces(pin_dir))
            if (std::find(ifaces.begin() + 1, ifaces.end(), other) == ifaces.end()) {
                std::fprintf(stderr, "bmcd: the pinned deployment in %s also serves %s: list every --iface it serves "
                                     "(first %s), or --detach first\n",
                             pin_dir.c_str(), other.c_str(), opts.iface.c_str());
                return 1;
            }
    } else if (bmc::KernelBackend::pinned_at(pin_dir)) {
        std::fprintf(stderr, "bmcd: a pinned bmc deployment serves %s (bmcd --pin adopts it, bmcd --detach removes it)\n",
                     opts.iface.c_str());
        return 1;
    }
    xopts.zero_copy = zero_copy == "on" ? bmc::ZeroCopy::On : zero_copy == "off" ? bmc::ZeroCopy::Off : bmc::ZeroCopy::Auto;
    opts.max_age_ns = std::uint64_t(std::llround(max_age_s * 1e9));
    opts.fill_guard_ns = std::uint64_t(std::llround(fill_guard_ms * 1e6));
    opts.sock_memo_ns = std::uint64_t(std::llround(socket_memo_ms * 1e6));
    opts.xdp_mode = xdp_mode == "native"    ? bmc::XdpMode::Native
                    : xdp_mode == "generic" ? bmc::XdpMode::Generic
                                            : bmc::XdpMode::Auto;
    opts.tc_attach = tc_attach == "tcx"       ? bmc::TcAttach::Tcx
                     : tc_attach == "netlink" ? bmc::TcAttach::Netlink
                                              : bmc::TcAttach::Auto;
    libbpf_set_print(libbpf_log);
    try {
        std::vector<bmc::Prefix> prefixes;
        for (const auto &a : allow) prefixes.push_back(bmc::Prefix::parse(a));
        for (std::size_t i = 0; allow.empty() && i < ifaces.size(); i++)
            for (const auto &p : bmc::interface_networks(ifaces[i]))
                if (std::find_if(prefixes.begin(), prefixes.end(), [&](const bmc::Prefix &q) { return q.str() == p.str(); }) ==
                    prefixes.end())
                    prefixes.push_back(p);
        opts.allow = bmc::Allowlist(prefixes);
    } catch (const std::invalid_argument &e) {
        std::fprintf(stderr, "bmcd: --allow %s\n", e.what());
        return 2;
    }

    // Signals are taken synchronously so that detaching never races a handler.
    sigset_t sigs;
    sigemptyset(&sigs);
    for (int sig : {SIGINT, SIGTERM, SIGUSR1, SIGUSR2}) sigaddset(&sigs, sig);
    sigprocmask(SIG_BLOCK, &sigs, nullptr);

    try {
        // The first interface's backend owns the cache and the write observer; every other
        // interface's shares them.
        std::vector<std::unique_ptr<bmc::KernelBackend>> kernels;
        kernels.push_back(std::make_unique<bmc::KernelBackend>(opts));
        bmc::KernelBackend &be = *kernels[0];
        try {
            for (std::size_t i = 1; i < ifaces.size(); i++) {
                bmc::KernelOptions more = opts;
                more.iface = ifaces[i];
                more.share = &be;
                more.pin_dir = pin ? bmc::KernelBackend::iface_pin_dir(pin_dir, ifaces[i]) : "";
                kernels.push_back(std::make_unique<bmc::KernelBackend>(more));
            }
        } catch (const bmc::Error &) {
            kernels.resize(1);
            be.discard_new_pins();
            throw;
        }
        std::vector<std::unique_ptr<bmc::AfxdpBackend>> afxdp;
        std::mutex afxdp_mu;  // afxdp: made by the main thread, drained by the tracer
        for (const auto &k : kernels)
            if (!k->notice().empty()) log(Level::Warning, "%s\n", k->notice().c_str());
        if (be.adopted()) log(Level::Info, "adopted the pinned deployment in %s (cache kept)\n", pin_dir.c_str());
        std::string allowed4, allowed6;
        for (const auto &p : opts.allow.prefixes())
            (p.family == 4 ? allowed4 : allowed6) += " " + p.str();
        const std::string allowed = (allowed4.empty() ? "" : "IPv4 clients in" + allowed4) +
                                    (!allowed4.empty() && !allowed6.empty() ? ", " : "") +
                                    (allowed6.empty() ? "" : "IPv6 clients in" + allowed6);
        log(Level::Info, "serving %s port %u (XDP %s, TC egress %s); answering %s\n",
                    iface_list.c_str(), opts.port, be.xdp_mode().c_str(), be.tc_mode().c_str(),
                    allowed.empty() ? "no network (the interface has no address; see --allow)" : allowed.c_str());

        // The AF_XDP sockets are made on first use and kept until exit.
        auto select = [&](const std::string &which) {
            if (which == "afxdp") {
                std::lock_guard<std::mutex> l(afxdp_mu);
                if (afxdp.empty()) {
                    try {
                        for (const auto &k : kernels) {
                            afxdp.push_back(std::make_unique<bmc::AfxdpBackend>(*k, xopts));
                            if (!afxdp.back()->notice().empty()) log(Level::Warning, "%s\n", afxdp.back()->notice().c_str());
                        }
                    } catch (...) {
                        afxdp.clear();
                        throw;
                    }
                }
                be.set_mode(BMC_MODE_AFXDP);
                unsigned queues = 0;
                for (const auto &a : afxdp) queues += a->queues();
                log(Level::Info, "backend afxdp (%u queue%s, %s)\n", queues, queues == 1 ? "" : "s",
                    afxdp[0]->bind_mode().c_str());
            } else {
                be.set_mode(BMC_MODE_KERNEL);
                log(Level::Info, "backend kernel\n");
            }
            std::fflush(stdout);
        };
        const auto started = std::chrono::steady_clock::now();
        g_config = {{"iface", iface_list},
                    {"port", opts.port},
                    {"version", BMC_VERSION},
                    {"layout_version", BMC_LAYOUT_VERSION},
                    {"small_buckets", opts.small_buckets},
                    {"large_buckets", opts.large_buckets},
                    {"max_connections", opts.max_conns},
                    {"max_age_ns", opts.max_age_ns},
                    {"fill_guard_ns", opts.fill_guard_ns},
                    {"socket_memo_ns", opts.sock_memo_ns},
                    {"max_amplification", opts.max_amp},
                    {"allow", allowed},
                    {"xdp_mode", be.xdp_mode()},
                    {"tc_mode", be.tc_mode()},
                    {"cgroup", be.cgroup()},
                    {"pinned", pin ? pin_dir : ""}};
        auto snapshot = [&] {
            Snapshot s;
            s.unix_ms = std::uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
            s.uptime_ms = std::uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::steady_clock::now() - started)
                                            .count());
            for (const auto &k : kernels) {
                s.kernel_by_iface.push_back(k->read_counters());
                for (std::uint32_t i = 0; i < BMC_NUM_STATS; i++) s.kernel[i] += s.kernel_by_iface.back()[i];
            }
            for (const auto &a : afxdp) {
                const bmc::AfxdpCounters c = a->counters();
                s.afxdp_by_iface.push_back(c.datapath);
                bmc::add_counters(s.afxdp, c);
                s.has_afxdp = true;
                s.afxdp_queues += a->queues();
            }
            s.afxdp_by_iface.resize(kernels.size());
            s.backend = be.mode() == BMC_MODE_AFXDP ? "afxdp" : "kernel";
            return s;
        };
        select(backend);
        // The control socket answers from the main loop's latest snapshot (at most one tick old).
        std::mutex snap_mu;
        Snapshot latest = snapshot();
        auto stat_lines = [&] {
            std::lock_guard<std::mutex> l(snap_mu);
            std::string out;
            auto add = [&](const std::string &k, const std::string &v) { out += "STAT " + k + " " + v + "\r\n"; };
            add("pid", std::to_string(getpid()));
            add("uptime_ms", std::to_string(latest.uptime_ms));
            add("version", BMC_VERSION);
            add("backend", latest.backend);
            bmc::Counters sum = latest.kernel;
            for (std::uint32_t i = 0; i < BMC_NUM_STATS; i++) sum[i] += latest.afxdp.datapath[i];
            return out + bmc::counter_stat_lines(sum) + "END\r\n";
        };
        // The decision trace: on while a bmcctl trace listens (trace_every, set by its
        // request, cleared when the last one leaves). The BPF programs' ring buffer and
        // the pollers' records are merged into lines for the subscribers.
        auto set_tracing = [&be](std::uint32_t every) {
            __atomic_store_n(&be.cache().global->trace_every, every, __ATOMIC_RELEASE);
        };
        set_tracing(0);
        auto handle = [&](const std::string &line) -> std::string {
            if (line == "stats") return stat_lines();
            if (line == "stats settings") {
                std::string out;
                for (auto &[k, v] : g_config.items())
                    out += "STAT " + k + " " + (v.is_string() ? v.get<std::string>() : v.dump()) + "\r\n";
                return out + "END\r\n";
            }
            if (line == "version") return std::string("VERSION ") + BMC_VERSION + "\r\n";
            if (line == "status") {
                std::lock_guard<std::mutex> l(snap_mu);
                std::string out;
                auto add = [&](const std::string &k, const std::string &v) { out += "STAT " + k + " " + v + "\r\n"; };
                add("backend", latest.backend);
                add("iface", iface_list);
                add("port", std::to_string(opts.port));
                add("xdp_mode", be.xdp_mode());
                add("tc_mode", be.tc_mode());
                add("afxdp_queues", latest.has_afxdp ? std::to_string(latest.afxdp_queues) : "0");
                add("cgroup", be.cgroup());
                add("memcached_watch", memcached_host.empty() ? "none" : memcached_host + ":" + std::to_string(opts.port));
                add("pinned", pin ? pin_dir : "no");
                add("uptime_ms", std::to_string(latest.uptime_ms));
                add("trace_every", std::to_string(__atomic_load_n(&be.cache().global->trace_every, __ATOMIC_ACQUIRE)));
                return out + "END\r\n";
            }
            if (line == "mn") return "MN\r\n";  // memcached's no-op: clients end pipelines with it
            if (line == "trace" || line.rfind("trace ", 0) == 0) {
                char *end = nullptr;
                const unsigned long every = line == "trace" ? 1 : std::strtoul(line.c_str() + 6, &end, 10);
                if (line != "trace" && (*end || every < 1 || every > 1000000)) return "CLIENT_ERROR trace 1..1000000\r\n";
                set_tracing(std::uint32_t(every));
                return "OK tracing 1 in " + std::to_string(every) + " decisions\r\n";
            }
            if (line.rfind("dump ", 0) == 0) return bmc::dump_key(be.config(), be.cache(), line.substr(5));
            if (line == "flush_all") {
                be.flush_all();
                return "OK\r\n";
            }
            if (line == "switch kernel" || line == "switch afxdp") {
                kill(getpid(), line == "switch afxdp" ? SIGUSR1 : SIGUSR2);  // taken by the main loop
                return "OK\r\n";
            }
            return "ERROR\r\n";
        };
        std::unique_ptr<bmc::MemcachedWatch> watch;
        if (!memcached_host.empty())
            watch = std::make_unique<bmc::MemcachedWatch>(
                memcached_host, opts.port, [&be] { be.flush_all(); },
                [](const std::string &msg) {
                    log(Level::Info, "%s\n", msg.c_str());
                    std::fflush(stdout);
                });
        else
            log(Level::Warning, "no IPv4 address to reach memcached on; a memcached restart will not "
                                "flush the cache (see --memcached)\n");
        auto render_metrics = [&] {
            std::lock_guard<std::mutex> l(snap_mu);
            std::string out;
            for (std::uint32_t i = 0; i < BMC_NUM_STATS; i++) {
                const std::string n = "bmc_" + std::string(bmc_stat_names[i]) + "_total";
                out += "# HELP " + n + " " + bmc::metric_help(std::string(bmc_stat_names[i])) + "\n";
                out += "# TYPE " + n + " counter\n";
                for (std::size_t k = 0; k < ifaces.size(); k++) {
                    out += n + "{iface=\"" + ifaces[k] + "\",backend=\"kernel\"} " +
                           std::to_string(latest.kernel_by_iface[k][i]) + "\n";
                    out += n + "{iface=\"" + ifaces[k] + "\",backend=\"afxdp\"} " +
                           std::to_string(latest.afxdp_by_iface[k][i]) + "\n";
                }
            }
            out += "# HELP bmc_uptime_seconds Seconds since bmcd started.\n# TYPE bmc_uptime_seconds gauge\n";
            out += "bmc_uptime_seconds " + std::to_string(latest.uptime_ms / 1000.0) + "\n";
            return out;
        };
        std::unique_ptr<bmc::MetricsServer> metrics;
        if (metrics_port) {
            try {
                metrics = std::make_unique<bmc::MetricsServer>(metrics_host, metrics_port, render_metrics);
            } catch (const std::runtime_error &e) {
                throw bmc::Error(e.what());
            }
        }
        std::unique_ptr<bmc::ControlServer> control;
        try {
            control = std::make_unique<bmc::ControlServer>(bmc::control_path(name), handle);
            control->set_on_subscribers([&](std::size_t n) {
                if (n == 0) set_tracing(0);
            });
            log(Level::Info, "control socket %s (bmcctl --name %s)\n", control->path().c_str(), name.c_str());
        } catch (const std::runtime_error &e) {
            throw bmc::Error(e.what());
        }
        if (!stats_file.empty() && !write_stats_file(stats_file, snapshot(), "running"))
            throw bmc::Error("cannot write " + stats_file);
        std::atomic<bool> tracer_stop{false};
        std::string trace_text;
        const std::uint64_t trace_start = bmc::monotonic_ns();
        std::pair<std::string *, std::uint64_t> trace_ctx{&trace_text, trace_start};
        ring_buffer *ring = ring_buffer__new(
            be.trace_ring_fd(),
            [](void *ctx, void *data, std::size_t size) {
                auto *c = static_cast<std::pair<std::string *, std::uint64_t> *>(ctx);
                if (size == sizeof(bmc_trace)) *c->first += bmc::trace_line(*static_cast<const bmc_trace *>(data), c->second);
                return 0;
            },
            &trace_ctx, nullptr);
        if (!ring) throw bmc::Error("cannot read the trace ring buffer: " + std::string(std::strerror(errno)));
        std::thread tracer([&] {
            std::vector<bmc_trace> user;
            while (!tracer_stop.load()) {
                // The programs submit without wakeups: drain on a timer.
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
                ring_buffer__consume(ring);
                {
                    std::lock_guard<std::mutex> l(afxdp_mu);
                    for (auto &a : afxdp) a->drain_trace(user);
                }
                for (const auto &t : user) trace_text += bmc::trace_line(t, trace_start);
                user.clear();
                if (!trace_text.empty()) control->publish(trace_text);
                trace_text.clear();
            }
        });

        const double tick = interval_s > 0 ? std::min(interval_s, 0.2) : 0.2;
        timespec ts{time_t(tick), long((tick - std::floor(tick)) * 1e9)};
        auto next_print = std::chrono::steady_clock::now();
        Snapshot printed = latest;
        printed.backend = "";
        sd_notify(0, ("READY=1\nSTATUS=serving " + iface_list + " port " + std::to_string(opts.port)).c_str());
        for (;;) {
            int sig = sigtimedwait(&sigs, nullptr, &ts);
            if (sig == SIGINT || sig == SIGTERM) break;
            if (sig == SIGUSR1 || sig == SIGUSR2) {
                try {
                    select(sig == SIGUSR1 ? "afxdp" : "kernel");
                } catch (const bmc::Error &e) {
                    log(Level::Warning, "cannot switch to afxdp: %s; staying on kernel\n", e.what());
                }
            }
            Snapshot snap = snapshot();
            {
                std::lock_guard<std::mutex> l(snap_mu);
                latest = snap;
            }
            if (!stats_file.empty()) write_stats_file(stats_file, snap, "running");
            if (!textfile.empty()) write_textfile(textfile, render_metrics());
            auto now = std::chrono::steady_clock::now();
            // Only when something changed: an idle cache prints nothing.
            if (interval_s > 0 && now >= next_print &&
                (snap.kernel != printed.kernel || snap.afxdp.datapath != printed.afxdp.datapath ||
                 std::string(snap.backend) != printed.backend)) {
                print_status(snap);
                printed = snap;
                next_print = now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                       std::chrono::duration<double>(interval_s));
            }
        }
        sd_notify(0, "STOPPING=1");
        tracer_stop = true;
        tracer.join();
        ring_buffer__free(ring);
        set_tracing(0);
        Snapshot snap = snapshot();
        // Back to the kernel path first, so no get is handed to a socket being closed.
        be.set_mode(BMC_MODE_KERNEL);
        {
            std::lock_guard<std::mutex> l(afxdp_mu);
            afxdp.clear();
        }
        if (!stats_file.empty()) write_stats_file(stats_file, snap, "stopped");
        if (!textfile.empty()) {
            {
                std::lock_guard<std::mutex> l(snap_mu);
                latest = snap;
            }
            write_textfile(textfile, render_metrics());
        }
        print_status(snap);
        if (pin)
            log(Level::Info, "left %s pinned in %s; it keeps serving (bmcd --detach removes it)\n",
                        iface_list.c_str(), pin_dir.c_str());
        else
            log(Level::Info, "detached from %s\n", iface_list.c_str());
    } catch (const bmc::Error &e) {
        log(Level::Error, "%s\n", e.what());
        return 1;
    }
    return 0;
}
