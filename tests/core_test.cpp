// Unit tests of core/: hash, layout, command table, grammar and the C++ datapath.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "bmc_binary.h"
#include "datapath.hpp"
#include "packet.hpp"
#include "stream_cases.hpp"
#include "scenarios.hpp"
#include "test_util.hpp"
#include "writes.hpp"

using namespace bmc;
using namespace bmc::test;

namespace {

struct Event {
    std::uint32_t act;
    std::string key;  // for BMC_ACT_KEY
    std::uint8_t family;
    bool operator==(const Event &) const = default;
};

struct ScanResult {
    std::vector<Event> events;
    bmc_scan st;
};

// Runs the shared text grammar over `text` the way the datapath does.
ScanResult scan(const std::string &text, bool get_allowed) {
    ScanResult r;
    bmc_scan_init(&r.st, 0, get_allowed);
    for (std::size_t i = 0; i < text.size(); i++) {
        bool next_lf = i + 1 < text.size() && text[i + 1] == '\n';
        std::uint32_t act = bmc_scan_step(&r.st, std::uint8_t(text[i]), next_lf);
        if (!act) continue;
        Event e{act, "", r.st.family};
        if (act & BMC_ACT_KEY) e.key = text.substr(r.st.key_start, r.st.key_len);
        r.events.push_back(e);
    }
    return r;
}

std::vector<std::string> keys_of(const ScanResult &r) {
    std::vector<std::string> k;
    for (auto &e : r.events)
        if (e.act & BMC_ACT_KEY) k.push_back(e.key);
    return k;
}

std::uint32_t all_acts(const ScanResult &r) {
    std::uint32_t a = 0;
    for (auto &e : r.events) a |= e.act;
    return a;
}

std::uint32_t fnv(const std::string &s) {
    return bmc_hash_bytes(reinterpret_cast<const __u8 *>(s.data()), std::uint32_t(s.size()));
}

}  // namespace

TEST(Hash, IsFnv1a32) {
    EXPECT_EQ(fnv(""), 0x811c9dc5u);
    EXPECT_EQ(fnv("a"), 0xe40c292cu);
    EXPECT_EQ(fnv("foobar"), 0xbf9cf968u);
}

TEST(Hash, TokenHashEqualsBufferHash) {
    auto r = scan("delete some:key\r\n", false);
    ASSERT_EQ(keys_of(r), std::vector<std::string>{"some:key"});
    EXPECT_EQ(r.st.key_hash, fnv("some:key"));
}

// The AF_XDP poller's prefetch hint reads the key at fixed offsets; it must find the
// key the datapath hashes for every shape it takes (else it loads another bucket), and
// take nothing else.
TEST(Hash, ThePollersHintHashesTheKeyOfASingleKeyGet) {
    for (FrameOptions o : {FrameOptions{}, FrameOptions{.ip_options = 8}, FrameOptions{.ipv6 = true}}) {
        const Bytes f = udp_frame(kClient, kServer, mc_udp("get some:key\r\n"), o);
        EXPECT_EQ(bmc::hinted_key_hash(f.data(), std::uint32_t(f.size())), fnv("some:key"))
            << "options " << int(o.ip_options) << " ipv6 " << o.ipv6;
    }
    for (const Bytes &f : {udp_frame(kClient, kServer, mc_udp("gets some:key\r\n")),
                           udp_frame(kClient, kServer, mc_udp("get k\r\n"), {.vlan = 7}),
                           tcp_frame(kClient, kServer, bytes("12345678get some:key\r\n"))})
        EXPECT_EQ(bmc::hinted_key_hash(f.data(), std::uint32_t(f.size())), std::nullopt);
    const Bytes f = udp_frame(kClient, kServer, mc_udp("get some:key\r\n"));
    EXPECT_EQ(bmc::hinted_key_hash(f.data(), 50), std::nullopt) << "cut before the key";
}

TEST(Layout, SmallItemFitsOneCacheLinePair) {
    EXPECT_EQ(sizeof(bmc_small_entry), 128u);
    EXPECT_EQ(alignof(bmc_small_bucket), 64u);
    EXPECT_EQ(sizeof(bmc_small_bucket) % 64, 0u);
    // "VALUE <16-byte key> 0 32\r\n<32 bytes>\r\n"
    const std::size_t item = 6 + 16 + 6 + 32 + 2 + 1;
    EXPECT_LE(item, BMC_SMALL_DATA);
    EXPECT_LT(sizeof(bmc_small_entry), 1320u / 10);
}

