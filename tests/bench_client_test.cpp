// The benchmark's instrument, tested as it runs: bench_client (bench/bench.bpf.c) through
// BPF_PROG_TEST_RUN. As generator it must build the request for its id; as sink it must
// count only exactly right replies as answers, and catch a wrong value, a wrong id, a
// miss, a reordered or incomplete multi-get and a wrong echo; its latency histogram must
// put a known delay in the bucket that holds it.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <time.h>

#include <random>

#include "client_prog.hpp"
#include "test_util.hpp"

using namespace bmc::bench;

namespace {

constexpr std::uint16_t kPort = 11211, kGenPort = 40000;

std::uint32_t ip4(const char *s) {
    std::uint32_t a;
    inet_pton(AF_INET, s, &a);
    return a;
}

std::uint64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);  // bpf_ktime_get_ns()'s clock
    return std::uint64_t(ts.tv_sec) * 1000000000ull + std::uint64_t(ts.tv_nsec);
}

struct Fixture {
    ClientConfig cfg;
    std::vector<std::uint64_t> seq = std::vector<std::uint64_t>(BENCH_IDS);
    std::unique_ptr<ClientProgram> prog;

    Fixture(unsigned width, bool echo) {
        cfg.w.keys = 1000;
        cfg.w.width = width;
        cfg.echo = echo;
        cfg.server_ip = ip4("198.18.0.1");
        cfg.client_ip = ip4("198.18.0.2");
        cfg.server_mac = {0x02, 0, 0, 0, 0, 1};
        cfg.client_mac = {0x02, 0, 0, 0, 0, 2};
        std::mt19937_64 rng(7);
        for (auto &k : seq) k = rng() % cfg.w.keys + 1;
        prog = std::make_unique<ClientProgram>(cfg, seq);
    }

    void outstanding(std::uint32_t id, std::uint64_t sent_ns = 0, std::uint32_t port_index = 0) {
        bench_request r{};
        r.sent_ns = sent_ns ? sent_ns : now_ns();
        r.outstanding = 1;
        const std::uint32_t slot = bench_slot(port_index, id);
        ASSERT_EQ(bpf_map_update_elem(prog->requests_fd(), &slot, &r, 0), 0);
    }

    bool is_outstanding(std::uint32_t id, std::uint32_t port_index) const {
        bench_request r{};
        const std::uint32_t slot = bench_slot(port_index, id);
        EXPECT_EQ(bpf_map_lookup_elem(prog->requests_fd(), &slot, &r), 0);
        return r.outstanding != 0;
    }

    // A datagram from the server to the generator's port: frame header, then payload.
    std::vector<std::uint8_t> reply(std::uint32_t id, const std::string &payload, const char *from = "198.18.0.1",
                                    std::uint16_t seq_no = 0, std::uint16_t total = 1,
                                    std::uint16_t port_index = 0) const {
        std::vector<std::uint8_t> f(14 + 20 + 8 + 8);
        std::memcpy(f.data(), cfg.client_mac.data(), 6);
        std::memcpy(f.data() + 6, cfg.server_mac.data(), 6);
        f[12] = 0x08;
        f[14] = 0x45;
        const auto ip_len = std::uint16_t(20 + 8 + 8 + payload.size());
        f[16] = std::uint8_t(ip_len >> 8), f[17] = std::uint8_t(ip_len);
        f[22] = 64, f[23] = 17;
        const std::uint32_t src = ip4(from);
        std::memcpy(f.data() + 26, &src, 4);
        std::memcpy(f.data() + 30, &cfg.client_ip, 4);
        const std::uint16_t c = bmc::ipv4_header_checksum(f.data() + 14, 20);
        std::memcpy(f.data() + 24, &c, 2);
        const std::uint16_t to = kGenPort + port_index;
        f[34] = kPort >> 8, f[35] = kPort & 0xff, f[36] = std::uint8_t(to >> 8), f[37] = std::uint8_t(to);
        const auto udp_len = std::uint16_t(8 + 8 + payload.size());
        f[38] = std::uint8_t(udp_len >> 8), f[39] = std::uint8_t(udp_len);
        f[42] = std::uint8_t(id >> 8), f[43] = std::uint8_t(id);
        f[44] = std::uint8_t(seq_no >> 8), f[45] = std::uint8_t(seq_no);
        f[46] = std::uint8_t(total >> 8), f[47] = std::uint8_t(total);
        f.insert(f.end(), payload.begin(), payload.end());
        return f;
    }

