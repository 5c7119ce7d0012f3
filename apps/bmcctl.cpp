// bmcctl: talks to a running bmcd through its control socket (/run/bmc/NAME.sock), in
// memcached's own text lines. With no bmcd running it reads a pinned deployment's maps
// instead (status, stats, settings, dump, flush, detach).
#include <sys/socket.h>
#include <sys/un.h>
#include <poll.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <memory>
#include <string>

#include "bmc_cache.h"
#include "control.hpp"
#include "inspect.hpp"
#include "pinned.hpp"

namespace {

// A connection to bmcd's control socket, or -1 if no bmcd answers there.
int connect_control(const std::string &path) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

// Sends one request line on fd (then closed) and returns the reply (through "END" for
// stats, else one line).
std::string ask(int fd, const std::string &path, const std::string &line, bool multi) {
    const std::string req = line + "\r\n";
    send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    std::string out;
    char buf[4096];
    const std::string end = multi ? "END\r\n" : "\r\n";
    auto done = [&] {
        if (out.size() >= end.size() && out.compare(out.size() - end.size(), end.size(), end) == 0) return true;
        // A refusal is one line, also where a listing was asked for.
        return (out.rfind("ERROR", 0) == 0 || out.rfind("CLIENT_ERROR", 0) == 0) && out.find("\r\n") != std::string::npos;
    };
    while (!done()) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 3000) != 1) {
            close(fd);
            throw std::runtime_error("bmcd did not answer on " + path);
        }
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        out.append(buf, std::size_t(n));
    }
    close(fd);
    return out;
}

// "STAT name value" lines as a JSON object; values that are numbers stay numbers.
nlohmann::json to_json(const std::string &stats) {
    nlohmann::json j = nlohmann::json::object();
    std::size_t pos = 0;
    while (pos < stats.size()) {
        std::size_t eol = stats.find("\r\n", pos);
        if (eol == std::string::npos) break;
        std::string line = stats.substr(pos, eol - pos);
        pos = eol + 2;
        if (line.rfind("STAT ", 0) != 0) continue;
        std::size_t sp = line.find(' ', 5);
        std::string k = line.substr(5, sp - 5), v = sp == std::string::npos ? "" : line.substr(sp + 1);
        try {
            std::size_t used = 0;
            double d = std::stod(v, &used);
            if (used == v.size()) {
                if (v.find_first_not_of("0123456789") == std::string::npos) j[k] = std::stoull(v);
                else j[k] = d;
                continue;
            }
        } catch (...) {
        }
        j[k] = v;
    }
    return j;
}

// The same requests answered from a pinned deployment's maps, as bmcd would answer them.
std::string answer_pinned(bmc::PinnedDeployment &d, const std::string &line) {
    const bmc_config &cfg = d.config();
    std::string ifaces;
    for (const auto &i : d.ifaces()) ifaces += (ifaces.empty() ? "" : ",") + i;
    auto stat = [](const std::string &k, const std::string &v) { return "STAT " + k + " " + v + "\r\n"; };
    const char *backend = __atomic_load_n(&d.cache().global->mode, __ATOMIC_ACQUIRE) == BMC_MODE_AFXDP ? "afxdp" : "kernel";
    if (line == "stats") return stat("bmcd", "not running") + stat("backend", backend) + bmc::counter_stat_lines(d.counters()) + "END\r\n";
    if (line == "status")
        return stat("bmcd", "not running") + stat("backend", backend) + stat("iface", ifaces) +
               stat("port", std::to_string(cfg.port)) + stat("xdp_mode", "pinned") + stat("tc_mode", "tcx, pinned") +
               stat("afxdp_queues", "0") + stat("memcached_watch", "none (bmcd is not running)") +
               stat("pinned", d.dir()) + "END\r\n";
    if (line == "stats settings")
        return stat("iface", ifaces) + stat("port", std::to_string(cfg.port)) +
               stat("layout_version", std::to_string(BMC_LAYOUT_VERSION)) +
               stat("small_buckets", std::to_string(std::uint64_t(cfg.small_mask) + 1)) +
               stat("large_buckets", std::to_string(std::uint64_t(cfg.large_mask) + 1)) +
               stat("max_age_ns", std::to_string(cfg.max_age_ns)) + stat("fill_guard_ns", std::to_string(cfg.fill_guard_ns)) +
               stat("socket_memo_ns", std::to_string(cfg.sock_memo_ns)) +
               stat("max_amplification", std::to_string(cfg.max_amp)) + stat("pinned", d.dir()) + "END\r\n";
    if (line.rfind("dump ", 0) == 0) return bmc::dump_key(cfg, d.cache(), line.substr(5));
    if (line == "flush_all") {
        d.flush();
        return "OK\r\n";
    }
    return "ERROR\r\n";
}

