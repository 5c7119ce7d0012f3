// Misses the AF_XDP pollers forward to memcached, and where each reply goes.
//
// A forwarded get carries a request id of ours instead of the client's. The ids belong
// to a channel (one UDP socket, so one source port, to memcached): a reply counts only
// on the channel and id it was sent with. An id is free again only once its reply has
// been relayed (its last datagram, ending in END or an error line, seen). A request
// whose reply does not come within the timeout keeps its id forever, quarantined:
// memcached may still answer it, and that answer must not reach a later client. When a
// channel has no free id left, the poller rotates to a fresh channel; the old one is
// kept for a grace period, for replies still on their way, and then closed, after
// which the kernel drops anything sent to its port.
//
// Threads: one poller issues ids and rotates; one relay reads replies and frees ids.
// A slot is written only by the poller while it is FREE in the poller's hands, and
// published with a release store of its state; the relay reads it after an acquire
// load sees PENDING, and hands a freed id back through a queue (which orders the relay's
// last reads before the poller's next writes). All of it is C++ atomics, no fences.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include <concurrentqueue/concurrentqueue.h>

#include "bmc_layout.hpp"

namespace bmc {

class MissTable {
public:
    static constexpr std::uint32_t kIds = 65536;
    static constexpr std::uint32_t kReplyHdr = 96;  // Ethernet, a VLAN tag, IPv4 with options or IPv6, UDP

    // What the relay needs to answer the client: the request's headers as received (its
    // bytes before the UDP payload) and their parse, from which the shared reply code
    // makes the reply's (Datapath::relayed_reply), and the client's own request id.
    struct Request {
        std::array<std::uint8_t, kReplyHdr> hdr{};
        std::uint32_t hdr_len = 0;
        std::uint16_t client_id = 0;
        bmc_frame frame{};
    };
    struct Ticket {
        std::uint32_t channel;
        std::uint16_t id;
    };
    enum class Reply {
        Relay,        // relay it; more datagrams may follow
        RelayLast,    // relay it; the request is done and its id free again
        Late,         // the request timed out: dropped, the id stays quarantined
        Unknown,      // no request outstanding on that channel and id: dropped
    };

    explicit MissTable(std::uint64_t timeout_ns) : timeout_ns_(timeout_ns) { rotate(0); }

    // Poller: an id on the current channel for this request, or nothing when the channel
    // has none free (rotate, then ask again).
    std::optional<Ticket> issue(const Request &r, std::uint64_t now) {
        Channel &ch = *current_;
        if (ch.local_free.empty()) {
            std::uint16_t id;
            while (ch.freed.try_dequeue(id)) ch.local_free.push_back(id);
        }
        if (ch.local_free.empty()) return std::nullopt;
        const std::uint16_t id = ch.local_free.back();
        ch.local_free.pop_back();
        Slot &s = ch.slots[id];
        s.req = r;
        s.sent_ns = now;
        s.state.store(kPending, std::memory_order_release);
        return Ticket{ch.number, id};
    }

    // Poller: start a fresh channel; the current one retires at `now`. Returns the new
    // channel's number.
    std::uint32_t rotate(std::uint64_t now) {
        auto ch = std::make_unique<Channel>();
        ch->number = next_channel_++;
        ch->local_free.reserve(kIds);
        for (std::uint32_t i = kIds; i-- > 0;) ch->local_free.push_back(std::uint16_t(i));
        std::lock_guard<std::mutex> g(mu_);
        if (current_) current_->retired_at.store(now ? now : 1, std::memory_order_release);
        current_ = ch.get();
        channels_.push_back(std::move(ch));
        return current_->number;
    }
    std::uint32_t current_channel() const { return current_->number; }

    // Relay: a reply datagram on (channel, id); `last` when it ends the reply. On Relay
    // and RelayLast, *out is the request to answer.
    Reply reply(std::uint32_t channel, std::uint16_t id, bool last, std::uint64_t now, Request *out) {
        Channel *ch = find(channel);
        if (!ch) return Reply::Unknown;
        Slot &s = ch->slots[id];
        const std::uint8_t st = s.state.load(std::memory_order_acquire);
        if (st == kQuarantined) return Reply::Late;
        if (st != kPending) return Reply::Unknown;
        if (now - s.sent_ns > timeout_ns_) {
            s.state.store(kQuarantined, std::memory_order_relaxed);
            return Reply::Late;
        }
        *out = s.req;
        if (!last) return Reply::Relay;
        s.state.store(kFree, std::memory_order_relaxed);
        ch->freed.enqueue(id);
        return Reply::RelayLast;
    }

    // Relay: channels retired longer ago than grace_ns, which it closes now; they are
    // forgotten, and replies on them are Unknown from here on.
    std::vector<std::uint32_t> expire(std::uint64_t now, std::uint64_t grace_ns) {
        std::vector<std::uint32_t> out;
        std::lock_guard<std::mutex> g(mu_);
        for (auto it = channels_.begin(); it != channels_.end();) {
            const std::uint64_t r = (*it)->retired_at.load(std::memory_order_acquire);
            if (r && now - r > grace_ns) {
                out.push_back((*it)->number);
                it = channels_.erase(it);
            } else {
                ++it;
            }
        }
        return out;
    }

    // Ids of the current channel not free (pending or quarantined): for tests and stats.
    std::uint32_t in_use() const {
        return kIds - std::uint32_t(current_->local_free.size()) - std::uint32_t(current_->freed.size_approx());
    }

private:
    static constexpr std::uint8_t kFree = 0, kPending = 1, kQuarantined = 2;

    struct Slot {
        std::atomic<std::uint8_t> state{kFree};
        std::uint64_t sent_ns = 0;
        Request req;
    };
    struct Channel {
        std::uint32_t number = 0;
        std::atomic<std::uint64_t> retired_at{0};
        std::unique_ptr<Slot[]> slots{new Slot[kIds]};
        std::vector<std::uint16_t> local_free;             // poller only
        moodycamel::ConcurrentQueue<std::uint16_t> freed;  // relay -> poller
    };

    Channel *find(std::uint32_t number) {
        std::lock_guard<std::mutex> g(mu_);
        for (auto &c : channels_)
            if (c->number == number) return c.get();
        return nullptr;
    }

    const std::uint64_t timeout_ns_;
    std::mutex mu_;  // channels_ and current_: changed on rotation and expiry only
    std::vector<std::unique_ptr<Channel>> channels_;
    Channel *current_ = nullptr;
    std::uint32_t next_channel_ = 0;
};

}  // namespace bmc