TEST(Layout, LargestReplyItemFitsLargeEntry) {
    // frame header + item + END must fit one 1472-byte UDP payload
    EXPECT_GE(BMC_LARGE_DATA, BMC_MAX_PAYLOAD - BMC_FRAME_HDR_LEN - 5);
}

TEST(Commands, EveryKeyedTextCommandNamesItsKey) {
    for (const auto &spec : bmc_cmd_specs) {
        if (spec.kind != BMC_KIND_KEYED) continue;
        const std::string cmd(spec.name);
        auto r = scan(cmd + " k1 0 0 1\r\n", false);
        EXPECT_EQ(keys_of(r), std::vector<std::string>{"k1"}) << cmd;
        EXPECT_EQ(r.events.at(0).family, BMC_FAM_TEXT) << cmd;
    }
}

TEST(Commands, MultiKeyCommandsInvalidateEveryKey) {
    for (const auto &spec : bmc_cmd_specs) {
        if (spec.kind != BMC_KIND_MULTIKEY) continue;
        const std::string cmd(spec.name);
        auto r = scan(cmd + " 100 a bb ccc\r\n", false);
        EXPECT_EQ(keys_of(r), (std::vector<std::string>{"a", "bb", "ccc"})) << cmd;
    }
}

TEST(Commands, FlushAllIsGlobal) {
    EXPECT_EQ(all_acts(scan("flush_all\r\n", false)), BMC_ACT_FLUSH);
    EXPECT_EQ(all_acts(scan("flush_all 10 noreply\r\n", false)), BMC_ACT_FLUSH | BMC_ACT_FLUSH_AT);
}

TEST(Commands, MetaMutationsInvalidateAtLineEnd) {
    for (std::string cmd : {"ms k 2 T0", "md k q", "ma k N0 D5"}) {
        auto r = scan(cmd + "\r\n", false);
        ASSERT_EQ(r.events.size(), 1u) << cmd;
        EXPECT_EQ(r.events[0].act, cmd[1] == 's' ? (BMC_ACT_KEY | BMC_ACT_DATA) : BMC_ACT_KEY) << cmd;
        EXPECT_EQ(r.events[0].key, "k") << cmd;
        EXPECT_EQ(r.events[0].family, BMC_FAM_META) << cmd;
    }
}

TEST(Commands, MetaGetMutatesOnlyWithVivifyOrTouch) {
    EXPECT_TRUE(scan("mg k v f t\r\n", false).events.empty());
    EXPECT_EQ(keys_of(scan("mg k v T30\r\n", false)), std::vector<std::string>{"k"});
    EXPECT_EQ(keys_of(scan("mg k N30 v\r\n", false)), std::vector<std::string>{"k"});
}

TEST(Commands, Base64MetaKeyInvalidatesEverything) {
    EXPECT_EQ(all_acts(scan("md a2V5 b\r\n", false)), BMC_ACT_GLOBAL);
}

TEST(Commands, SeveralCommandsPerSegmentWithDataBlocks) {
    auto r = scan("set a 0 0 3\r\nxyz\r\nget q\r\ndelete b\r\nincr c 1\r\nms d 2\r\nhi\r\n", false);
    EXPECT_EQ(keys_of(r), (std::vector<std::string>{"a", "b", "c", "d"}));
}

TEST(Commands, BareNewlineEndsLines) {
    EXPECT_EQ(keys_of(scan("delete a\ndelete b\n", false)), (std::vector<std::string>{"a", "b"}));
}

TEST(Commands, CarriageReturnInsideAKeyBelongsToTheKey) {
    EXPECT_EQ(keys_of(scan("delete a\rb\r\n", false)), std::vector<std::string>{"a\rb"});
}

TEST(Commands, NonMutationsDoNothing) {
    for (std::string line : {"get a b", "gets a", "stats", "version", "verbosity 1", "mn", "me k",
                             "SET a 0 0 1", "sets a"})
        EXPECT_TRUE(scan(line + "\r\n", false).events.empty()) << line;
}

