// The cache's scenarios, one table run against every datapath behind one interface: the
// C++ core (core_test: bmc::Datapath and bmc::Observer over memory the test owns; the
// AF_XDP pollers run this same code) and the BPF programs through BPF_PROG_TEST_RUN
// (bpf_test: XDP, TC egress, the observer's test-runnable wrapper and its cgroup skb
// program). Each scenario is frames in order with the verdict and the output bytes each
// must get, and the counters that must move by exactly so much.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "bmc_layout.hpp"
#include "packet.hpp"

namespace bmc::test {

// What a datapath does with a scenario's frames.
class ScenarioTarget {
public:
    virtual ~ScenarioTarget() = default;
    // A frame from a client: whether it was answered; out is what leaves (the frame as it
    // was, for a pass).
    virtual bool ingress(const Bytes &frame, Bytes &out) = 0;
    // A frame memcached sends (TC egress; on AF_XDP the relay).
    virtual void egress(const Bytes &frame) = 0;
    // Bytes memcached reads on TCP connection `conn`, or one datagram delivered to it.
    virtual void stream(std::uint64_t conn, const std::string &bytes) = 0;
    virtual void datagram(const Bytes &frame) = 0;
    virtual std::uint64_t count(bmc_stat s) = 0;
};

// The reply the cache must send for `text`: memcached's own bytes, addresses, ports and
// MACs swapped, TTL 64, UDP checksum 0.
inline Bytes cache_reply(std::string_view text, std::uint16_t id) {
    Bytes f = udp_frame(kServer, kClient, mc_udp(text, id));
    std::swap_ranges(f.begin(), f.begin() + 6, f.begin() + 6);
    return f;
}

struct Step {
    enum Kind { Get, Reply, Write, WriteUdp } kind;
    std::string text;          // Get: the request; Reply: memcached's payload; writes: the bytes
    std::uint16_t id = 0x1234; // the memcached request id of a Get
    // Get: answered with this payload (cache_reply), or, empty, passed unchanged.
    std::string answer{};
    Bytes frame{};             // Get: this frame instead of a plain request for `text`
    std::uint64_t conn = 1;    // Write: the TCP connection
};

struct Scenario {
    const char *name;
    std::vector<Step> steps;
    std::vector<std::pair<bmc_stat, std::uint64_t>> counters{};  // how much each must move

