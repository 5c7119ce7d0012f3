// Differential test: the same packets through the BPF programs (BPF_PROG_TEST_RUN) and
// through the C++ core must give the same verdict, the same output bytes, the same
// cache memory and the same counters.
#include <linux/pkt_cls.h>
#include <time.h>

#include <optional>
#include <random>
#include <set>
#include <sstream>

#include "bpf_fixture.hpp"
#include "writes.hpp"

using namespace bmc;
using namespace bmc::test;

namespace {

// Timestamps are written by each side from its own clock; everything else must agree.
void mask_times(OwnedCache &c) {
    for (auto &b : c.small) {
        b.hdr.last_inval_ns = 0;
        for (auto &t : b.hdr.lease_ns) t = 0;
        for (auto &w : b.way) w.h.fill_ns = 0;
    }
    for (auto &b : c.large) {
        b.hdr.last_inval_ns = 0;
        for (auto &t : b.hdr.lease_ns) t = 0;
        for (auto &w : b.way) w.h.fill_ns = 0;
    }
    c.global.last_flush_ns = 0;
    c.global.flush_at_ns = c.global.flush_at_ns != 0;  // set or not must agree
    c.global.flush_cutoff_ns = c.global.flush_cutoff_ns != 0;
}

void copy_from(OwnedCache &dst, const CacheMemory &src) {
    std::memcpy(dst.small.data(), src.small, dst.small.size() * sizeof(bmc_small_bucket));
    std::memcpy(dst.large.data(), src.large, dst.large.size() * sizeof(bmc_large_bucket));
    dst.global = *src.global;
}

bool same_memory(const OwnedCache &a, const OwnedCache &b) {
    return std::memcmp(a.small.data(), b.small.data(), a.small.size() * sizeof(bmc_small_bucket)) == 0 &&
           std::memcmp(a.large.data(), b.large.data(), a.large.size() * sizeof(bmc_large_bucket)) == 0 &&
           std::memcmp(&a.global, &b.global, sizeof(bmc_global)) == 0;
}

struct Packet {
    Bytes frame;
    bool egress;
    std::string what;
    std::uint64_t conn = 0;  // TCP: the observed connection it belongs to (0: unobserved)
};

// The TCP payload of a frame to memcached, as its socket would read it (none if the frame
// is no unfragmented TCP segment to the port).
std::optional<std::string> tcp_payload(const Bytes &f) {
    bmc_scratch sc{};
    bmc_frame fr{};
    const auto len = std::uint32_t(f.size()), hlen = std::min<std::uint32_t>(len, BMC_HDR_MAX);
    if (len < BMC_ETH_HLEN) return std::nullopt;
    std::memcpy(sc.hdr, f.data(), hlen);
    bmc_parse_frame(&sc, len, hlen, BMC_DEFAULT_PORT, &fr);
    if (fr.proto != BMC_IPPROTO_TCP || !fr.to_server || fr.payload_len == 0 || fr.payload_off + fr.payload_len > len)
        return std::nullopt;
    const std::uint16_t type = std::uint16_t(f[12] << 8 | f[13]);
    if (type != BMC_ETH_P_IP && type != BMC_ETH_P_IPV6) return std::nullopt;  // tagged: another device's
    return std::string(f.begin() + fr.payload_off, f.begin() + fr.payload_off + fr.payload_len);
}

class Corpus {
public:
    explicit Corpus(std::uint32_t seed) : rng_(seed) {}

    Packet next() {
        Packet p;
        switch (pick(20)) {
        case 0: case 1: case 2: case 3: case 4: case 5: case 6: case 7: p = get(); break;
        case 8: case 9: case 10: case 11: case 12: case 13: p = reply(); break;
        case 14: case 15: p = mutation(); break;
        case 16: case 17: p = mutate_bytes(pick(2) ? get() : (pick(2) ? reply() : mutation())); break;
        default: p = garbage(); break;
        }
        return p;
    }

