// bmc-check: a randomized consistency checker for a memcached with bmc in front.
//
// One writer owns a small hot key set and applies every kind of mutating command (text,
// meta, binary; over TCP and UDP); after each write it reads the stored bytes back over
// TCP, which memcached answers itself, so the key's history of values is known exactly.
// Reader threads send single- and multi-key gets over UDP, which the cache may answer.
// Every operation is recorded with its send and acknowledge times. Afterwards each UDP
// read is checked: it must return a value no older than the newest write acknowledged
// before the read was sent, and never a value that was not written.
//
// The writer can also hide its writes from anyone reading the wire: --pipeline sends
// batches of text writes to distinct keys in one send, --split sends some writes in two
// pieces with a gap longer than the fill guard between them, and --loopback-netns makes
// some writes over loopback inside the server's network namespace. A lossy link is the
// caller's to set up (the end-to-end test drops TCP segments at the server).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <memory>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "consistency.hpp"
#include "datapath.hpp"
#include "memcached_client.hpp"
#include "writes.hpp"

namespace {

using namespace bmc::bench;

struct Options {
    std::string server = "198.18.0.1";
    int port = 11211;
    std::uint64_t ops = 10000;
    double max_seconds = 60;
    unsigned readers = 2;
    unsigned keys = 6;
    unsigned write_pause_us = 0;
    std::uint32_t seed = 1;
    unsigned pipeline = 0;           // > 1: some writes go in batches of this many
    bool split = false;              // some writes are sent in two pieces with a gap
    unsigned split_gap_ms = 15;
    std::string loopback_netns;      // some writes over 127.0.0.1 in this network namespace
};

std::uint64_t now() { return bmc::monotonic_ns(); }

// bmc's memcached client (core/memcached_client.hpp), failing loudly: a lost reply ends
// the check. Reads wait 15 s, long enough for TCP's retransmission backoff over a lossy
// link.
class Tcp {
public:
    explicit Tcp(const Options &o) : c_(bmc::mc_connect_tcp(o.server, std::uint16_t(o.port)), std::chrono::seconds(15)) {
        if (!c_.ok()) throw std::runtime_error("connect to " + o.server);
    }
    // A connection to 127.0.0.1 made inside the network namespace at netns_path.
    Tcp(const Options &o, const std::string &netns_path) : c_(in_netns(o, netns_path), std::chrono::seconds(15)) {}
    // Sends bytes as they are (one piece of a write).
    void send_raw(const std::string &bytes) { c_.send_raw(bytes); }
    std::string text(const std::string &cmd) { return must(c_.text(cmd), cmd); }
    // Binary requests: every response before the NOOP the client appends.
    std::string binary(const std::string &req) { return must(c_.binary(req), "a binary request"); }

private:
    static int in_netns(const Options &o, const std::string &netns_path) {
        int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC), target = open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
        if (self < 0 || target < 0 || setns(target, CLONE_NEWNET) != 0)
            throw std::runtime_error("cannot enter " + netns_path);
        const int fd = bmc::mc_connect_tcp("127.0.0.1", std::uint16_t(o.port));
        if (setns(self, CLONE_NEWNET) != 0) std::abort();  // never go on in the wrong namespace
        close(self);
        close(target);
        if (fd < 0) throw std::runtime_error("connect to 127.0.0.1 in " + netns_path);
        return fd;
    }
    static std::string must(std::optional<std::string> r, const std::string &what) {
        if (!r) throw std::runtime_error("TCP reply lost (timeout or close) for " + what.substr(0, 40));
        return *r;
    }
    bmc::McConnection c_;
};

class Udp {
public:
    explicit Udp(const Options &o)
        : d_(bmc::mc_connect_udp(o.server, std::uint16_t(o.port)), std::uint16_t(std::random_device{}())) {}
    // One request; joined payloads of the reply datagrams (until END if until_end).
    std::optional<std::string> call(const std::string &payload, bool until_end, int timeout_ms = 500) {
        auto r = d_.request(payload, until_end, std::chrono::milliseconds(timeout_ms));
        if (!r.complete) return std::nullopt;
        return r.text;
    }

private:
    bmc::McDatagram d_;
};