TEST(BinaryOpcodes, MutationsAndFlushes) {
    for (int op : {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0e, 0x0f, 0x1c, 0x1d, 0x1e, 0x11, 0x12,
                   0x13, 0x14, 0x15, 0x16, 0x19, 0x1a, 0x23, 0x24})
        EXPECT_TRUE(bmc_bin_in_map(bmc_bin_mut_map, __u8(op))) << op;
    for (int op : {0x00, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x10, 0x07, 0x17, 0x1b})
        EXPECT_FALSE(bmc_bin_in_map(bmc_bin_mut_map, __u8(op))) << op;
    EXPECT_TRUE(bmc_bin_in_map(bmc_bin_flush_map, 0x08));
    EXPECT_TRUE(bmc_bin_in_map(bmc_bin_flush_map, 0x18));
}

TEST(BinaryOpcodes, HeaderParse) {
    auto b = bin_request(0x01, "key", std::string(8, '\0'), "value");
    bmc_bin_req r;
    ASSERT_EQ(bmc_bin_parse(b.data(), &r), 0);
    EXPECT_EQ(r.opcode, 0x01);
    EXPECT_EQ(r.key_len, 3);
    EXPECT_EQ(r.ext_len, 8);
    EXPECT_EQ(r.body_len, 16u);
    b[0] = 0x81;
    EXPECT_NE(bmc_bin_parse(b.data(), &r), 0);
}

TEST(GetGrammar, SingleAndMultiKey) {
    EXPECT_EQ(keys_of(scan("get a\r\n", true)), std::vector<std::string>{"a"});
    auto r = scan("get a  b c\r\n", true);
    EXPECT_EQ(keys_of(r), (std::vector<std::string>{"a", "b", "c"}));
    EXPECT_TRUE(all_acts(r) & BMC_ACT_GET_END);
    EXPECT_TRUE(all_acts(scan("get a\n", true)) & BMC_ACT_GET_END);
}

TEST(GetGrammar, UpToMaxKeys) {
    std::string line = "get";
    for (std::uint32_t i = 0; i < BMC_MAX_KEYS; i++) line += " k" + std::to_string(i);
    auto r = scan(line + "\r\n", true);
    EXPECT_EQ(keys_of(r).size(), BMC_MAX_KEYS);
    EXPECT_FALSE(all_acts(r) & BMC_ACT_BAD);
    EXPECT_GE(BMC_MAX_KEYS, 30u);
    auto over = scan(line + " one-more\r\n", true);
    EXPECT_TRUE(all_acts(over) & BMC_ACT_BAD);
    EXPECT_EQ(over.st.bad_reason, BMC_STAT_PASS_TOO_MANY_KEYS);
}

TEST(GetGrammar, KeyLengthLimit) {
    auto ok = scan("get " + std::string(250, 'k') + "\r\n", true);
    EXPECT_EQ(keys_of(ok).at(0).size(), 250u);
    EXPECT_FALSE(all_acts(ok) & BMC_ACT_BAD);
    auto bad = scan("get " + std::string(251, 'k') + "\r\n", true);
    EXPECT_TRUE(keys_of(bad).empty());
    EXPECT_EQ(bad.st.bad_reason, BMC_STAT_PASS_MALFORMED);
}

TEST(GetGrammar, MalformedLines) {
    for (std::string text : {"get\r\n", "get \r\n", "get a\x01\r\n", "get a\tb\r\n", "get a\rb\r\n",
                             "get \x7f\r\n", "\r\n", "GET a\r\n", "getx a\r\n"}) {
        auto r = scan(text, true);
        EXPECT_FALSE(all_acts(r) & BMC_ACT_GET_END) << text;
    }
}

TEST(GetGrammar, GetsIsRecognisedButNotLookedUp) {
    auto r = scan("gets a b\r\n", true);
    EXPECT_TRUE(keys_of(r).empty());
    EXPECT_TRUE(all_acts(r) & BMC_ACT_GET_END);
    EXPECT_EQ(bmc_cmd_table[r.st.first_cmd].kind, BMC_KIND_GETS);
}