    // Single-key gets of every key length the cache answers (1 to 250) and one more, each
    // as a miss, then filled, then a hit: the fast path's whole domain.
    std::vector<Packet> every_key_length() {
        std::vector<Packet> out;
        for (std::uint32_t len = 1; len <= BMC_MAX_KEY_LEN + 1; len++) {
            std::string k(len, 'x');
            for (auto &c : k) c = char(pick(5) ? 0x21 + pick(0x5e) : 0x80 + pick(0x80));
            const std::string get = "get " + k + "\r\n", value(1 + pick(40), char('a' + pick(26)));
            const std::string item = "VALUE " + k + " 0 " + std::to_string(value.size()) + "\r\n" + value + "\r\n";
            out.push_back({udp_frame(kClient, kServer, mc_udp(get, std::uint16_t(len))), false, "get len " + std::to_string(len)});
            out.push_back({udp_frame(kServer, kClient, mc_udp(item + "END\r\n", std::uint16_t(len))), true, "fill"});
            out.push_back({udp_frame(kClient, kServer, mc_udp(get, std::uint16_t(len))), false, "hit len " + std::to_string(len)});
        }
        return out;
    }

private:
    std::mt19937 rng_;
    std::vector<std::string> recent_;  // keys of recent gets: replies fill these
    std::vector<std::string> filled_;  // keys of recent replies: gets may hit these
    std::uint32_t pick(std::uint32_t n) { return std::uniform_int_distribution<std::uint32_t>(0, n - 1)(rng_); }

