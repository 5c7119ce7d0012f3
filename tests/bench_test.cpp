// Unit tests of the benchmark's instruments: Zipf sampler, histogram, request matching.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "histogram.hpp"
#include "tracker.hpp"
#include "workload.hpp"
#include "zipf.hpp"

using namespace bmc::bench;

namespace {

// Pearson's chi-square statistic of observed counts against Zipf(s) over n ranks.
double chi_square(std::uint64_t n, double s, std::uint64_t draws, std::uint32_t seed) {
    Zipf z(n, s);
    std::mt19937_64 rng(seed);
    std::vector<double> count(n + 1, 0);
    for (std::uint64_t i = 0; i < draws; i++) {
        auto k = z(rng);
        EXPECT_GE(k, 1u);
        EXPECT_LE(k, n);
        count[k]++;
    }
    double norm = 0;
    for (std::uint64_t k = 1; k <= n; k++) norm += 1.0 / std::pow(double(k), s);
    double chi = 0;
    for (std::uint64_t k = 1; k <= n; k++) {
        double expect = double(draws) / std::pow(double(k), s) / norm;
        chi += (count[k] - expect) * (count[k] - expect) / expect;
    }
    return chi;
}

}  // namespace

TEST(Zipf, MatchesTheDistribution) {
    // 99 degrees of freedom: the 0.999 quantile of chi-square is 148.2.
    for (double s : {0.5, 0.99, 1.0, 1.2}) EXPECT_LT(chi_square(100, s, 400000, 7), 148.2) << "s=" << s;
}

TEST(Zipf, DetectsTheWrongExponent) {
    // The same statistic rejects a sampler for s=0.8 tested as s=0.99: the test can fail.
    Zipf z(100, 0.8);
    std::mt19937_64 rng(3);
    std::vector<double> count(101, 0);
    for (int i = 0; i < 400000; i++) count[z(rng)]++;
    double norm = 0, chi = 0;
    for (int k = 1; k <= 100; k++) norm += 1.0 / std::pow(k, 0.99);
    for (int k = 1; k <= 100; k++) {
        double e = 400000 / std::pow(k, 0.99) / norm;
        chi += (count[k] - e) * (count[k] - e) / e;
    }
    EXPECT_GT(chi, 148.2);
}

TEST(Zipf, ZeroIsUniformAndLargeKeySpacesWork) {
    EXPECT_LT(chi_square(100, 0.0, 200000, 11), 148.2);
    Zipf z(10000000, 0.99);
    std::mt19937_64 rng(5);
    std::uint64_t ones = 0, top = 0;
    for (int i = 0; i < 100000; i++) {
        auto k = z(rng);
        ASSERT_LE(k, 10000000u);
        ones += k == 1;
        top = std::max(top, k);
    }
    // P(rank 1) = 1/H(10^7, 0.99), about 5.9 %.
    EXPECT_NEAR(double(ones) / 100000, 0.059, 0.006);
    EXPECT_GT(top, 1000000u);
}

TEST(Histogram, RelativeErrorIsBounded) {
    std::mt19937_64 rng(1);
    for (int i = 0; i < 100000; i++) {
        std::uint64_t v = rng() >> (rng() % 60);
        std::uint64_t up = Histogram::upper(Histogram::index(v));
        ASSERT_GE(up, v);
        ASSERT_LE(double(up - v), double(v) / 128.0 + 1) << v;
    }
}

TEST(Histogram, Quantiles) {
    Histogram h;
    for (std::uint64_t v = 1; v <= 100000; v++) h.record(v * 1000);
    for (double q : {0.5, 0.9, 0.99, 0.999}) {
        double want = q * 100000 * 1000;
        EXPECT_NEAR(double(h.quantile(q)), want, want / 100) << q;
    }
    EXPECT_EQ(h.max(), 100000000u);
    EXPECT_EQ(h.quantile(1.0), 100000000u);
    EXPECT_EQ(h.count(), 100000u);
}