TEST(ReplyGrammar, ValueLine) {
    auto r = scan("VALUE key 5 11\r\n", false);
    EXPECT_TRUE(all_acts(r) & BMC_ACT_VALUE);
    EXPECT_EQ(r.st.value_bytes, 11u);
    EXPECT_FALSE(r.st.value_cas);
    auto c = scan("VALUE key 5 11 987\r\n", false);
    EXPECT_TRUE(c.st.value_cas);
    EXPECT_FALSE(all_acts(scan("VALUE key 5 x1\r\n", false)) & BMC_ACT_VALUE);
    EXPECT_FALSE(all_acts(scan("VALUE key 5\r\n", false)) & BMC_ACT_VALUE);
}

// ---- every write: the fixtures of tests/writes.hpp against the command table -------------

// A new mutating row in the command table needs its fixture; a fixture needs its row.
TEST(Writes, EveryMutatingCommandHasAFixture) {
    const std::vector<std::string> rows = mutating_commands();
    for (const auto &name : rows)
        EXPECT_NE(write_fixture(name), nullptr) << name << ": add its fixture to tests/writes.hpp";
    for (const auto &w : write_fixtures())
        EXPECT_NE(std::find(rows.begin(), rows.end(), w.name), rows.end())
            << w.name << ": a fixture for no row of the command table";
    EXPECT_EQ(write_fixtures().size(), rows.size());
}

// The C++ observer reads every fixture as the write it is, over TCP and in a datagram: its
// counter moves by the fixture's count, and a keyed write moves its key's bucket.
TEST(Writes, EveryFixtureIsObservedAsItsWrite) {
    for (const WriteFixture &w : write_fixtures()) {
        for (const bool tcp : {true, false}) {
            SCOPED_TRACE(w.name + (tcp ? " over TCP" : " in a datagram"));
            OwnedCache cache{1024, 16};
            const bmc_config cfg = test_config(1024, 16);
            Observer obs{cache.mem(), cfg};
            const std::string req = w.make("wkey", "v1", "5");
            if (tcp)
                obs.chunk(1, bytes(req), 1000);
            else
                obs.datagram(mc_udp(req), 1000);
            EXPECT_EQ(obs.counters()[w.counter], w.count);
            if (w.effect == WriteFixture::Flushes)
                EXPECT_NE(cache.global.epoch, 0u);
            else
                EXPECT_NE(cache.small[bmc_hash_bytes(reinterpret_cast<const __u8 *>("wkey"), 4) & cfg.small_mask].hdr.gen, 0u);
        }
    }
}

// ---- the C++ datapath over memory the test owns ------------------------------------------

class CoreDatapath : public ::testing::Test {
protected:
    OwnedCache cache{64, 16};
    Datapath dp{cache.mem(), test_config(64, 16), Allowlist::everyone(), test_delivery()};
    Observer obs{cache.mem(), test_config(64, 16)};
    std::uint64_t now = 1000000000000ULL;

    Action rx(Bytes &f) { return dp.ingress(f, now += 1000).action; }
    void tx(const Bytes &f) { dp.egress(f, now += 1000); }
    // A write as memcached's socket reads it: on TCP connection 1, or as a datagram.
    void write(const std::string &text) { obs.chunk(1, bytes(text), now += 1000); }
    void write_udp(const std::string &text) { obs.datagram(mc_udp(text), now += 1000); }
    std::uint64_t count(bmc_stat s) const { return dp.counters()[s] + obs.counters()[s]; }
    // miss, then memcached's reply fills
    void warm(const std::string &key, const std::string &item) {
        Bytes req = get_request("get " + key + "\r\n");
        ASSERT_EQ(rx(req), Action::Pass);
        tx(reply_frame(item + "END\r\n"));
    }
};

// The scenario table (tests/scenarios.hpp) on the C++ core; bpf_test runs it on BPF.
class CoreScenarios : public ::testing::TestWithParam<Scenario>, public ScenarioTarget {
protected:
    OwnedCache cache{64, 16};
    Datapath dp{cache.mem(), test_config(64, 16), Allowlist::everyone(), test_delivery()};
    Observer obs{cache.mem(), test_config(64, 16)};
    std::uint64_t now = 1000000000000ULL;

