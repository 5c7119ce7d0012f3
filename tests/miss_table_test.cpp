// MissTable (backends/afxdp/miss_table.hpp): a reply reaches only the client whose
// request it answers, whatever the timing. Unit cases, and a concurrent run (built with
// ThreadSanitizer as miss_table_race_tsan) with a poller and a relay racing.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <random>
#include <thread>

#include "miss_table.hpp"

using bmc::MissTable;

namespace {

constexpr std::uint64_t kTimeout = 1000000000ULL;  // 1 s

MissTable::Request req(std::uint16_t client_id) {
    MissTable::Request r;
    r.hdr_len = 42;
    r.hdr[0] = std::uint8_t(client_id);
    r.client_id = client_id;
    return r;
}

}  // namespace

TEST(MissTable, AnIdIsFreeOnlyOnceItsReplyIsRelayed) {
    MissTable t(kTimeout);
    std::vector<MissTable::Ticket> tickets;
    for (std::uint32_t i = 0; i < MissTable::kIds; i++) {
        auto k = t.issue(req(std::uint16_t(i)), 100);
        ASSERT_TRUE(k) << i;
        tickets.push_back(*k);
    }
    EXPECT_EQ(t.in_use(), MissTable::kIds);
    EXPECT_FALSE(t.issue(req(1), 100)) << "every id is pending: the poller must rotate";

    // A reply that is not the last datagram keeps the id; the last frees it.
    MissTable::Request out;
    EXPECT_EQ(t.reply(tickets[7].channel, tickets[7].id, false, 200, &out), MissTable::Reply::Relay);
    EXPECT_EQ(out.client_id, 7);
    EXPECT_FALSE(t.issue(req(1), 200));
    EXPECT_EQ(t.reply(tickets[7].channel, tickets[7].id, true, 200, &out), MissTable::Reply::RelayLast);
    auto again = t.issue(req(4242), 300);
    ASSERT_TRUE(again);
    EXPECT_EQ(again->id, tickets[7].id);
    EXPECT_EQ(again->channel, tickets[7].channel);
    // the old request's id now names the new request alone
    EXPECT_EQ(t.reply(again->channel, again->id, true, 300, &out), MissTable::Reply::RelayLast);
    EXPECT_EQ(out.client_id, 4242);
    EXPECT_EQ(t.reply(again->channel, again->id, true, 300, &out), MissTable::Reply::Unknown);
}

TEST(MissTable, ATimedOutRequestsIdStaysQuarantined) {
    MissTable t(kTimeout);
    auto a = t.issue(req(1), 0);
    ASSERT_TRUE(a);
    MissTable::Request out;
    // memcached answers after the timeout: dropped, and the id is never issued again
    EXPECT_EQ(t.reply(a->channel, a->id, true, kTimeout + 1, &out), MissTable::Reply::Late);
    EXPECT_EQ(t.reply(a->channel, a->id, true, kTimeout + 2, &out), MissTable::Reply::Late);
    for (std::uint32_t i = 0; i + 1 < MissTable::kIds; i++) {
        auto k = t.issue(req(2), kTimeout + 3);
        ASSERT_TRUE(k);
        ASSERT_NE(k->id, a->id) << "a quarantined id was issued again";
    }
    EXPECT_FALSE(t.issue(req(2), kTimeout + 3)) << "the channel is used up";
}