    // Runs the program once on frame; returns the verdict, the output in out.
    int run(std::vector<std::uint8_t> in, std::vector<std::uint8_t> *out = nullptr, std::uint32_t meta = 0) const {
        std::vector<std::uint8_t> buf(4096);
        xdp_md ctx{};
        ctx.data = meta;
        ctx.data_end = std::uint32_t(in.size());
        LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in.data(), .data_out = buf.data(),
                    .data_size_in = std::uint32_t(in.size()), .data_size_out = std::uint32_t(buf.size()),
                    .ctx_in = meta ? &ctx : nullptr, .ctx_size_in = meta ? std::uint32_t(sizeof ctx) : 0u);
        EXPECT_EQ(bpf_prog_test_run_opts(prog->prog_fd(), &o), 0) << std::strerror(errno);
        if (out) out->assign(buf.begin(), buf.begin() + o.data_size_out);  // the generator drops the metadata
        return int(o.retval);
    }

    ClientSnapshot delta(const std::function<void()> &f) const {
        auto before = prog->snapshot();
        f();
        return prog->snapshot() - before;
    }

    std::string joined(std::uint32_t id) const {
        std::string s;
        for (auto &i : prog->expected_items(id)) s += i;
        return s;
    }
};

void pin_to_cpu0() {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    ASSERT_EQ(sched_setaffinity(0, sizeof set, &set), 0);
}

}  // namespace

TEST(BenchClient, GeneratesTheRequestForItsId) {
    BMC_REQUIRE_ROOT();
    pin_to_cpu0();  // the generator's ids are its CPU's residue class
    Fixture fx(3, false);
    std::vector<std::uint8_t> in = fx.prog->run_input(), out;
    for (std::uint32_t id = 0; id < 3; id++) {
        ASSERT_EQ(fx.run(in, &out, ClientProgram::kMetaLen), XDP_TX);
        const std::string want = get_request(std::uint16_t(id), keys_of(id, 3, fx.seq), fx.cfg.w);
        ASSERT_EQ(out.size(), 42 + want.size());
        EXPECT_EQ(std::string(out.begin() + 42, out.end()), want) << "id " << id;
        EXPECT_EQ(std::memcmp(out.data(), fx.prog->frame().bytes, 42), 0) << "headers as in the template";
        bench_request r{};
        ASSERT_EQ(bpf_map_lookup_elem(fx.prog->requests_fd(), &id, &r), 0);
        EXPECT_EQ(r.outstanding, 1u);
        EXPECT_GT(r.sent_ns, 0u);
    }
    // A frame without metadata is never taken for a generator run.
    EXPECT_EQ(fx.run(std::vector<std::uint8_t>(in.begin() + ClientProgram::kMetaLen, in.end())), XDP_PASS);
}

TEST(BenchClient, AfterEveryIdTheNextRequestsGoFromTheNextSourcePort) {
    BMC_REQUIRE_ROOT();
    pin_to_cpu0();
    Fixture fx(1, false);
    // CPU 0's generator has sent 2^16 requests: ids 0 .. 65535 from the first port.
    const int ncpu = libbpf_num_possible_cpus();
    std::vector<bench_counters> per(std::size_t(std::max(ncpu, 1)));
    per[0].generated = BENCH_IDS;
    const std::uint32_t zero = 0;
    ASSERT_EQ(bpf_map_update_elem(fx.prog->counters_fd(), &zero, per.data(), 0), 0);
    std::vector<std::uint8_t> in = fx.prog->run_input(), out;
    ASSERT_EQ(fx.run(in, &out, ClientProgram::kMetaLen), XDP_TX);
    ASSERT_GE(out.size(), 44u);
    EXPECT_EQ(out[34] << 8 | out[35], kGenPort + 1) << "UDP source port";
    EXPECT_EQ(out[42] << 8 | out[43], 0) << "request id";
    EXPECT_TRUE(fx.is_outstanding(0, 1));
    EXPECT_FALSE(fx.is_outstanding(0, 0)) << "the first port's request with id 0 is untouched";
}