    friend void PrintTo(const Scenario &s, std::ostream *os) { *os << s.name; }
};

// A miss, then memcached's reply (which fills when the miss leased).
inline std::vector<Step> miss_and_fill(const std::string &key, const std::string &item) {
    return {{Step::Get, "get " + key + "\r\n"}, {Step::Reply, item + "END\r\n"}};
}

inline std::vector<Scenario> scenarios() {
    auto then = [](std::vector<Step> a, const std::vector<Step> &b) {
        a.insert(a.end(), b.begin(), b.end());
        return a;
    };
    const std::string v800(800, 'v'), v1300(1300, 'v'), v1440(1440, 'v');
    const std::string items3 = "VALUE a 0 1\r\n1\r\nVALUE bb 3 2\r\n22\r\nVALUE ccc 0 3\r\n333\r\n";
    const Bytes bin_set = bin_request(0x01, "bk", std::string(8, '\0'), "2");
    auto unanswerable = [](Bytes f) { return Step{Step::Get, "", 0x1234, "", std::move(f)}; };
    return {
        {"a_hit_is_answered_with_memcacheds_reply_bytes",
         then(miss_and_fill("foo", "VALUE foo 3 5\r\nhello\r\n"),
              {{Step::Get, "get foo\r\n", 0x7777, "VALUE foo 3 5\r\nhello\r\nEND\r\n"}}),
         {{BMC_STAT_FILL_OK, 1}, {BMC_STAT_HIT_REQS, 1}, {BMC_STAT_PASS_MISS, 1}}},
        {"a_fill_without_a_miss_is_rejected",
         {{Step::Reply, "VALUE foo 0 5\r\nhello\r\nEND\r\n"}, {Step::Get, "get foo\r\n"}},
         {{BMC_STAT_FILL_NO_LEASE, 1}, {BMC_STAT_FILL_OK, 0}}},
        {"a_write_between_miss_and_fill_rejects_the_fill",
         {{Step::Get, "get foo\r\n"},
          {Step::Write, "set foo 0 0 3\r\nnew\r\n"},
          {Step::Reply, "VALUE foo 0 5\r\nhello\r\nEND\r\n"},
          {Step::Get, "get foo\r\n"}},
         {{BMC_STAT_FILL_NO_LEASE, 1}, {BMC_STAT_FILL_OK, 0}}},
        {"a_miss_soon_after_a_write_cannot_fill",  // within the 10 ms fill guard
         then({{Step::Write, "set foo 0 0 3\r\nnew\r\n"}}, miss_and_fill("foo", "VALUE foo 0 3\r\nold\r\n")),
         {{BMC_STAT_FILL_GUARD, 1}, {BMC_STAT_FILL_OK, 0}}},
        {"a_write_makes_the_entry_unservable",
         then(miss_and_fill("foo", "VALUE foo 0 5\r\nhello\r\n"),
              {{Step::Write, "append foo 0 0 1\r\n!\r\n"}, {Step::Get, "get foo\r\n"}}),
         {{BMC_STAT_INVAL_TEXT, 2}, {BMC_STAT_HIT_REQS, 0}}},  // its line, then its data
        {"a_binary_write_makes_the_entry_unservable",
         then(miss_and_fill("bk", "VALUE bk 0 1\r\n1\r\n"),
              {{Step::Write, std::string(bin_set.begin(), bin_set.end()), 0x1234, "", {}, 2},
               {Step::Get, "get bk\r\n"}}),
         {{BMC_STAT_INVAL_BINARY, 2}, {BMC_STAT_HIT_REQS, 0}}},  // its key, then its body
        {"flush_all_in_a_datagram_makes_everything_unservable",
         then(then(miss_and_fill("a", "VALUE a 0 1\r\n1\r\n"), miss_and_fill("b", "VALUE b 0 1\r\n2\r\n")),
              {{Step::WriteUdp, "flush_all\r\n"}, {Step::Get, "get a\r\n"}, {Step::Get, "get b\r\n"}}),
         {{BMC_STAT_INVAL_FLUSH, 1}, {BMC_STAT_FILL_OK, 2}, {BMC_STAT_HIT_REQS, 0}}},
        {"a_partial_multi_get_passes_unchanged",
         then(miss_and_fill("a", "VALUE a 0 1\r\n1\r\n"), {{Step::Get, "get a b\r\n"}}),
         {{BMC_STAT_PASS_PARTIAL, 1}}},
        {"a_multi_get_of_hits_is_one_reply",
         then(then(miss_and_fill("a", "VALUE a 0 1\r\n1\r\n"), miss_and_fill("b", "VALUE b 7 2\r\n22\r\n")),
              {{Step::Get, "get a b a\r\n", 9, "VALUE a 0 1\r\n1\r\nVALUE b 7 2\r\n22\r\nVALUE a 0 1\r\n1\r\nEND\r\n"}}),
         {{BMC_STAT_HIT_REQS, 1}}},
        {"one_reply_with_several_items_fills_every_key",
         {{Step::Get, "get a bb ccc\r\n"},
          {Step::Reply, items3 + "END\r\n"},
          {Step::Get, "get a bb ccc\r\n", 4, items3 + "END\r\n"}},
         {{BMC_STAT_FILL_OK, 3}, {BMC_STAT_HIT_REQS, 1}}},
        {"a_value_larger_than_the_request_grows_the_frame",
         then(miss_and_fill("big", "VALUE big 0 1300\r\n" + v1300 + "\r\n"),
              {{Step::Get, "get big\r\n", 0x4321, "VALUE big 0 1300\r\n" + v1300 + "\r\nEND\r\n"}}),
         {{BMC_STAT_FILL_OK, 1}, {BMC_STAT_HIT_REQS, 1}}},
        {"a_reply_over_one_datagram_is_left_to_memcached",
         then(then(miss_and_fill("a", "VALUE a 0 800\r\n" + v800 + "\r\n"), miss_and_fill("b", "VALUE b 0 800\r\n" + v800 + "\r\n")),
              {{Step::Get, "get a b\r\n"}}),
         {{BMC_STAT_FILL_OK, 2}, {BMC_STAT_PASS_TOO_BIG, 1}}},
        {"an_item_larger_than_a_datagram_is_not_cached",  // memcached splits its reply
         then(miss_and_fill("huge", "VALUE huge 0 1440\r\n" + v1440 + "\r\n"), {{Step::Get, "get huge\r\n"}}),
         {{BMC_STAT_FILL_OK, 0}, {BMC_STAT_HIT_REQS, 0}}},
        {"cas_replies_are_not_cached_and_gets_passes",
         then(miss_and_fill("c", "VALUE c 0 1 99\r\nx\r\n"), {{Step::Get, "gets c\r\n"}}),
         {{BMC_STAT_FILL_CAS, 1}, {BMC_STAT_PASS_GETS, 1}}},
        {"requests_the_cache_cannot_answer_pass_unchanged",
         then(miss_and_fill("k", "VALUE k 0 1\r\n1\r\n"),
              {unanswerable(udp_frame(kClient, kServer, mc_udp("get k\r\n", 1, 0, 2))),  // two datagrams
               unanswerable(udp_frame(kClient, kServer, mc_udp("get k\r\n"), {.ipv6 = true, .hop_by_hop = true})),
               unanswerable(udp_frame(kClient, kServer, mc_udp("get k\r\n"), {.fragment = true})),
               unanswerable(udp_frame(kClient, {kServer.ip, 11212}, mc_udp("get k\r\n"))),  // another port
               {Step::Get, "get k"},                                                         // no line end
               {Step::Get, "get k\r\nversion\r\n"},                                          // more commands
               {Step::Get, "gets k\r\n"},
               {Step::Get, "get k\x01\r\n"},                                                 // a control byte
               {Step::Get, "get " + std::string(251, 'k') + "\r\n"}}),                      // key too long
         {{BMC_STAT_HIT_REQS, 0}}},
    };
}

// Runs a scenario on a datapath and checks every verdict, every output byte and the
// counters.
inline void run_scenario(const Scenario &s, ScenarioTarget &t) {
    std::vector<std::uint64_t> before;
    for (auto &[stat, n] : s.counters) before.push_back(t.count(stat));
    for (std::size_t i = 0; i < s.steps.size(); i++) {
        const Step &st = s.steps[i];
        SCOPED_TRACE("step " + std::to_string(i));
        switch (st.kind) {
        case Step::Get: {
            const Bytes in = st.frame.empty() ? udp_frame(kClient, kServer, mc_udp(st.text, st.id)) : st.frame;
            Bytes out;
            const bool answered = t.ingress(in, out);
            EXPECT_EQ(answered, !st.answer.empty()) << st.text;
            EXPECT_EQ(out, st.answer.empty() ? in : cache_reply(st.answer, st.id)) << st.text;
            break;
        }
        case Step::Reply: t.egress(udp_frame(kServer, kClient, mc_udp(st.text))); break;
        case Step::Write: t.stream(st.conn, st.text); break;
        case Step::WriteUdp: t.datagram(udp_frame(kClient, kServer, mc_udp(st.text))); break;
        }
    }
    for (std::size_t i = 0; i < s.counters.size(); i++)
        EXPECT_EQ(t.count(s.counters[i].first) - before[i], s.counters[i].second) << bmc_stat_names[s.counters[i].first];
}

}  // namespace bmc::test