    bool ingress(const Bytes &frame, Bytes &out) override {
        out = frame;
        return dp.ingress(out, now += 1000).action == Action::Tx;
    }
    void egress(const Bytes &frame) override { dp.egress(frame, now += 1000); }
    void stream(std::uint64_t conn, const std::string &b) override { obs.chunk(conn, bytes(b), now += 1000); }
    void datagram(const Bytes &frame) override { obs.delivered(frame, now += 1000); }
    std::uint64_t count(bmc_stat s) override { return dp.counters()[s] + obs.counters()[s]; }
};

TEST_P(CoreScenarios, Runs) { run_scenario(GetParam(), *this); }

INSTANTIATE_TEST_SUITE_P(Table, CoreScenarios, ::testing::ValuesIn(scenarios()),
                         [](const auto &info) { return std::string(info.param.name); });

TEST_F(CoreDatapath, OldEntriesAreNotServed) {
    warm("old", "VALUE old 0 1\r\n1\r\n");
    now += dp.config().max_age_ns + 1;
    Bytes req = get_request("get old\r\n");
    EXPECT_EQ(rx(req), Action::Pass);
}

// ---- allowlist and amplification -----------------------------------------------------------

TEST(Allowlist, ParsesAndMatchesBothFamilies) {
    auto v4 = Prefix::parse("198.18.0.0/15");
    EXPECT_EQ(v4.len, 96u + 15);
    EXPECT_EQ(v4.str(), "198.18.0.0/15");
    std::uint8_t a[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 19, 7, 7};
    EXPECT_TRUE(v4.contains(a, 4));
    EXPECT_FALSE(v4.contains(a, 6)) << "an IPv6 client with a v4-mapped source is no IPv4 client";
    a[13] = 20;
    EXPECT_FALSE(v4.contains(a, 4));
    auto v6 = Prefix::parse("2001:db8::/32");
    std::uint8_t b[16] = {0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4};
    EXPECT_TRUE(v6.contains(b, 6));
    b[3] = 0xb9;
    EXPECT_FALSE(v6.contains(b, 6));
    EXPECT_EQ(Prefix::parse("10.1.2.3").str(), "10.1.2.3/32");
    EXPECT_EQ(Prefix::parse("10.1.2.3/8").str(), "10.0.0.0/8");  // host bits dropped
    for (auto bad : {"10.0.0.0/33", "10.0.0/8", "fe80::/129", "x", "1.2.3.4/", "1.2.3.4/-1"})
        EXPECT_THROW(Prefix::parse(bad), std::invalid_argument) << bad;
}

TEST(Allowlist, AnIpv6PrefixAdmitsIpv6ClientsOnlyUnlessWrittenV4Mapped) {
    std::uint8_t v4client[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 2};
    std::uint8_t v6client[16] = {0x20, 0x01, 0, 2};
    Allowlist any6({Prefix::parse("::/0")});
    EXPECT_FALSE(any6.contains(v4client, 4));
    EXPECT_TRUE(any6.contains(v6client, 6));
    Allowlist mapped({Prefix::parse("::ffff:198.18.0.0/111")});
    EXPECT_TRUE(mapped.contains(v4client, 4));
    EXPECT_EQ(mapped.prefixes()[0].str(), "198.18.0.0/15");
    EXPECT_TRUE(Allowlist::everyone().contains(v4client, 4));
    EXPECT_TRUE(Allowlist::everyone().contains(v6client, 6));
}

TEST(Allowlist, ClientsOutsideAreLeftToMemcachedWithoutALease) {
    OwnedCache cache(64, 16);
    Datapath dp(cache.mem(), test_config(64, 16), Allowlist({Prefix::parse("203.0.113.0/24")}), test_delivery());
    std::uint64_t now = 1000000000000ULL;
    Bytes req = get_request("get k\r\n");
    ASSERT_EQ(dp.ingress(req, now += 1000).action, Action::Pass);  // no lease for an outsider
    dp.egress(reply_frame("VALUE k 0 1\r\n1\r\nEND\r\n"), now += 1000);
    EXPECT_EQ(dp.counters()[BMC_STAT_FILL_NO_LEASE], 1u);
    EXPECT_EQ(dp.counters()[BMC_STAT_PASS_NOT_ALLOWED], 1u);
    EXPECT_EQ(dp.counters()[BMC_STAT_MISS_KEYS], 0u);
}