TEST(BenchClient, ALateReplyIsNeverJudgedAsTheNextRequestWithItsId) {
    BMC_REQUIRE_ROOT();
    Fixture fx(2, false);
    const std::uint32_t id = 9;
    const std::string good = fx.joined(id) + "END\r\n";
    // The request from the first port is still unanswered when its id comes round again,
    // from the second port; the first one's reply then arrives.
    fx.outstanding(id, 0, 0);
    fx.outstanding(id, 0, 1);
    auto d = fx.delta([&] { fx.run(fx.reply(id, good, "198.18.0.1", 0, 1, 0)); });
    EXPECT_EQ(d.c.answered, 1u);
    EXPECT_FALSE(fx.is_outstanding(id, 0));
    EXPECT_TRUE(fx.is_outstanding(id, 1)) << "the later request waits for its own reply";
    // Its first item only, then its end: incomplete, as it is.
    const std::string first = fx.prog->expected_items(id)[0];
    d = fx.delta([&] {
        fx.run(fx.reply(id, first, "198.18.0.1", 0, 1, 1));
        fx.run(fx.reply(id, "END\r\n", "198.18.0.1", 0, 1, 1));
    });
    EXPECT_EQ(d.c.incomplete, 1u);
    EXPECT_EQ(d.c.answered + d.c.wrong + d.c.unexpected, 0u);
    // A port beyond the generator's range is not the generator's.
    EXPECT_EQ(fx.run(fx.reply(id, good, "198.18.0.1", 0, 1, BENCH_PORTS)), XDP_PASS);
}

TEST(BenchClient, CountsOnlyTheExactReplyAsAnAnswer) {
    BMC_REQUIRE_ROOT();
    Fixture fx(1, false);
    const std::uint32_t id = 17;
    const std::string good = fx.joined(id) + "END\r\n";

    fx.outstanding(id);
    auto d = fx.delta([&] { EXPECT_EQ(fx.run(fx.reply(id, good)), XDP_DROP); });
    EXPECT_EQ(d.c.answered, 1u);
    EXPECT_EQ(d.c.wrong + d.c.missed + d.c.unexpected + d.c.bad_header, 0u);
    EXPECT_EQ(d.latency_count(), 1u);

    // the same reply again: nothing is outstanding for the id any more
    d = fx.delta([&] { fx.run(fx.reply(id, good)); });
    EXPECT_EQ(d.c.unexpected, 1u);
    EXPECT_EQ(d.c.answered, 0u);

    // one byte of the value changed
    std::string bad = good;
    bad[bad.size() - 9] ^= 1;
    fx.outstanding(id);
    d = fx.delta([&] { fx.run(fx.reply(id, bad)); });
    EXPECT_EQ(d.c.wrong, 1u);
    EXPECT_EQ(d.c.answered, 0u);
    EXPECT_EQ(d.latency_count(), 0u);

    // another request's (right) reply under this id
    const std::uint32_t other = 18;
    ASSERT_NE(fx.joined(other), fx.joined(id)) << "the key sequence gives ids 17 and 18 different keys";
    fx.outstanding(id);
    d = fx.delta([&] { fx.run(fx.reply(id, fx.joined(other) + "END\r\n")); });
    EXPECT_EQ(d.c.wrong, 1u);

    // a reply for an id that was never sent
    d = fx.delta([&] { fx.run(fx.reply(4242, fx.joined(4242) + "END\r\n")); });
    EXPECT_EQ(d.c.unexpected, 1u);
    EXPECT_EQ(d.c.answered, 0u);

    // a miss
    fx.outstanding(id);
    d = fx.delta([&] { fx.run(fx.reply(id, "END\r\n")); });
    EXPECT_EQ(d.c.missed, 1u);
    EXPECT_EQ(d.c.answered, 0u);

    // from another address, or with a sequence number: not a reply to the generator
    fx.outstanding(id);
    d = fx.delta([&] {
        fx.run(fx.reply(id, good, "198.18.0.3"));
        fx.run(fx.reply(id, good, "198.18.0.1", 1, 2));
    });
    EXPECT_EQ(d.c.bad_header, 2u);
    EXPECT_EQ(d.c.answered, 0u);
}

