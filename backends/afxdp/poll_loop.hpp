// The poll loop of one AF_XDP queue, run by the thread that owns the queue (XskQueue is
// single-threaded): keep the fill ring stocked, take no more received frames than TX has
// room to answer, hand each to the handler, transmit in place what it answers, and wait
// when there is nothing to do. The backend's pollers and the benchmark's AF_XDP echo
// (bench/bmc_floor.cpp) both run it, so the echo floor pays exactly the loop's costs.
//
// The handler provides:
//   bool send_queued(XskQueue &q)     before each batch: send frames other threads queued
//                                     for this queue; whether it sent any
//   void prefetch(const std::uint8_t *frame, std::uint32_t len)
//                                     a frame answer() will see a few frames later: a hint
//                                     that may start loading what it will need
//   bool answer(std::uint8_t *frame, std::uint32_t &len, std::uint32_t room, std::uint64_t now)
//                                     one received frame (room: bytes it may grow to); true
//                                     to transmit it in place as len bytes, false to free it
//   void tx_dropped()                 an answer found no TX slot (also counted in tx_full)
//   void batch_done(std::uint32_t n)  after each batch of n frames
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

#include "datapath.hpp"
#include "xsk.hpp"

namespace bmc {

// How many frames ahead of the one answered the handler's prefetch runs; the frames'
// own bytes, copied in by another CPU, are loaded twice as far ahead, so that the hint
// reads them from this CPU's cache.
constexpr std::uint32_t kPrefetchAhead = 4;

struct PollOptions {
    std::uint32_t batch = 64;  // RX descriptors taken at a time (and TX room asked for)
    bool busy_poll = false;    // spin driving the queue's NAPI context instead of sleeping
    int wake_fd = -1;          // an eventfd other threads write when they queue frames
    int idle_wait_ms = 50;     // how long an idle poller sleeps before it looks at stop
};

template <class Handler>
void poll_queue(XskQueue &q, const std::atomic<bool> &stop, const PollOptions &o, Handler &h) {
    while (!stop.load(std::memory_order_relaxed)) {
        const bool sent = h.send_queued(q);
        q.reclaim();
        q.refill(o.batch);
        // No more requests than TX can take replies for.
        std::uint32_t idx, room = q.tx_room(o.batch);
        const std::uint32_t n = room ? xsk_ring_cons__peek(q.rx(), room, &idx) : 0;
        if (n == 0) {
            if (sent) q.kick_tx();
            if (o.busy_poll) {
                recvfrom(q.fd(), nullptr, 0, MSG_DONTWAIT, nullptr, nullptr);
                continue;
            }
            pollfd p[2] = {{q.fd(), POLLIN, 0}, {o.wake_fd, POLLIN, 0}};
            if (poll(p, o.wake_fd >= 0 ? 2 : 1, o.idle_wait_ms) > 0 && o.wake_fd >= 0 && (p[1].revents & POLLIN)) {
                std::uint64_t v;
                [[maybe_unused]] auto r = read(o.wake_fd, &v, sizeof v);
            }
            continue;
        }
        const std::uint64_t now = monotonic_ns();
        auto load = [&](std::uint32_t i) {
            const std::uint8_t *f = q.data(xsk_ring_cons__rx_desc(q.rx(), idx + i)->addr);
            __builtin_prefetch(f);
            __builtin_prefetch(f + 64);
        };
        auto hint = [&](std::uint32_t i) {
            const xdp_desc *d = xsk_ring_cons__rx_desc(q.rx(), idx + i);
            h.prefetch(q.data(d->addr), d->len);
        };
        for (std::uint32_t i = 0; i < n && i < 2 * kPrefetchAhead; i++) load(i);
        for (std::uint32_t i = 0; i < n && i < kPrefetchAhead; i++) hint(i);
        for (std::uint32_t i = 0; i < n; i++) {
            if (i + 2 * kPrefetchAhead < n) load(i + 2 * kPrefetchAhead);
            if (i + kPrefetchAhead < n) hint(i + kPrefetchAhead);
            const xdp_desc *d = xsk_ring_cons__rx_desc(q.rx(), idx + i);
            const std::uint64_t addr = d->addr;
            std::uint32_t len = d->len;
            const std::uint32_t frame_room = XskQueue::kFrameSize - std::uint32_t(addr & (XskQueue::kFrameSize - 1));
            if (h.answer(q.data(addr), len, frame_room, now)) {
                if (!q.transmit(addr, len)) {
                    q.release_frame(addr);
                    h.tx_dropped();
                }
            } else {
                q.release_frame(addr);
            }
        }
        // Releasing the RX slots lets the kernel reuse them; the frames themselves are
        // ours until they go back through the fill ring.
        xsk_ring_cons__release(q.rx(), n);
        q.kick_tx();
        h.batch_done(n);
    }
}

}  // namespace bmc