TEST(Amplification, RepliesOverTheLimitGoToMemcached) {
    OwnedCache cache(64, 16);
    Datapath dp(cache.mem(), test_config(64, 16, BMC_DEFAULT_MAX_AMP), Allowlist::everyone(), test_delivery());
    std::uint64_t now = 1000000000000ULL;
    const std::string v(200, 'v');
    Bytes miss = get_request("get k\r\n");
    dp.ingress(miss, now += 1000);
    dp.egress(reply_frame("VALUE k 0 200\r\n" + v + "\r\nEND\r\n"), now += 1000);
    Bytes req = get_request("get k\r\n");  // 15 bytes asking for 229
    EXPECT_EQ(dp.ingress(req, now += 1000).action, Action::Pass);
    EXPECT_EQ(dp.counters()[BMC_STAT_PASS_AMPLIFICATION], 1u);
    // Padding the request with spaces to a tenth of the reply is answered.
    Bytes padded = get_request("get k" + std::string(20, ' ') + "\r\n");
    EXPECT_EQ(dp.ingress(padded, now += 1000).action, Action::Tx);
}

TEST_F(CoreDatapath, DelayedFlushStopsServingNoLaterThanMemcachedCould) {
    warm("old", "VALUE old 0 1\r\n1\r\n");
    write("flush_all 5\r\n");  // flushes at once too: stricter than memcached
    EXPECT_EQ(count(BMC_STAT_INVAL_FLUSH), 1u);
    const std::uint64_t t0 = now;
    now += 20000000;  // past the fill guard
    warm("mid", "VALUE mid 0 1\r\n2\r\n");  // stored before the deadline
    Bytes a = get_request("get mid\r\n");
    EXPECT_EQ(rx(a), Action::Tx);
    // memcached may drop it from now + 5 s - 2 s on: the cache stops serving it then.
    now = t0 + 3000000000ULL;
    Bytes b = get_request("get mid\r\n");
    EXPECT_EQ(rx(b), Action::Pass);
    // Stored before memcached's latest deadline: as good as gone, never served.
    warm("late", "VALUE late 0 1\r\n3\r\n");
    Bytes c = get_request("get late\r\n");
    EXPECT_EQ(rx(c), Action::Pass);
    now = t0 + 5000000000ULL + 20000000;
    warm("new", "VALUE new 0 1\r\n4\r\n");  // stored after every possible deadline
    Bytes d = get_request("get new\r\n");
    EXPECT_EQ(rx(d), Action::Tx);
}

TEST(Commands, FlushAllDelayIsParsed) {
    auto r = scan("flush_all 15\r\n", false);
    EXPECT_EQ(all_acts(r), BMC_ACT_FLUSH | BMC_ACT_FLUSH_AT);
    EXPECT_EQ(all_acts(scan("flush_all 0\r\n", false)), BMC_ACT_FLUSH);
    EXPECT_EQ(all_acts(scan("flush_all noreply\r\n", false)), BMC_ACT_FLUSH);
}

// ---- the write observer's reading (core/bmc_stream.h) ----------------------------------

namespace {

struct ObservedCache {
    OwnedCache cache{1024, 16};
    bmc_config cfg = test_config(1024, 16);
    Observer obs{cache.mem(), cfg};
    std::uint64_t now = 1000000000000ULL;
    std::uint32_t gen(const std::string &key) {
        return cache.small[fnv(key) & cfg.small_mask].hdr.gen;
    }
};

}  // namespace

class StreamTable : public ::testing::TestWithParam<StreamCase> {};

TEST_P(StreamTable, CoreReadsTheStreamAsMemcachedDoes) {
    const StreamCase &c = GetParam();
    ObservedCache o;
    for (const auto &k : c.changed)
        for (const auto &u : c.unchanged)
            ASSERT_NE(fnv(k) & 1023, fnv(u) & 1023) << "keys share a bucket: the case proves nothing";
    for (const auto &chunk : c.chunks) o.obs.chunk(7, bytes(chunk), o.now += 1000);
    const bool flushed = o.cache.global.epoch != 0;
    EXPECT_EQ(flushed, c.flush);
    for (const auto &k : c.changed) EXPECT_TRUE(flushed || o.gen(k) != 0) << k;
    for (const auto &k : c.unchanged) EXPECT_EQ(o.gen(k), 0u) << k;
    EXPECT_EQ(o.obs.lost(7), c.lost);
}