TEST(MissTable, RepliesAfterRotationAndExpiry) {
    MissTable t(kTimeout);
    auto a = t.issue(req(1), 0);
    ASSERT_TRUE(a);
    const std::uint32_t old = t.current_channel(), fresh = t.rotate(10);
    EXPECT_NE(old, fresh);
    MissTable::Request out;
    // a reply still on its way to the retired channel, in time: relayed
    auto b = t.issue(req(2), 10);
    ASSERT_TRUE(b);
    EXPECT_EQ(b->channel, fresh);
    EXPECT_EQ(b->id == a->id, true) << "ids are per channel: the same number may be in use on both";
    EXPECT_EQ(t.reply(a->channel, a->id, true, 20, &out), MissTable::Reply::RelayLast);
    EXPECT_EQ(out.client_id, 1);
    EXPECT_EQ(t.reply(b->channel, b->id, true, 20, &out), MissTable::Reply::RelayLast);
    EXPECT_EQ(out.client_id, 2);
    // a request on the retired channel whose reply comes after the grace period
    auto c = t.issue(req(3), 30);
    ASSERT_TRUE(c);
    t.rotate(40);
    EXPECT_TRUE(t.expire(50, 100).empty());
    const auto gone = t.expire(40 + 2 * kTimeout, kTimeout);
    ASSERT_EQ(gone.size(), 2u);  // both retired channels
    EXPECT_EQ(t.reply(c->channel, c->id, true, 2 * kTimeout, &out), MissTable::Reply::Unknown);
    EXPECT_EQ(t.reply(a->channel, a->id, true, 2 * kTimeout, &out), MissTable::Reply::Unknown);
}

TEST(MissTable, DuplicatesAndIdsNeverIssued) {
    MissTable t(kTimeout);
    MissTable::Request out;
    EXPECT_EQ(t.reply(t.current_channel(), 99, true, 0, &out), MissTable::Reply::Unknown);
    EXPECT_EQ(t.reply(12345, 0, true, 0, &out), MissTable::Reply::Unknown) << "a channel that never existed";
    auto a = t.issue(req(5), 0);
    ASSERT_TRUE(a);
    EXPECT_EQ(t.reply(a->channel, a->id, true, 1, &out), MissTable::Reply::RelayLast);
    EXPECT_EQ(t.reply(a->channel, a->id, true, 2, &out), MissTable::Reply::Unknown) << "a duplicate";
}

// A poller issuing as fast as it can (rotating when it must) and a relay answering each
// request once, some late: every relayed reply names the client it was issued for.
TEST(MissTable, ConcurrentPollerAndRelayNeverMisdeliver) {
    MissTable t(1000000000);  // 1 s
    struct Sent {
        MissTable::Ticket k;
        std::uint16_t client;
    };
    moodycamel::ConcurrentQueue<Sent> wire;
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> wrong{0}, relayed{0}, issued{0};
    auto now = [] {
        return std::uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
    };
    std::thread poller([&] {
        std::minstd_rand rng(1);  // client ids unrelated to our ids
        for (std::uint32_t n = 0; !stop.load(std::memory_order_relaxed); n++) {
            const auto client = std::uint16_t(rng());
            auto k = t.issue(req(client), now());
            if (!k) {
                t.rotate(now());
                continue;
            }
            issued++;
            if (n % 13) wire.enqueue({*k, client});  // some requests are never answered
        }
    });
    std::thread relay([&] {
        Sent s;
        std::deque<Sent> held;  // replies memcached is slow with: the 16-bit ids wrap meanwhile
        while (!stop.load(std::memory_order_relaxed)) {
            t.expire(now(), 100000000);
            if (!wire.try_dequeue(s)) continue;
            if (s.k.id % 11 == 0) {
                held.push_back(s);
                if (held.size() < 8192) continue;  // answered about 90,000 requests later
                s = held.front();
                held.pop_front();
            }
            MissTable::Request out;
            auto v = t.reply(s.k.channel, s.k.id, true, now(), &out);
            if (v == MissTable::Reply::RelayLast) {
                relayed++;
                if (out.client_id != s.client || out.hdr[0] != std::uint8_t(s.client)) wrong++;
            }
        }
    });
    std::this_thread::sleep_for(std::chrono::seconds(2));
    stop = true;
    poller.join();
    relay.join();
    std::printf("miss table: %llu issued, %llu relayed, %llu to a wrong client\n", (unsigned long long)issued.load(),
                (unsigned long long)relayed.load(), (unsigned long long)wrong.load());
    EXPECT_EQ(wrong.load(), 0u);
    EXPECT_GT(relayed.load(), 100000u);
}