std::string key_name(unsigned k) { return "ck" + std::to_string(k); }

// Parses "VALUE <key> <flags> <bytes>\r\n<data>\r\n...END\r\n" into key -> data.
bool parse_values(const std::string &text, std::map<std::string, std::string> &out) {
    std::size_t pos = 0;
    while (pos < text.size()) {
        if (text.compare(pos, 5, "END\r\n") == 0) return pos + 5 == text.size();
        if (text.compare(pos, 6, "VALUE ") != 0) return false;
        std::size_t eol = text.find("\r\n", pos);
        if (eol == std::string::npos) return false;
        char key[256];
        unsigned flags;
        std::size_t bytes;
        if (std::sscanf(text.c_str() + pos, "VALUE %250s %u %zu", key, &flags, &bytes) != 3) return false;
        if (eol + 2 + bytes + 2 > text.size()) return false;
        out[key] = text.substr(eol + 2, bytes);
        pos = eol + 2 + bytes + 2;
    }
    return false;
}

struct Writer {
    const Options &o;
    Tcp tcp, probe, btcp;  // text, reads of the truth, binary (a connection keeps its protocol)
    std::unique_ptr<Tcp> local;  // over loopback in the server's namespace
    Udp udp;
    std::mt19937 rng;
    std::vector<std::vector<Version>> &history;
    std::uint64_t seq = 0, writes = 0, udp_lost = 0;
    std::map<std::string, std::uint64_t> by_command;

    Writer(const Options &o, std::vector<std::vector<Version>> &h)
        : o(o), tcp(o), probe(o), btcp(o), udp(o), rng(o.seed), history(h) {
        if (!o.loopback_netns.empty()) local = std::make_unique<Tcp>(o, o.loopback_netns);
    }

    // A batch of set/delete/incr writes to distinct keys, pipelined in one send: each key's
    // resulting value is learned afterwards, so no intermediate value is ever unknown.
    std::string batch() {
        std::vector<unsigned> keys;
        for (unsigned k = 0; k < o.keys; k++) keys.push_back(k);
        std::shuffle(keys.begin(), keys.end(), rng);
        keys.resize(std::min<std::size_t>(keys.size(), o.pipeline));
        std::string req;
        for (unsigned k : keys) {
            const std::string key = key_name(k), v = fresh();
            switch (rng() % 3) {
            case 0: req += "set " + key + " 0 0 " + std::to_string(v.size()) + "\r\n" + v + "\r\n"; break;
            case 1: req += "delete " + key + "\r\n"; break;
            default: req += "set " + key + " 0 0 2\r\n" + std::to_string(10 + rng() % 90) + "\r\nincr " + key + " 1\r\n";
                     break;
            }
        }
        const std::uint64_t sent = now();
        tcp.text(req);
        const std::uint64_t acked = now();
        for (unsigned k : keys) record(k, sent, acked);
        writes += keys.size();
        by_command["pipelined"] += keys.size();
        return "pipelined";
    }

    Value stored(unsigned k) {  // memcached's own answer over TCP
        std::map<std::string, std::string> v;
        std::string r = probe.text("get " + key_name(k) + "\r\n");
        if (!parse_values(r, v)) throw std::runtime_error("bad reply to get: " + r.substr(0, 60));
        auto it = v.find(key_name(k));
        return it == v.end() ? Value{} : Value{it->second};
    }

    void record(unsigned k, std::uint64_t sent, std::uint64_t acked) { history[k].push_back({stored(k), sent, acked}); }

    std::string fresh() { return "w" + std::to_string(++seq) + "-" + std::to_string(rng() % 1000); }