// bmcctl trace: subscribes on the control socket and prints the lines bmcd sends,
// those of one key only if asked, until count lines or seconds have passed.
int run_trace(int fd, std::uint32_t sample, const std::string &key, std::uint32_t count, double seconds) {
    const std::string req = "trace " + std::to_string(sample) + "\r\n";
    send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    const std::string by_key = " key=" + key + " ";
    char hash[24];
    std::snprintf(hash, sizeof hash, " hash=0x%08x ",
                  bmc_hash_bytes(reinterpret_cast<const __u8 *>(key.data()), __u32(key.size())));
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    std::string in;
    std::uint32_t printed = 0;
    bool answered = false;
    char buf[8192];
    for (;;) {
        int wait_ms = 1000;
        if (seconds > 0) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
            if (left.count() <= 0) break;
            wait_ms = int(std::min<long>(left.count(), 1000));
        }
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, wait_ms) <= 0) continue;
        const ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
            std::fprintf(stderr, "bmcctl: bmcd closed the trace\n");
            close(fd);
            return 1;
        }
        in.append(buf, std::size_t(n));
        for (std::size_t eol; (eol = in.find('\n')) != std::string::npos;) {
            std::string line = in.substr(0, eol);
            in.erase(0, eol + 1);
            if (!line.empty() && line.back() == '\r') line.pop_back();
            if (!answered) {  // bmcd's answer to the subscription
                answered = true;
                if (line.rfind("OK", 0) != 0) {
                    std::fprintf(stderr, "bmcctl: %s\n", line.c_str());
                    close(fd);
                    return 1;
                }
                continue;
            }
            if (!key.empty() && (line + " ").find(by_key) == std::string::npos &&
                (line + " ").find(hash) == std::string::npos)
                continue;
            std::printf("%s\n", line.c_str());
            std::fflush(stdout);
            if (count && ++printed >= count) {
                close(fd);
                return 0;
            }
        }
    }
    close(fd);
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    CLI::App app{"bmcctl: inspect and steer a running bmcd through its control socket; with no bmcd running, "
                 "inspect, flush or detach its pinned deployment"};
    app.option_defaults()->always_capture_default();
    std::string name, backend;
    bool json = false;
    app.add_option("-n,--name", name, "the bmcd instance (its --name, or its --iface)")->required();
    app.add_flag("--json", json, "machine-readable output");
    std::string pin_dir;
    app.add_option("--pin-dir", pin_dir,
                   "with no bmcd running, read the pinned deployment here (default: /sys/fs/bpf/bmc/NAME)");
    app.require_subcommand(1);
    auto *status = app.add_subcommand("status", "backend, attach modes, queues, memcached watch, uptime");
    auto *stats = app.add_subcommand("stats", "counters, in memcached's STAT format");
    auto *settings = app.add_subcommand("settings", "the effective configuration (stats settings)");
    auto *flush = app.add_subcommand("flush", "empty the cache (a new epoch)");
    auto *sw = app.add_subcommand("switch", "select the backend that answers gets");
    sw->add_option("backend", backend, "kernel or afxdp")->required()->check(CLI::IsMember({"kernel", "afxdp"}));
    auto *version = app.add_subcommand("version", "bmcd's version");
    auto *detach = app.add_subcommand("detach", "remove a pinned deployment that no bmcd serves");
    auto *trace = app.add_subcommand("trace", "a live log of decisions: time, path, what, client, key, and why");
    std::uint32_t sample = 1, count = 0;
    double seconds = 0;
    std::string trace_key;
    trace->add_option("--sample", sample, "record 1 in this many get and fill decisions")->check(CLI::Range(1u, 1000000u));
    trace->add_option("--key", trace_key, "only this key's decisions (invalidations by its hash)");
    trace->add_option("--count", count, "stop after this many lines (0: until interrupted)");
    trace->add_option("--seconds", seconds, "stop after this long (0: until interrupted)")->check(CLI::Range(0.0, 86400.0));
    std::string key;
    auto *dump = app.add_subcommand("dump", "a key's buckets and entries, and whether a get of it is served now");
    dump->add_option("key", key, "the key")->required();
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp &e) {
        return app.exit(e);
    } catch (const CLI::ParseError &e) {
        std::fprintf(stderr, "bmcctl: %s (see --help)\n", e.what());
        return 2;
    }
    const std::string path = bmc::control_path(name);
    if (pin_dir.empty()) pin_dir = "/sys/fs/bpf/bmc/" + name;
    try {
        std::string reply;
        const int fd = connect_control(path);
        std::unique_ptr<bmc::PinnedDeployment> pinned;
        if (fd < 0 && bmc::KernelBackend::pinned_at(pin_dir)) {
            if (*detach) {
                bmc::KernelBackend::detach_pinned(pin_dir);
                std::printf(json ? "{\"reply\": \"OK\"}\n" : "OK\n");
                return 0;
            }
            if (*sw) {
                std::fprintf(stderr, "bmcctl: no bmcd runs for %s, and only bmcd can switch backends (start bmcd --pin "
                                     "to adopt the pinned deployment in %s)\n", name.c_str(), pin_dir.c_str());
                return 1;
            }
            pinned = std::make_unique<bmc::PinnedDeployment>(pin_dir);
        } else if (fd < 0) {
            throw std::runtime_error("no bmcd answers on " + path + ", and no deployment is pinned in " + pin_dir +
                                     " (see --name, --pin-dir)");
        } else if (*detach) {
            close(fd);
            throw std::runtime_error("bmcd " + name + " is running: stop it first (one started with --pin leaves its "
                                     "deployment pinned, which bmcctl detach then removes)");
        }
        if (*trace) {
            if (pinned) throw std::runtime_error("trace needs a running bmcd (the pinned programs trace only for it)");
            return run_trace(fd, sample, trace_key, count, seconds);
        }
        auto request = [&](const std::string &line, bool multi) {
            return pinned ? answer_pinned(*pinned, line) : ask(fd, path, line, multi);
        };
        if (*stats || *settings || *dump || *status) {
            reply = request(*stats ? "stats" : *settings ? "stats settings" : *status ? "status" : "dump " + key, true);
            if (reply.rfind("CLIENT_ERROR", 0) == 0) {
                std::fprintf(stderr, "bmcctl: %s", reply.c_str() + 13);
                return 2;
            }
            if (json) {
                std::printf("%s\n", to_json(reply).dump(1).c_str());
                return 0;
            }
        } else if (*flush) {
            reply = request("flush_all", false);
        } else if (*sw) {
            reply = request("switch " + backend, false);
        } else if (*version) {
            reply = pinned ? std::string("VERSION ") + BMC_VERSION + " (bmcctl; no bmcd running)\r\n"
                           : request("version", false);
        }
        if (reply.rfind("ERROR", 0) == 0) {
            std::fprintf(stderr, "bmcctl: bmcd refused the request\n");
            return 1;
        }
        if (json) {
            nlohmann::json j = {{"reply", reply.substr(0, reply.find("\r\n"))}};
            std::printf("%s\n", j.dump().c_str());
        } else {
            for (std::size_t p; (p = reply.find('\r')) != std::string::npos;) reply.erase(p, 1);
            std::fputs(reply.c_str(), stdout);
        }
    } catch (const std::runtime_error &e) {  // bmc::Error too
        std::fprintf(stderr, "bmcctl: %s\n", e.what());
        return 1;
    }
    return 0;
}