INSTANTIATE_TEST_SUITE_P(Cases, StreamTable, ::testing::ValuesIn(stream_cases()),
                         [](const auto &info) { return std::string(info.param.name); });

TEST(Stream, AWriteSplitAtEveryBytePositionInvalidatesOnceComplete) {
    for (const auto &[w, key] : split_writes()) {
        for (std::size_t at = 1; at < w.size(); at++) {
            ObservedCache o;
            o.obs.chunk(1, bytes(w.substr(0, at)), o.now += 1000);
            const std::uint32_t before = o.gen(key);
            o.obs.chunk(1, bytes(w.substr(at)), o.now += 1000);
            // Invalidated again when the last byte arrives: memcached applies it then.
            EXPECT_GT(o.gen(key), before) << "split at " << at << " of " << w;
            EXPECT_EQ(o.cache.small[fnv(key) & 1023].hdr.last_inval_ns, o.now) << "split at " << at;
        }
    }
}

TEST(Stream, FlushAllSplitAtEveryBytePositionIsAFlushWithItsDelay) {
    const std::string w = "flush_all 30\r\n";
    for (std::size_t at = 1; at < w.size(); at++) {
        ObservedCache o;
        o.obs.chunk(1, bytes(w.substr(0, at)), o.now += 1000);
        o.obs.chunk(1, bytes(w.substr(at)), o.now += 1000);
        EXPECT_EQ(o.cache.global.epoch, 1u) << at;
        EXPECT_NE(o.cache.global.flush_at_ns, 0u) << at;
        EXPECT_GE(o.cache.global.flush_cutoff_ns, o.now + 30000000000ULL - 1000) << at;
    }
}

TEST(Stream, ALostConnectionFlushesOnEveryChunk) {
    ObservedCache o;
    o.obs.chunk(1, bytes("set k 0 0 +1\r\n"), o.now += 1000);
    const auto epoch = o.cache.global.epoch;
    EXPECT_GT(epoch, 0u);
    o.obs.chunk(1, bytes("x\r\n"), o.now += 1000);
    o.obs.chunk(1, bytes("get y\r\n"), o.now += 1000);
    EXPECT_EQ(o.cache.global.epoch, epoch + 2);
    EXPECT_EQ(o.obs.counters()[BMC_STAT_INVAL_LOST], 3u);
}

TEST(Stream, UdpDatagramsAreReadOneByOne) {
    ObservedCache o;
    o.obs.datagram(mc_udp("set ka 0 0 9\r\ndelete kb\r\nmd kc\r\n"), o.now += 1000);
    EXPECT_NE(o.gen("ka"), 0u);
    EXPECT_EQ(o.gen("kb"), 0u);
    EXPECT_NE(o.gen("kc"), 0u);
    o.obs.datagram(mc_udp("delete kd\r\n", 1, 0, 2), o.now += 1000);  // memcached refuses multi-datagram
    EXPECT_EQ(o.gen("kd"), 0u);
    o.obs.datagram(mc_udp("set ke 0 0 5\r\nab"), o.now += 1000);  // cut in its data
    EXPECT_EQ(o.cache.global.epoch, 1u);
}

namespace {

// The frame's headers parsed as the datapaths parse them.
struct Parsed {
    bmc_scratch sc{};
    bmc_frame f{};
    explicit Parsed(const Bytes &frame) {
        const auto n = std::uint32_t(std::min<std::size_t>(frame.size(), BMC_HDR_MAX));
        std::copy(frame.begin(), frame.begin() + n, sc.hdr);
        bmc_parse_frame(&sc, std::uint32_t(frame.size()), n, BMC_DEFAULT_PORT, &f);
    }
};

std::array<std::uint8_t, 16> dst_bytes(const Parsed &p) {
    __u32 dst[4];
    bmc_frame_dst(&p.sc, &p.f, dst);
    std::array<std::uint8_t, 16> b;
    std::memcpy(b.data(), dst, 16);
    return b;
}

}  // namespace