    // One random mutation of key k; returns its name.
    std::string step() {
        const unsigned k = rng() % o.keys;
        const std::string key = key_name(k);
        const bool via_udp = rng() % 3 == 0;
        std::string v = fresh(), name;
        std::string text;   // a text or meta command
        std::string bin;    // or a binary request
        // Every write of tests/writes.hpp, and a set of a number (for the arithmetic).
        const auto &fixtures = bmc::test::write_fixtures();
        const unsigned pick = rng() % unsigned(fixtures.size() + 1);
        bool global = false;
        if (pick == fixtures.size()) {
            name = "set_number";
            text = "set " + key + " 0 0 2\r\n" + std::to_string(10 + rng() % 90) + "\r\n";
        } else {
            const bmc::test::WriteFixture &w = fixtures[pick];
            name = w.name;
            global = w.effect == bmc::test::WriteFixture::Flushes;
            std::string cas;
            if (w.needs_cas()) {
                std::string g = probe.text("gets " + key + "\r\n");
                if (g.compare(0, 6, "VALUE ") != 0) return "cas-skipped";
                cas = g.substr(0, g.find("\r\n"));
                cas = cas.substr(cas.rfind(' ') + 1);
            }
            (w.proto == bmc::test::WriteFixture::Binary ? bin : text) = w.make(key, v, cas);
        }
        const std::uint64_t sent = now();
        const unsigned how = rng() % 8;
        if (via_udp) {
            name += "_udp";
            if (!udp.call(bin.empty() ? text : bin, false).has_value()) udp_lost++;  // outcome learned below
        } else if (bin.empty() && local && how == 0) {
            name += "_loopback";
            local->text(text);
        } else if (o.split && how == 1) {
            // Two pieces, a gap longer than the fill guard between them, cut anywhere.
            const std::string &w = bin.empty() ? text : bin;
            const std::size_t at = 1 + rng() % (w.size() - 1);
            Tcp &c = bin.empty() ? tcp : btcp;
            c.send_raw(w.substr(0, at));
            std::this_thread::sleep_for(std::chrono::milliseconds(o.split_gap_ms));
            if (bin.empty()) c.text(w.substr(at)); else c.binary(w.substr(at));
            name += "_split";
        } else if (bin.empty()) {
            tcp.text(text);
        } else {
            btcp.binary(bin);
        }
        const std::uint64_t acked = now();
        if (global) {
            for (unsigned j = 0; j < o.keys; j++) record(j, sent, acked);
        } else {
            record(k, sent, acked);
        }
        writes++;
        by_command[name]++;
        return name;
    }
};

struct ReaderResult {
    std::vector<Read> reads;
    std::uint64_t lost = 0, gets = 0;
};

void reader(const Options &o, unsigned index, std::atomic<bool> &stop, std::atomic<std::uint64_t> &ops,
            ReaderResult &r) {
    Udp udp(o);
    std::mt19937 rng(o.seed * 31 + index);
    while (!stop.load(std::memory_order_relaxed)) {
        unsigned n = 1 + rng() % 3;
        std::vector<unsigned> keys;
        std::string req = "get";
        for (unsigned i = 0; i < n; i++) {
            keys.push_back(rng() % o.keys);
            req += " " + key_name(keys.back());
        }
        const std::uint64_t sent = now();
        auto reply = udp.call(req + "\r\n", true);
        const std::uint64_t recv = now();
        r.gets++;
        ops.fetch_add(1, std::memory_order_relaxed);
        if (!reply) {
            r.lost++;
            continue;
        }
        std::map<std::string, std::string> values;
        if (!parse_values(*reply, values)) {
            r.reads.push_back({kUnparseable, Value{"<unparseable: " + reply->substr(0, 60) + ">"}, sent, recv});
            continue;
        }
        for (unsigned k : keys) {
            auto it = values.find(key_name(k));
            r.reads.push_back({k, it == values.end() ? Value{} : Value{it->second}, sent, recv});
        }
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 300));  // let writes interleave
    }
}

}  // namespace

