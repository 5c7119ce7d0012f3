// AF_XDP backend: one AF_XDP socket, UMEM and poller thread per RX queue of the
// interface. The kernel backend's XDP program, in BMC_MODE_AFXDP, hands each plain UDP
// get to the socket of its queue; the poller answers hits from the same cache memory
// (the mmapped BPF maps) with the same C++ core, and forwards misses to memcached. A relay
// thread receives memcached's replies, fills the cache from them under the same lease
// rule, and hands the frames back to the poller that owns the queue's TX ring.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "datapath.hpp"
#include "kernel_backend.hpp"
#include "xsk.hpp"

namespace bmc {

struct AfxdpOptions {
    bool busy_poll = false;
    ZeroCopy zero_copy = ZeroCopy::Auto;
    std::uint32_t frames_per_queue = 4096;
    std::chrono::milliseconds relay_timeout{1000};
};

// What the userspace path did, summed over its threads.
struct AfxdpCounters {
    Counters datapath{};          // the core's counters: hits, misses, fills, ...
    std::uint64_t rx_frames = 0;  // frames the XDP program handed over
    std::vector<std::uint64_t> rx_per_queue;  // of those, by RX queue
    std::uint64_t rx_batches = 0; // batches the pollers took them in (rx_frames / rx_batches per batch)
    std::uint64_t forwarded = 0;  // requests sent on to memcached
    std::uint64_t relayed = 0;    // memcached reply datagrams sent back to clients
    std::uint64_t late = 0;       // replies for unknown or timed-out requests, dropped
    std::uint64_t relay_dropped = 0;  // reply datagrams lost in the relay socket's full buffer
    std::uint64_t tx_dropped = 0; // replies dropped: no free frame, or no TX slot (tx_full)
    std::uint64_t tx_full = 0;    // of those, replies that found the TX ring full
    std::uint64_t rotations = 0;  // fresh channels to memcached (every id pending or quarantined)
};

// into += c (several interfaces' pollers as one); per-queue counts are appended.
void add_counters(AfxdpCounters &into, const AfxdpCounters &c);

class AfxdpBackend {
public:
    // Creates the sockets and starts the threads; throws bmc::Error.
    AfxdpBackend(KernelBackend &kernel, const AfxdpOptions &opts);
    ~AfxdpBackend();
    AfxdpBackend(const AfxdpBackend &) = delete;
    AfxdpBackend &operator=(const AfxdpBackend &) = delete;

    AfxdpCounters counters() const;
    // The decision trace's records the pollers and the relay made since the last call
    // (while the cache's trace_every is set).
    void drain_trace(std::vector<bmc_trace> &out);
    unsigned queues() const { return unsigned(pollers_.size()); }
    const std::string &bind_mode() const { return bind_mode_; }  // "zero-copy" or "copy"
    const std::string &notice() const { return notice_; }

    struct Poller;

private:
    void relay_loop();
    // Stops and joins every thread, unregisters the sockets and closes the descriptors:
    // the destructor, and a constructor that failed half-way.
    void stop_all();

    KernelBackend &kernel_;
    AfxdpOptions opts_;
    std::vector<std::unique_ptr<Poller>> pollers_;
    std::atomic<bool> stop_{false};
    std::thread relay_;
    int epoll_fd_ = -1;
    int relay_wake_fd_ = -1;
    std::string bind_mode_, notice_;
    std::array<std::atomic<std::uint64_t>, BMC_NUM_STATS> relay_counters_{};
    struct TraceQueue;
    std::unique_ptr<TraceQueue> trace_;
    std::atomic<std::uint64_t> relayed_{0}, late_{0}, relay_dropped_{0};
};

// Why AF_XDP mode is refused on a loopback device: the misses a poller forwards to
// memcached leave through lo and come back through the same XDP hook, which would
// redirect them to the poller again, forever.
inline constexpr const char *kAfxdpLoopbackRefusal =
    "AF_XDP mode cannot serve a loopback device (forwarded misses would come back through the same XDP "
    "hook and loop); use the kernel backend there";

// RX queues of an interface (ethtool channels), at least 1.
unsigned rx_queue_count(const std::string &iface);

// A poller's datapath on kernel's cache. Only frames that bmc_rx redirected reach a
// poller, and bmc_rx redirects a get only once the client passed the allowlist and the
// frame the stack-delivery checks (afxdp_get in bpf/bmc.bpf.c: the core's
// bmc_drive_deliverable, with memcached's socket looked up), so the poller does not
// repeat them: its configuration has them off and it admits every client.
std::unique_ptr<Datapath> poller_datapath(const KernelBackend &kernel);

}  // namespace bmc
