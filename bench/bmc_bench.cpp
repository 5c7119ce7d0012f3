// bmc-bench: a memcached UDP load generator (the 8-byte frame header, request-id
// matching), closed or open loop, Zipf or uniform keys, multi-gets, GET:SET mixes with
// SETs over TCP, timeouts and losses counted, latency percentiles, JSON results.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "datapath.hpp"
#include "histogram.hpp"
#include "memcached_client.hpp"
#include "tracker.hpp"
#include "workload.hpp"
#include "zipf.hpp"

using namespace bmc::bench;

namespace {

struct Options {
    std::string server = "198.18.0.1";
    int port = 11211;
    unsigned threads = 1;
    std::string mode = "closed";
    unsigned outstanding = 1;  // closed loop, per thread
    double rate = 10000;       // open loop, requests/s over all threads
    double duration_s = 5;
    std::uint64_t max_requests = 0;  // 0: duration only
    Workload w;
    double set_ratio = 0;
    double timeout_ms = 200;
    bool preload = false;
    bool verify = true;
    bool echo = false;  // the server bounces requests (benchmark floor): any datagram answers
    bool progress = false;
    std::string json_path;
    std::uint32_t seed = 1;
};

struct ThreadResult {
    Histogram hist;
    std::uint64_t sent = 0, completed = 0, wrong = 0, sets = 0, set_errors = 0, send_errors = 0;
    std::uint64_t timeouts = 0, late = 0, duplicates = 0, unknown = 0;
};

struct Shared {
    std::atomic<std::uint64_t> sent{0}, completed{0}, timeouts{0};
    std::atomic<bool> stop{false};
};

// memcached's TCP connection (bmc's client library), or nothing.
std::unique_ptr<bmc::McConnection> connect_tcp(const Options &o) {
    const int fd = bmc::mc_connect_tcp(o.server, std::uint16_t(o.port), 2000);
    if (fd < 0) return nullptr;
    return std::make_unique<bmc::McConnection>(fd, std::chrono::seconds(5));
}

// Stores every key over TCP, pipelined with noreply and synchronised by "mn".
bool preload(const Options &o) {
    auto mc = connect_tcp(o);
    if (!mc) return false;
    std::string batch;
    for (std::uint64_t k = 1; k <= o.w.keys; k++) {
        batch += set_command(o.w, k, true);
        if (batch.size() > 60000 || k == o.w.keys) {
            if (!mc->call_until(batch + "mn\r\n", "MN\r\n")) return false;
            batch.clear();
        }
    }
    return true;
}

void run_thread(const Options &o, unsigned index, Shared &shared, ThreadResult &r, std::uint64_t t0,
                std::uint64_t t_end) {
    std::mt19937_64 rng(o.seed * 7919ULL + index);
    Zipf zipf(o.w.keys, o.w.zipf_s);
    Tracker tracker(std::uint64_t(o.timeout_ms * 1e6));
    int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(std::uint16_t(o.port));
    inet_pton(AF_INET, o.server.c_str(), &a.sin_addr);
    connect(udp, reinterpret_cast<sockaddr *>(&a), sizeof a);
    auto tcp = o.set_ratio > 0 ? connect_tcp(o) : nullptr;
    std::uniform_real_distribution<double> uni(0, 1);

    // The keys of each outstanding request, by request id, to check its reply.
    std::vector<std::vector<std::uint64_t>> req_keys(65536);
    const bool open = o.mode == "open";
    const double per_thread_rate = o.rate / o.threads;
    const std::uint64_t interval = open ? std::uint64_t(1e9 / per_thread_rate) : 0;
    std::uint64_t next_send = t0 + (open ? interval * index / o.threads : 0);
    const std::uint64_t max_per_thread = o.max_requests ? (o.max_requests + o.threads - 1) / o.threads : ~0ULL;
    std::uint64_t last_expire = t0;
    std::string text;
    std::uint8_t buf[65536];
    std::vector<std::uint64_t> keys(o.w.width);

    auto send_one = [&](std::uint64_t intended) {
        // SETs go over TCP, as real clients send them, synchronously and between gets; a
        // closed loop keeps its window of gets in flight.
        for (int n = 0; tcp && n < 1000 && uni(rng) < o.set_ratio; n++) {
            std::uint64_t k = zipf(rng);
            if (tcp->call_until(set_command(o.w, k, false), "\r\n")) r.sets++;
            else r.set_errors++;
        }
        for (auto &k : keys) k = zipf(rng);
        int id = tracker.start(intended);
        if (id < 0) return;
        req_keys[std::size_t(id)] = keys;
        text = get_request(std::uint16_t(id), keys, o.w);
        if (send(udp, text.data(), text.size(), 0) != ssize_t(text.size())) r.send_errors++;
        r.sent++;
        shared.sent.fetch_add(1, std::memory_order_relaxed);
    };

    if (!open)
        for (unsigned i = 0; i < o.outstanding && r.sent < max_per_thread; i++) send_one(bmc::monotonic_ns());
    std::vector<std::string> partial(65536);
    while (!shared.stop.load(std::memory_order_relaxed)) {
        std::uint64_t now = bmc::monotonic_ns();
        if (now >= t_end || (r.sent >= max_per_thread && tracker.outstanding() == 0)) break;
        if (open && r.sent < max_per_thread) {
            while (next_send <= now && r.sent < max_per_thread) {
                send_one(next_send);  // latency counts from the schedule: no coordinated omission
                next_send += interval;
            }
        }
        pollfd p{udp, POLLIN, 0};
        std::uint64_t wait_ns = open ? (next_send > now ? next_send - now : 0) : 2000000;
        if (poll(&p, 1, int(std::min<std::uint64_t>(wait_ns / 1000000, 10))) > 0) {
            for (int burst = 0; burst < 256; burst++) {  // then look at the clock again
                ssize_t n = recv(udp, buf, sizeof buf, 0);
                if (n < 8) break;
                const std::uint16_t id = std::uint16_t(buf[0] << 8 | buf[1]);
                std::string &acc = partial[id];
                acc.append(reinterpret_cast<char *>(buf) + 8, std::size_t(n) - 8);
                const bool ends = o.echo || (acc.size() >= 5 && acc.compare(acc.size() - 5, 5, "END\r\n") == 0);
                std::uint64_t lat = 0;
                const std::uint64_t t = bmc::monotonic_ns();
                auto outcome = tracker.on_reply(id, ends, t, &lat);
                if (outcome == Tracker::Reply::Complete) {
                    r.completed++;
                    shared.completed.fetch_add(1, std::memory_order_relaxed);
                    r.hist.record(lat);
                    if (o.verify && !o.echo && acc != expected_reply(o.w, req_keys[id])) r.wrong++;
                    if (!open && r.sent < max_per_thread) send_one(t);
                }
                if (outcome != Tracker::Reply::Partial) acc.clear();
            }
        }
        if (now - last_expire > 10000000) {
            std::uint64_t expired = tracker.expire(now);
            shared.timeouts.fetch_add(expired, std::memory_order_relaxed);
            last_expire = now;
            if (!open)
                for (std::uint64_t i = 0; i < expired && r.sent < max_per_thread; i++) send_one(bmc::monotonic_ns());
        }
    }
    // Whatever is still outstanding when the run ends has not been answered in time.
    r.timeouts = tracker.timeouts() + tracker.outstanding();
    r.late = tracker.late();
    r.duplicates = tracker.duplicates();
    r.unknown = tracker.unknown();
    close(udp);
}

}  // namespace

