// Matches memcached UDP replies to requests by their 16-bit request id. A request is
// complete when a datagram carrying its id ends with END; it times out after
// timeout_ns. Replies that arrive for a request already complete are duplicates, for a
// request that timed out are late: both are counted, never retried or counted as served.
#pragma once

#include <cstdint>
#include <vector>

namespace bmc::bench {

class Tracker {
public:
    enum class Reply { Complete, Partial, Duplicate, Late, Unknown };

    explicit Tracker(std::uint64_t timeout_ns) : timeout_(timeout_ns), slots_(65536) {}

    // Starts a request intended at `at_ns` (open loop: its scheduled time). Returns the
    // id, or -1 if every id is outstanding.
    int start(std::uint64_t at_ns, std::uint32_t tag = 0) {
        for (unsigned tries = 0; tries < slots_.size(); tries++) {
            const std::uint16_t id = next_++;
            Slot &s = slots_[id];
            if (s.state == State::Waiting) continue;
            s = {State::Waiting, at_ns, tag};
            outstanding_++;
            return id;
        }
        return -1;
    }

    // A datagram for `id`; `ends` if its payload ends with END. On Complete, *latency_ns
    // is now - intended start and *tag the request's tag.
    Reply on_reply(std::uint16_t id, bool ends, std::uint64_t now_ns, std::uint64_t *latency_ns,
                   std::uint32_t *tag = nullptr) {
        Slot &s = slots_[id];
        switch (s.state) {
        case State::Waiting:
            if (!ends) return Reply::Partial;
            s.state = State::Done;
            outstanding_--;
            *latency_ns = now_ns - s.start_ns;
            if (tag) *tag = s.tag;
            return Reply::Complete;
        case State::Done: duplicates_++; return Reply::Duplicate;
        case State::TimedOut:  // the first late datagram counts the request as late
            late_++;
            s.state = State::LateSeen;
            return Reply::Late;
        case State::LateSeen: return Reply::Late;
        default: unknown_++; return Reply::Unknown;
        }
    }

    // Times out what has waited too long; returns how many.
    std::uint64_t expire(std::uint64_t now_ns) {
        std::uint64_t n = 0;
        if (!outstanding_) return 0;
        for (auto &s : slots_)
            if (s.state == State::Waiting && now_ns - s.start_ns > timeout_) {
                s.state = State::TimedOut;
                outstanding_--;
                n++;
            }
        timeouts_ += n;
        return n;
    }

    std::uint64_t outstanding() const { return outstanding_; }
    std::uint64_t timeouts() const { return timeouts_; }
    std::uint64_t late() const { return late_; }  // requests answered after their timeout
    std::uint64_t duplicates() const { return duplicates_; }
    std::uint64_t unknown() const { return unknown_; }

private:
    enum class State : std::uint8_t { Free, Waiting, Done, TimedOut, LateSeen };
    struct Slot {
        State state = State::Free;
        std::uint64_t start_ns = 0;
        std::uint32_t tag = 0;
    };
    std::uint64_t timeout_;
    std::vector<Slot> slots_;
    std::uint16_t next_ = 0;
    std::uint64_t outstanding_ = 0, timeouts_ = 0, late_ = 0, duplicates_ = 0, unknown_ = 0;
};

}  // namespace bmc::bench