    std::string key() {
        switch (pick(20)) {
        case 0: return std::string(250, 'L');
        case 1: return std::string(251, 'M');
        case 2: return "ctl\x01key";
        default: return "k" + std::to_string(pick(14));
        }
    }
    std::string eol() {
        switch (pick(12)) {
        case 0: return "\n";
        case 1: return "";
        case 2: return "\r";
        default: return "\r\n";
        }
    }
    Bytes udp(const std::string &text) {
        FrameOptions o;
        std::uint16_t total = 1, seq = 0;
        switch (pick(30)) {
        case 0: o.ip_options = 4; break;
        case 1: o.fragment = true; break;
        case 2: total = 2; break;
        case 3: seq = 1; break;
        case 4: o.ipv6 = true; break;
        case 5: o.vlan = int(pick(4095)); break;
        case 6: o.ipv6 = o.hop_by_hop = true; o.fragment = pick(2); break;
        default: break;
        }
        Endpoint dst = pick(40) ? kServer : Endpoint{kServer.ip, 11212};
        Endpoint src = pick(12) ? kClient : Endpoint{0xC6120003u, 40000};  // 198.18.0.3: not allowed
        return udp_frame(src, dst, mc_udp(text, std::uint16_t(rng_()), seq, total), o);
    }
    Packet get() {
        std::string t = pick(6) ? "get" : "gets";
        std::uint32_t n = pick(8) ? 1 + pick(2) : 1 + pick(36);
        recent_.clear();
        for (std::uint32_t i = 0; i < n; i++) {
            recent_.push_back(!filled_.empty() && pick(2) ? filled_[pick(std::uint32_t(filled_.size()))] : key());
            t += (pick(10) ? " " : "  ") + recent_.back();
        }
        t += eol();
        if (!pick(15)) t += "delete " + key() + "\r\n";
        if (t.size() > 1600) t.resize(1600);  // a little over one datagram: still tested
        return {udp(t), false, "get: " + t};
    }
    Packet reply() {
        std::string t;
        std::uint32_t items = pick(6) ? 1 : 1 + pick(3);
        for (std::uint32_t i = 0; i < items; i++) {
            std::string k = !recent_.empty() && pick(4) ? recent_[pick(std::uint32_t(recent_.size()))] : key();
            filled_.push_back(k);
            if (filled_.size() > 6) filled_.erase(filled_.begin());
            std::uint32_t len = pick(4) ? pick(60) : pick(1400);
            std::string v(len, char('a' + pick(26)));
            std::uint32_t claimed = pick(20) ? len : len + pick(5) - 2;
            t += "VALUE " + k + " " + std::to_string(pick(3)) + " " + std::to_string(claimed);
            if (!pick(10)) t += " " + std::to_string(rng_());
            t += "\r\n" + v + (pick(30) ? "\r\n" : "xx");
        }
        t += pick(8) ? "END\r\n" : "";
        if (!pick(8)) t = "END\r\n";
        if (t.size() + 8 > BMC_MAX_PAYLOAD) t.resize(BMC_MAX_PAYLOAD - 8);
        std::uint16_t total = pick(20) ? 1 : 2;
        return {udp_frame(kServer, kClient, mc_udp(t, std::uint16_t(rng_()), 0, total)), true, "reply"};
    }
    // A text or meta command: a write of tests/writes.hpp (some in a variant the grammar
    // must follow too: a base64 key, a delay, two keys), or one that writes nothing.
    std::string text_command() {
        static const std::vector<const WriteFixture *> writes = [] {
            std::vector<const WriteFixture *> v;
            for (const auto &w : write_fixtures())
                if (w.proto != WriteFixture::Binary) v.push_back(&w);
            return v;
        }();
        static const char *others[] = {"get", "version", "verbosity"};
        const std::uint32_t i = pick(std::uint32_t(writes.size() + 3));
        std::string k = key();
        if (i >= writes.size()) return std::string(others[i - writes.size()]) + " " + k + " 1\r\n";
        std::string c = writes[i]->name;
        if (c == "gat" || c == "gats") return c + " 10 " + k + " " + key() + "\r\n";
        if (c == "ms") return c + " " + k + " 2" + (pick(5) ? "" : " b") + "\r\nhi\r\n";
        if (c == "mg") return c + " " + k + (pick(2) ? " v" : " T30 v") + "\r\n";
        if (c == "md" || c == "ma") return c + " " + k + (pick(6) ? "" : " b") + "\r\n";
        if (c == "flush_all" && pick(4)) return "delete " + k + "\r\n";
        if (c == "flush_all") return pick(2) ? "flush_all\r\n" : "flush_all 5\r\n";
        return writes[i]->make(k, "abc", "77");
    }
    Packet mutation() {
        bool tcp = pick(3);
        Bytes payload;
        if (pick(4) == 0) {
            std::uint32_t n = 1 + pick(3);
            // The binary writes of tests/writes.hpp, a get and a no-op.
            static const std::vector<const WriteFixture *> writes = [] {
                std::vector<const WriteFixture *> v;
                for (const auto &w : write_fixtures())
                    if (w.proto == WriteFixture::Binary) v.push_back(&w);
                return v;
            }();
            for (std::uint32_t i = 0; i < n; i++) {
                std::string k = key().substr(0, 250);
                const std::uint32_t w = pick(std::uint32_t(writes.size() + 2));
                Bytes b = w < writes.size() ? bytes(writes[w]->make(k, "v", "")) : bin_request(w == writes.size() ? 0x00 : 0x0a, k);
                payload.insert(payload.end(), b.begin(), b.end());
            }
        } else {
            std::string t;
            std::uint32_t n = 1 + pick(4);
            for (std::uint32_t i = 0; i < n; i++) t += text_command();
            payload = bytes(t);
        }
        if (!pick(8)) payload.resize(pick(std::uint32_t(payload.size()) + 1));  // segment cut
        FrameOptions o;
        switch (pick(8)) {
        case 0: o.ipv6 = true; o.hop_by_hop = pick(2); break;
        case 1: o.vlan = 1; o.ipv6 = pick(2); break;
        case 2: o.fragment = true; o.ipv6 = pick(2); break;
        default: break;
        }
        // Most TCP data belongs to one of a few observed connections, so that their state
        // carries across packets; some arrives on a connection nobody observes.
        if (tcp) return {tcp_frame(kClient, kServer, payload, o), false, "tcp mutation", pick(16) ? 1 + pick(4) : 0};
        Bytes m = mc_udp("", std::uint16_t(rng_()));
        m.insert(m.end(), payload.begin(), payload.end());
        return {udp_frame(kClient, kServer, m, o), false, "udp mutation"};
    }
    Packet mutate_bytes(Packet p) {
        std::uint32_t flips = 1 + pick(4);
        for (std::uint32_t i = 0; i < flips; i++) p.frame[14 + pick(std::uint32_t(p.frame.size()) - 14)] ^= std::uint8_t(1 + pick(255));
        p.what = "mutated " + p.what;
        return p;
    }
    Packet garbage() {
        Bytes payload(pick(200));
        for (auto &b : payload) b = std::uint8_t(pick(256));
        if (pick(3) == 0) {
            // BPF_PROG_TEST_RUN wants an Ethernet header, and for an skb claiming IPv4 an
            // IPv4 header's worth of bytes.
            bool egress = pick(2) == 0;
            Bytes f((egress ? 34 : 14) + pick(120));
            for (auto &b : f) b = std::uint8_t(pick(256));
            if (pick(4)) {
                f[12] = 0x08;
                f[13] = 0;
            }
            return {f, egress, "random frame"};
        }
        switch (pick(3)) {
        case 0: return {udp_frame(kClient, kServer, payload), false, "udp garbage"};
        case 1: return {tcp_frame(kClient, kServer, payload), false, "tcp garbage"};
        default: return {udp_frame(kServer, kClient, payload), true, "reply garbage"};
        }
    }
};

class Differential : public BpfFixture {
protected:
    // The generated sources: 198.18.0.2 (allowed), 198.18.0.3 (not), 2001:db8::2 (allowed).
    static Allowlist allow() { return Allowlist({Prefix::parse("198.18.0.2/32"), Prefix::parse("2001:db8::/64")}); }
    void SetUp() override {
        BMC_REQUIRE_ROOT();
        load(/*fill_guard_ns=*/0, BMC_DEFAULT_MAX_AMP, allow());
    }
};

}  // namespace