TEST(BenchClient, MultiGetInMemcachedsDatagramsOrTheCachesOne) {
    BMC_REQUIRE_ROOT();
    Fixture fx(3, false);
    const std::uint32_t id = 5;
    const auto items = fx.prog->expected_items(id);
    ASSERT_EQ(items.size(), 3u);

    // memcached 1.6: one datagram per item, END with the last
    fx.outstanding(id);
    auto d = fx.delta([&] {
        fx.run(fx.reply(id, items[0]));
        fx.run(fx.reply(id, items[1]));
        fx.run(fx.reply(id, items[2] + "END\r\n"));
    });
    EXPECT_EQ(d.c.answered, 1u);
    EXPECT_EQ(d.c.datagrams, 3u);

    // the cache: every item in one datagram
    fx.outstanding(id);
    d = fx.delta([&] { fx.run(fx.reply(id, items[0] + items[1] + items[2] + "END\r\n")); });
    EXPECT_EQ(d.c.answered, 1u);

    // the right items in the wrong order
    fx.outstanding(id);
    d = fx.delta([&] { fx.run(fx.reply(id, items[1] + items[0] + items[2] + "END\r\n")); });
    EXPECT_EQ(d.c.wrong, 1u);

    // a datagram lost on the way
    fx.outstanding(id);
    d = fx.delta([&] {
        fx.run(fx.reply(id, items[0]));
        fx.run(fx.reply(id, items[2] + "END\r\n"));
    });
    EXPECT_EQ(d.c.incomplete, 1u);
    EXPECT_EQ(d.c.answered, 0u);

    // one item too many
    fx.outstanding(id);
    d = fx.delta([&] { fx.run(fx.reply(id, items[0] + items[1] + items[2] + items[2] + "END\r\n")); });
    EXPECT_EQ(d.c.wrong, 1u);
}

TEST(BenchClient, EchoIsTheRequestWithAddressesSwapped) {
    BMC_REQUIRE_ROOT();
    Fixture fx(1, true);
    const std::uint32_t id = 9;
    const std::string req = get_request(std::uint16_t(id), keys_of(id, 1, fx.seq), fx.cfg.w).substr(8);
    fx.outstanding(id);
    auto d = fx.delta([&] { fx.run(fx.reply(id, req)); });
    EXPECT_EQ(d.c.answered, 1u);

    std::string bad = req;
    bad[5] ^= 1;  // a byte of the key
    fx.outstanding(id);
    d = fx.delta([&] { fx.run(fx.reply(id, bad)); });
    EXPECT_EQ(d.c.wrong, 1u);
}

TEST(BenchClient, AKnownDelayLandsInItsBucket) {
    BMC_REQUIRE_ROOT();
    Fixture fx(1, false);
    const std::uint32_t id = 3;
    for (std::uint64_t delay : {2000ull, 50000ull, 1000000ull, 25000000ull}) {
        const std::uint64_t start = now_ns();
        fx.outstanding(id, start - delay);
        ClientSnapshot d = fx.delta([&] { fx.run(fx.reply(id, fx.joined(id) + "END\r\n")); });
        const std::uint64_t bound = now_ns() - start + delay;  // the longest the round trip can be
        ASSERT_EQ(d.latency_count(), 1u);
        std::uint32_t b = 0;
        while (!d.hist[b]) b++;
        EXPECT_LE(bench_hist_lower(b), bound) << "delay " << delay;
        EXPECT_GT(bench_hist_lower(b + 1), delay) << "delay " << delay;
        // the bucket is at most 1/16 of its values wide
        EXPECT_LE(bench_hist_lower(b + 1) - bench_hist_lower(b), std::max<std::uint64_t>(1, bench_hist_lower(b) / 16));
    }
}

TEST(BenchHistogram, EveryValueLiesInItsBucket) {
    std::mt19937_64 rng(1);
    for (int i = 0; i < 200000; i++) {
        const std::uint64_t v = rng() >> (rng() % 40 + 24);
        const std::uint32_t b = bench_hist_bucket(v);
        ASSERT_LE(bench_hist_lower(b), v) << v;
        ASSERT_GT(bench_hist_lower(b + 1), v) << v;
    }
    for (std::uint64_t v = 0; v < 100000; v++) {
        const std::uint32_t b = bench_hist_bucket(v);
        ASSERT_TRUE(bench_hist_lower(b) <= v && v < bench_hist_lower(b + 1)) << v;
    }
}