int main(int argc, char **argv) {
    CLI::App app{"bmc-check: randomized consistency checker (run in the clients' namespace)"};
    Options o;
    app.add_option("-s,--server", o.server);
    app.add_option("-p,--port", o.port);
    app.add_option("-n,--ops", o.ops, "operations in all (reads and writes)");
    app.add_option("--max-seconds", o.max_seconds, "stop after this long even if fewer operations ran");
    app.add_option("--readers", o.readers)->check(CLI::Range(1, 16));
    app.add_option("--keys", o.keys, "hot keys")->check(CLI::Range(1, 1000));
    app.add_option("--write-pause-us", o.write_pause_us, "pause between writes (more reads between them)");
    app.add_option("--seed", o.seed);
    app.add_option("--pipeline", o.pipeline, "a quarter of the writes go in batches of this many distinct keys");
    app.add_flag("--split", o.split, "some TCP writes go in two pieces with a gap between them");
    app.add_option("--split-gap-ms", o.split_gap_ms, "the gap (longer than bmcd's fill guard)");
    app.add_option("--loopback-netns", o.loopback_netns,
                   "some text writes go over 127.0.0.1 in this network namespace (a path, e.g. /var/run/netns/NAME)");
    CLI11_PARSE(app, argc, argv);

    std::vector<std::vector<Version>> history(o.keys);
    nlohmann::json result;
    std::vector<ReaderResult> rr(o.readers);
    std::uint64_t violations = 0, stale = 0, never = 0, checked = 0;
    std::vector<std::string> examples;
    try {
        Writer w(o, history);
        for (unsigned k = 0; k < o.keys; k++) {  // a known starting value for every key
            std::uint64_t t = now();
            w.tcp.text("set " + key_name(k) + " 0 0 5\r\nstart\r\n");
            w.record(k, t, now());
        }
        std::atomic<bool> stop{false};
        std::atomic<std::uint64_t> ops{0};
        std::vector<std::thread> threads;
        for (unsigned i = 0; i < o.readers; i++)
            threads.emplace_back(reader, std::cref(o), i, std::ref(stop), std::ref(ops), std::ref(rr[i]));
        const std::uint64_t t_end = now() + std::uint64_t(o.max_seconds * 1e9);
        try {
            while (ops.load() + w.writes < o.ops && now() < t_end) {
                if (o.pipeline > 1 && w.rng() % 4 == 0)
                    w.batch();
                else
                    w.step();
                if (o.write_pause_us) std::this_thread::sleep_for(std::chrono::microseconds(w.rng() % (2 * o.write_pause_us)));
                std::this_thread::sleep_for(std::chrono::microseconds(200 + w.rng() % 800));
            }
        } catch (...) {
            stop = true;
            for (auto &t : threads) t.join();
            throw;
        }
        stop = true;
        for (auto &t : threads) t.join();

        std::vector<Read> all;
        for (auto &r : rr) all.insert(all.end(), r.reads.begin(), r.reads.end());
        CheckReport rep = check(history, all);
        violations = rep.stale + rep.never_written;
        stale = rep.stale;
        never = rep.never_written;
        checked = rep.checked;
        for (auto &e : rep.examples) examples.push_back(key_name(e.key) + ": " + e.text);
        std::uint64_t gets = 0, lost = 0;
        for (auto &r : rr) {
            gets += r.gets;
            lost += r.lost;
        }
        result = {{"operations", gets + w.writes}, {"writes", w.writes}, {"udp_gets", gets},
                  {"key_reads_checked", checked}, {"violations", violations}, {"stale", stale},
                  {"never_written", never}, {"lost_gets", lost}, {"lost_udp_writes", w.udp_lost},
                  {"writes_by_command", w.by_command}, {"examples", examples}};
    } catch (const std::exception &e) {
        std::fprintf(stderr, "bmc-check: %s\n", e.what());
        return 2;
    }
    std::printf("%s\n", result.dump().c_str());
    return violations ? 1 : 0;
}