TEST_F(Differential, CoreAndBpfAgreeOnEveryPacket) {
    const std::uint32_t seed = 20261124, n = 10000;
    Corpus corpus(seed);
    OwnedCache mirror(kSmall, kLarge), expected(kSmall, kLarge);
    Datapath dp(mirror.mem(), be->config(), allow(), test_delivery());
    Observer obs(mirror.mem(), be->config());
    // The same core without its fast path for "get <key>": the two paths must agree too.
    OwnedCache general_mirror(kSmall, kLarge);
    bmc_config general_cfg = be->config();
    general_cfg.general_only = 1;
    Datapath general(general_mirror.mem(), general_cfg, allow(), test_delivery());
    Observer general_obs(general_mirror.mem(), general_cfg);
    const std::vector<Packet> prelude = corpus.every_key_length();
    std::uint32_t tx = 0, failures = 0, chunks = 0, fast_hits = 0;
    auto cpp_counters = [&] {
        Counters c = dp.counters();
        for (std::uint32_t s = 0; s < BMC_NUM_STATS; s++) c[s] += obs.counters()[s];
        return c;
    };
    // The decision trace, on for every decision: the C++ core's records of gets and fills
    // must equal the BPF programs' (but for time and where), and each get's reason must be
    // a counter that moved for its packet.
    std::vector<bmc_trace> cpp_trace;
    be->cache().global->trace_every = 1;
    dp.set_trace([&](const bmc_trace &t) { cpp_trace.push_back(t); });
    TraceRing ring(be->trace_ring_fd(), {BMC_TRACE_GET, BMC_TRACE_FILL});
    auto &bpf_trace = ring.records;
    std::uint32_t traced_gets = 0, traced_fills = 0;
    std::set<std::uint16_t> reasons;
    auto same_record = [](bmc_trace a, bmc_trace b) {
        a.time_ns = b.time_ns = 0;
        a.where = b.where = 0;
        return std::memcmp(&a, &b, sizeof a) == 0;
    };

    for (std::uint32_t i = 0; i < n + prelude.size() && failures < 5; i++) {
        Packet p = i < prelude.size() ? prelude[i] : corpus.next();
        SCOPED_TRACE("packet " + std::to_string(i) + " (" + p.what.substr(0, 120) + ")");
        copy_from(mirror, be->cache());
        copy_from(general_mirror, be->cache());
        Counters bpf_before = be->read_counters(), cpp_before = cpp_counters(), general_before = general.counters(),
                 dp_before = dp.counters();

        bpf_trace.clear();
        cpp_trace.clear();
        ProgRun r = p.egress ? tc(p.frame) : xdp(p.frame);
        Bytes cpp_frame = p.frame;
        std::uint64_t now = monotonic_ns();
        Bytes general_frame = p.frame;
        bool cpp_tx = false, general_tx = false;
        if (p.egress) {
            dp.egress(cpp_frame, now);
            general.egress(general_frame, now);
        } else {
            cpp_tx = dp.ingress(cpp_frame, now).action == Action::Tx;
            general_tx = general.ingress(general_frame, now).action == Action::Tx;
        }
        EXPECT_EQ(general_tx, cpp_tx) << "fast and general paths differ";
        EXPECT_EQ(general_frame, cpp_frame) << "fast and general paths differ";
        fast_hits += cpp_tx && p.what.rfind("hit len", 0) == 0;
        // What XDP passed, the stack delivers to memcached's socket, where the observer
        // reads it: a TCP connection's bytes through the stream reading, anything else
        // through the cgroup skb ingress program.
        if (!p.egress && r.retval == XDP_PASS) {
            auto payload = tcp_payload(p.frame);
            if (payload && p.conn) {
                stream(p.conn, *payload);
                obs.chunk(p.conn, bytes(*payload), now);
                general_obs.chunk(p.conn, bytes(*payload), now);
                chunks++;
                const Bytes want = obs.conn_state(p.conn);
                EXPECT_EQ(conn_state(p.conn, want.size()), want) << "connection state differs";
            } else if (p.frame.size() >= BMC_ETH_HLEN + 40) {  // the runner wants an IP header's worth
                EXPECT_EQ(sock_in(p.frame).retval, 1);
                obs.delivered(p.frame, now);
                general_obs.delivered(p.frame, now);
            }
        }

        bool ok = true;
        if (p.egress) {
            ok &= r.retval == TC_ACT_OK;
            EXPECT_EQ(r.retval, TC_ACT_OK);
        } else {
            EXPECT_EQ(r.retval, cpp_tx ? XDP_TX : XDP_PASS);
            EXPECT_EQ(r.out, cpp_frame);
            ok &= r.retval == (cpp_tx ? XDP_TX : XDP_PASS) && r.out == cpp_frame;
            tx += cpp_tx;
        }
        copy_from(expected, be->cache());
        mask_times(expected);
        mask_times(mirror);
        mask_times(general_mirror);
        bool mem_ok = same_memory(expected, mirror) && same_memory(expected, general_mirror);
        EXPECT_TRUE(same_memory(expected, mirror)) << "cache memory differs";
        EXPECT_TRUE(same_memory(expected, general_mirror)) << "cache memory differs from the general path's";
        Counters bpf_after = be->read_counters(), cpp_after = cpp_counters(), general_after = general.counters();
        for (std::uint32_t s = 0; s < BMC_NUM_STATS; s++) {
            EXPECT_EQ(bpf_after[s] - bpf_before[s], cpp_after[s] - cpp_before[s]) << bmc_stat_names[s];
            ok &= bpf_after[s] - bpf_before[s] == cpp_after[s] - cpp_before[s];
        }
        // The general path's datapath counters against the fast path's (each has its own
        // observer, which counts apart).
        for (std::uint32_t s = 0; s < BMC_NUM_STATS; s++) {
            EXPECT_EQ(general_after[s] - general_before[s], dp.counters()[s] - dp_before[s])
                << "general path: " << bmc_stat_names[s];
            ok &= general_after[s] - general_before[s] == dp.counters()[s] - dp_before[s];
        }
        ok &= general_tx == cpp_tx && general_frame == cpp_frame;
        ring.consume();
        EXPECT_EQ(bpf_trace.size(), cpp_trace.size()) << "trace records";
        ok &= bpf_trace.size() == cpp_trace.size();
        for (std::size_t k = 0; k < std::min(bpf_trace.size(), cpp_trace.size()); k++) {
            const bmc_trace &t = bpf_trace[k];
            EXPECT_TRUE(same_record(t, cpp_trace[k])) << "trace record " << k << " differs: "
                                                      << bmc_stat_names[t.reason % BMC_NUM_STATS] << " / "
                                                      << bmc_stat_names[cpp_trace[k].reason % BMC_NUM_STATS];
            ok &= same_record(t, cpp_trace[k]);
            ASSERT_LT(t.reason, BMC_NUM_STATS);
            EXPECT_GT(bpf_after[t.reason] - bpf_before[t.reason], 0u)
                << "the trace's reason " << bmc_stat_names[t.reason] << " is no counter this packet moved";
            traced_gets += t.what == BMC_TRACE_GET;
            traced_fills += t.what == BMC_TRACE_FILL;
            if (t.what == BMC_TRACE_GET) reasons.insert(t.reason);
        }
        failures += !(ok && mem_ok);
    }
    be->cache().global->trace_every = 0;
    // The corpus's gets traced with many reasons: a hit, misses by cause, passes.
    std::string seen;
    for (auto r : reasons) seen += std::string(bmc_stat_names[r]) + " ";
    std::printf("differential: %u gets and %u fills traced, reasons: %s\n", traced_gets, traced_fills, seen.c_str());
    EXPECT_GT(traced_gets, 1000u);
    EXPECT_GT(traced_fills, 50u);
    for (auto want : {BMC_STAT_HIT_REQS, BMC_STAT_MISS_ABSENT, BMC_STAT_PASS_MALFORMED, BMC_STAT_PASS_NOT_ALLOWED,
                      BMC_STAT_PASS_AMPLIFICATION, BMC_STAT_PASS_PARTIAL})
        EXPECT_TRUE(reasons.count(std::uint16_t(want))) << bmc_stat_names[want] << " never traced";
    // The corpus must reach the interesting paths, or agreement means little.
    Counters c = be->read_counters();
    std::printf("differential: %u packets, %u answered, %u stream chunks, %llu fills, %llu invalidations\n", n, tx, chunks,
                (unsigned long long)c[BMC_STAT_FILL_OK],
                (unsigned long long)(c[BMC_STAT_INVAL_TEXT] + c[BMC_STAT_INVAL_META] +
                                     c[BMC_STAT_INVAL_BINARY] + c[BMC_STAT_INVAL_FLUSH] +
                                     c[BMC_STAT_INVAL_GLOBAL]));
    EXPECT_GT(tx, 50u);
    // every key length from 1 to 250 hit once filled; 251 is memcached's to refuse
    EXPECT_EQ(fast_hits, BMC_MAX_KEY_LEN);
    EXPECT_GT(c[BMC_STAT_FILL_OK], 50u);
    EXPECT_GT(c[BMC_STAT_PASS_PARTIAL], 10u);
    EXPECT_GT(c[BMC_STAT_PASS_MALFORMED], 10u);
    EXPECT_GT(c[BMC_STAT_INVAL_BINARY], 10u);
    EXPECT_GT(c[BMC_STAT_INVAL_GLOBAL], 10u);
    EXPECT_GT(c[BMC_STAT_PASS_NOT_ALLOWED], 10u);
    EXPECT_GT(c[BMC_STAT_PASS_AMPLIFICATION], 10u);
    EXPECT_GT(chunks, 300u);
    EXPECT_GT(c[BMC_STAT_INVAL_UNOBSERVED], 10u);
    EXPECT_GT(c[BMC_STAT_PASS_VLAN], 0u);
    EXPECT_GT(c[BMC_STAT_PASS_IP_CSUM] + c[BMC_STAT_PASS_UDP_CSUM], 0u);
}