TEST(SocketMemo, TheDestinationIsReadAsTheSourceIsForBothFamilies) {
    const Parsed v4(get_request("get k\r\n"));
    ASSERT_EQ(v4.f.answerable, 4);
    EXPECT_EQ(dst_bytes(v4), (std::array<std::uint8_t, 16>{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 1}));
    const Parsed back(reply_frame("END\r\n"));  // the server's address as a source
    EXPECT_EQ(dst_bytes(v4), std::to_array(back.f.src));
    const Parsed v6(udp_frame(kClient, kServer, mc_udp("get k\r\n"), {.ipv6 = true}));
    ASSERT_EQ(v6.f.answerable, 6);
    EXPECT_EQ(dst_bytes(v6),
              (std::array<std::uint8_t, 16>{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 198, 18, 0, 1}));  // 2001:db8::198.18.0.1
    const Parsed tagged(udp_frame(kClient, kServer, mc_udp("get k\r\n"), {.ip_options = 8, .vlan = 7}));
    EXPECT_EQ(dst_bytes(tagged), dst_bytes(v4)) << "a VLAN tag and IPv4 options move the address";
}

TEST(SocketMemo, AnAnswerHoldsForItsDestinationFamilyAndEpochUntilItExpires) {
    bmc_sock_memo m{};
    const __u32 a[4] = {0, 0, 0xffff0000u, 0x010012c6u}, b[4] = {0, 0, 0xffff0000u, 0x020012c6u};
    EXPECT_EQ(bmc_sock_memo_find(&m, a, 4, 0, 0), -1) << "empty";
    bmc_sock_memo_put(&m, a, 4, 7, 1000, 1);
    EXPECT_EQ(bmc_sock_memo_find(&m, a, 4, 7, 999), 1);
    EXPECT_EQ(bmc_sock_memo_find(&m, a, 4, 7, 1000), -1) << "expired";
    EXPECT_EQ(bmc_sock_memo_find(&m, a, 4, 8, 0), -1) << "another epoch";
    EXPECT_EQ(bmc_sock_memo_find(&m, b, 4, 7, 0), -1) << "another destination";
    EXPECT_EQ(bmc_sock_memo_find(&m, a, 6, 7, 0), -1) << "another family";
    bmc_sock_memo_put(&m, a, 4, 7, 1000, 0);
    EXPECT_EQ(bmc_sock_memo_find(&m, a, 4, 7, 0), 0) << "\"no socket\" is an answer too";
}

TEST(SocketMemo, DestinationsSpreadOverTheSlots) {
    std::array<int, BMC_SOCK_MEMOS> used{};
    for (std::uint32_t host = 1; host <= 64; host++) {
        const __u32 a[4] = {0, 0, 0xffff0000u, 0x000012c6u | host << 24};
        const __u32 slot = bmc_sock_memo_slot(a);
        ASSERT_LT(slot, BMC_SOCK_MEMOS);
        used[slot]++;
    }
    for (int n : used) EXPECT_EQ(n, 64 / int(BMC_SOCK_MEMOS)) << "consecutive hosts of a subnet";
}

TEST(Checksum, TheScratchSumIsTheBigEndianWordSumForEveryLengthAndBuffer) {
    bmc_scratch sc{};
    std::uint32_t seed = 12345;
    auto next = [&] { return seed = seed * 1103515245u + 12345u; };
    for (int round = 0; round < 8; round++) {
        for (std::uint32_t i = 0; i < BMC_MAX_PAYLOAD; i++) {
            // Rounds of all 0xff bytes and of random ones: the carries' worst and the usual case.
            sc.in[i] = round == 0 ? 0xff : std::uint8_t(next() >> 16);
            sc.out[i] = round == 1 ? 0xff : std::uint8_t(next() >> 16);
        }
        for (std::uint32_t len = 0; len <= BMC_MAX_PAYLOAD; len++) {
            for (int in = 0; in < 2; in++) {
                const std::uint8_t *b = in ? sc.in : sc.out;
                std::uint64_t want = 0;
                for (std::uint32_t i = 0; i < len; i += 2) want += std::uint32_t(b[i] << 8 | (i + 1 < len ? b[i + 1] : 0));
                while (want >> 16) want = (want & 0xffff) + (want >> 16);
                ASSERT_EQ(std::uint32_t(bmc_sum_scratch(&sc, len, in)), want) << "len " << len << " in " << in << " round " << round;
            }
        }
    }
}