TEST(Tracker, MatchesRepliesAndCountsLossLateAndDuplicates) {
    Tracker t(1000);
    std::uint64_t lat = 0;
    int a = t.start(100), b = t.start(100), c = t.start(100);
    ASSERT_GE(a, 0);
    EXPECT_EQ(t.on_reply(std::uint16_t(a), true, 150, &lat), Tracker::Reply::Complete);
    EXPECT_EQ(lat, 50u);
    EXPECT_EQ(t.on_reply(std::uint16_t(a), true, 160, &lat), Tracker::Reply::Duplicate);
    EXPECT_EQ(t.on_reply(std::uint16_t(b), false, 170, &lat), Tracker::Reply::Partial);  // no END yet
    EXPECT_EQ(t.on_reply(std::uint16_t(b), true, 180, &lat), Tracker::Reply::Complete);
    EXPECT_EQ(lat, 80u);
    EXPECT_EQ(t.expire(2000), 1u);  // c never answered
    EXPECT_EQ(t.on_reply(std::uint16_t(c), false, 2100, &lat), Tracker::Reply::Late);
    EXPECT_EQ(t.on_reply(std::uint16_t(c), true, 2200, &lat), Tracker::Reply::Late);
    EXPECT_EQ(t.on_reply(4000, true, 2200, &lat), Tracker::Reply::Unknown);
    EXPECT_EQ(t.timeouts(), 1u);
    EXPECT_EQ(t.late(), 1u);
    EXPECT_EQ(t.duplicates(), 1u);
    EXPECT_EQ(t.unknown(), 1u);
    EXPECT_EQ(t.outstanding(), 0u);
}

TEST(Tracker, NeverReusesAnOutstandingId) {
    Tracker t(1000000);
    std::map<int, int> seen;
    for (int i = 0; i < 65536; i++) ASSERT_EQ(seen[t.start(0)]++, 0);
    EXPECT_EQ(t.start(0), -1);  // all 65,536 ids in flight
    std::uint64_t lat;
    t.on_reply(42, true, 1, &lat);
    EXPECT_EQ(t.start(0), 42);
}

TEST(Workload, KeysAndValuesHaveTheirSizes) {
    Workload w;
    w.key_size = 16;
    w.value_size = 32;
    EXPECT_EQ(key_name(w, 1).size(), 16u);
    EXPECT_EQ(key_name(w, 9999999).size(), 16u);
    EXPECT_EQ(value_of(w, 77).size(), 32u);
    EXPECT_NE(value_of(w, 77), value_of(w, 78));
    EXPECT_EQ(expected_reply(w, {1}), "VALUE " + key_name(w, 1) + " 0 32\r\n" + value_of(w, 1) + "\r\nEND\r\n");
}

#include "consistency.hpp"

TEST(ConsistencyRule, AcceptsFreshAndConcurrentValuesAndRejectsStaleOrUnwritten) {
    // key 0: "a" acked at 20; "b" sent at 30, acked at 40; deleted (sent 50, acked 60)
    std::vector<std::vector<Version>> h = {{{Value{"a"}, 10, 20}, {Value{"b"}, 30, 40}, {Value{}, 50, 60}}};
    auto verdict = [&](Value v, std::uint64_t sent, std::uint64_t recv) {
        auto r = check(h, {{0, v, sent, recv}});
        return r.stale ? "stale" : r.never_written ? "never" : "ok";
    };
    EXPECT_STREQ(verdict(Value{"a"}, 25, 28), "ok");      // newest acknowledged
    EXPECT_STREQ(verdict(Value{"b"}, 25, 35), "ok");      // concurrent with the write of b
    EXPECT_STREQ(verdict(Value{"a"}, 35, 45), "ok");      // b not acknowledged when sent
    EXPECT_STREQ(verdict(Value{"a"}, 45, 48), "stale");   // b was acknowledged before
    EXPECT_STREQ(verdict(Value{"b"}, 65, 70), "stale");   // the delete was acknowledged
    EXPECT_STREQ(verdict(Value{}, 65, 70), "ok");
    EXPECT_STREQ(verdict(Value{"b"}, 22, 25), "stale");   // b not sent yet: wrong, and counted
    EXPECT_STREQ(verdict(Value{"zzz"}, 65, 70), "never");
    auto r = check(h, {{kUnparseable, Value{"junk"}, 1, 2}});
    EXPECT_EQ(r.never_written, 1u);
}