int main(int argc, char **argv) {
    CLI::App app{"bmc-bench: memcached UDP load generator"};
    Options o;
    app.add_option("-s,--server", o.server, "memcached address");
    app.add_option("-p,--port", o.port, "memcached port")->check(CLI::Range(1, 65535));
    app.add_option("-t,--threads", o.threads, "client threads")->check(CLI::Range(1, 64));
    app.add_option("--mode", o.mode, "closed (N outstanding per thread) or open (a target rate)")
        ->check(CLI::IsMember({"closed", "open"}));
    app.add_option("--outstanding", o.outstanding, "closed loop: requests in flight per thread")
        ->check(CLI::Range(1, 4096));
    app.add_option("--rate", o.rate, "open loop: requests per second, all threads")->check(CLI::PositiveNumber);
    app.add_option("-d,--duration", o.duration_s, "seconds to run")->check(CLI::Range(0.1, 3600.0));
    app.add_option("-n,--requests", o.max_requests, "stop after this many requests (0: duration only)");
    app.add_option("-k,--keys", o.w.keys, "key count")->check(CLI::Range(std::uint64_t(1), std::uint64_t(100000000)));
    app.add_option("--zipf", o.w.zipf_s, "Zipf exponent; 0 is uniform")->check(CLI::Range(0.0, 5.0));
    app.add_option("--key-size", o.w.key_size, "key bytes")->check(CLI::Range(8, 250));
    app.add_option("--value-size", o.w.value_size, "value bytes")->check(CLI::Range(1, 1000000));
    app.add_option("-w,--multiget", o.w.width, "keys per get")->check(CLI::Range(1, 100));
    app.add_option("--set-ratio", o.set_ratio, "fraction of operations that are SETs (over TCP)")
        ->check(CLI::Range(0.0, 1.0));
    app.add_option("--timeout-ms", o.timeout_ms, "a reply later than this is a loss")->check(CLI::PositiveNumber);
    app.add_flag("--preload", o.preload, "store every key over TCP first");
    app.add_flag("!--no-verify", o.verify, "skip checking reply bytes");
    app.add_flag("--echo", o.echo, "the server echoes requests (a floor): count any datagram as the answer");
    app.add_flag("--progress", o.progress, "a progress line every second on stderr");
    app.add_option("--json", o.json_path, "write results as JSON here ('-' for stdout)");
    app.add_option("--seed", o.seed, "random seed");
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp &e) {
        return app.exit(e);
    } catch (const CLI::ParseError &e) {
        std::fprintf(stderr, "bmc-bench: %s (see --help)\n", e.what());
        return 2;
    }
    if (o.w.key_size < key_digits_min(o.w.keys)) {
        std::fprintf(stderr, "bmc-bench: --key-size %u is too small for %llu keys\n", o.w.key_size,
                     (unsigned long long)o.w.keys);
        return 2;
    }
    if (o.preload && !preload(o)) {
        std::fprintf(stderr, "bmc-bench: preloading %s:%d over TCP failed\n", o.server.c_str(), o.port);
        return 1;
    }

    Shared shared;
    std::vector<ThreadResult> results(o.threads);
    std::vector<std::thread> threads;
    const std::uint64_t t0 = bmc::monotonic_ns(), t_end = t0 + std::uint64_t(o.duration_s * 1e9);
    for (unsigned i = 0; i < o.threads; i++)
        threads.emplace_back(run_thread, std::cref(o), i, std::ref(shared), std::ref(results[i]), t0, t_end);
    if (o.progress) {
        std::uint64_t last = 0;
        for (int s = 1; bmc::monotonic_ns() < t_end; s++) {
            std::this_thread::sleep_for(std::chrono::seconds(1));
            std::uint64_t done = shared.completed.load();
            std::fprintf(stderr, "bmc-bench: %ds sent=%llu answered=%llu (%llu/s) timeouts=%llu\n", s,
                         (unsigned long long)shared.sent.load(), (unsigned long long)done,
                         (unsigned long long)(done - last), (unsigned long long)shared.timeouts.load());
            last = done;
            if (o.max_requests && shared.sent.load() >= o.max_requests && done + shared.timeouts.load() >= o.max_requests) break;
        }
    }
    for (auto &t : threads) t.join();
    const double elapsed = double(bmc::monotonic_ns() - t0) / 1e9;

    ThreadResult total;
    for (auto &r : results) {
        total.hist.merge(r.hist);
        total.sent += r.sent;
        total.completed += r.completed;
        total.wrong += r.wrong;
        total.sets += r.sets;
        total.set_errors += r.set_errors;
        total.send_errors += r.send_errors;
        total.timeouts += r.timeouts;
        total.late += r.late;
        total.duplicates += r.duplicates;
        total.unknown += r.unknown;
    }
    nlohmann::json j;
    j["config"] = {{"server", o.server},         {"port", o.port},           {"threads", o.threads},
                   {"mode", o.mode},             {"outstanding", o.outstanding}, {"rate", o.rate},
                   {"duration_s", o.duration_s}, {"keys", o.w.keys},          {"zipf", o.w.zipf_s},
                   {"key_size", o.w.key_size},   {"value_size", o.w.value_size}, {"multiget", o.w.width},
                   {"set_ratio", o.set_ratio},   {"timeout_ms", o.timeout_ms}};
    j["elapsed_s"] = elapsed;
    j["sent"] = total.sent;
    j["answered"] = total.completed;
    j["timeouts"] = total.timeouts;
    j["late"] = total.late;
    j["duplicates"] = total.duplicates;
    j["unknown_ids"] = total.unknown;
    j["wrong"] = total.wrong;
    j["sets"] = total.sets;
    j["set_errors"] = total.set_errors;
    j["send_errors"] = total.send_errors;
    j["throughput_rps"] = double(total.completed) / elapsed;
    j["latency_ns"] = {{"p50", total.hist.quantile(0.5)},   {"p90", total.hist.quantile(0.9)},
                       {"p99", total.hist.quantile(0.99)},  {"p99.9", total.hist.quantile(0.999)},
                       {"max", total.hist.max()},           {"mean", total.hist.mean()}};
    j["histogram"] = total.hist.buckets();
    std::string text = j.dump() + "\n";
    if (o.json_path == "-" || o.json_path.empty()) {
        if (o.json_path == "-") std::fputs(text.c_str(), stdout);
    } else {
        std::ofstream f(o.json_path);
        f << text;
        if (!f) {
            std::fprintf(stderr, "bmc-bench: cannot write %s\n", o.json_path.c_str());
            return 1;
        }
    }
    std::fprintf(stderr,
                 "bmc-bench: %.0f req/s answered; sent %llu answered %llu timeouts %llu late %llu dup %llu "
                 "wrong %llu; latency p50 %.1f us p99 %.1f us p99.9 %.1f us max %.1f us\n",
                 double(total.completed) / elapsed, (unsigned long long)total.sent,
                 (unsigned long long)total.completed, (unsigned long long)total.timeouts,
                 (unsigned long long)total.late, (unsigned long long)total.duplicates,
                 (unsigned long long)total.wrong, total.hist.quantile(0.5) / 1e3, total.hist.quantile(0.99) / 1e3,
                 total.hist.quantile(0.999) / 1e3, double(total.hist.max()) / 1e3);
    return total.wrong ? 1 : 0;
}
