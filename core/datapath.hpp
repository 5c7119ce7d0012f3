// bmc core, C++ instantiation: the shared datapath (bmc_datapath.h) over cache memory
// that a backend provides, with the packet handling that the BPF programs do in
// bpf/bmc.bpf.c. The differential tests hold the two to the same bytes.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "allowlist.hpp"
#include "bmc_frame.h"
#include "bmc_grammar.h"

namespace bmc {

using Counters = std::array<std::uint64_t, BMC_NUM_STATS>;

// Views onto the shared cache layout: mmapped BPF maps, or memory a test owns.
struct CacheMemory {
    bmc_small_bucket *small = nullptr;
    std::uint32_t n_small = 0;
    bmc_large_bucket *large = nullptr;
    std::uint32_t n_large = 0;
    bmc_global *global = nullptr;
};

// What the Linux stack of the server would deliver (bmc_rx_deliverable): the interface's
// MAC, the host's addresses (IPv4 mapped into ::ffff:0:0/96) with BMC_LOCAL_UNICAST or
// BMC_LOCAL_BROADCAST, and the VLAN ids configured on the interface.
struct Delivery {
    std::array<std::uint8_t, 6> mac{};
    bool loopback = false;
    std::vector<std::pair<std::array<std::uint8_t, 16>, std::uint8_t>> local;
    std::vector<std::uint16_t> vlans;

    std::uint8_t local_kind(const std::uint8_t *addr16) const;
    bool vlan(std::uint16_t vid) const;
    // Read from the system: the interface's MAC and VLANs, every address of this network
    // namespace (a source that is the host's own is refused whichever interface has it).
    static Delivery of_interface(const std::string &iface);
};

// Defaults shared by the daemon and the tests.
bmc_config default_config();

// The clock of every timestamp in the cache: CLOCK_MONOTONIC, which is what
// bpf_ktime_get_ns() reads in the BPF programs.
std::uint64_t monotonic_ns();
// Two ticks of the kernel's coarse clock (CLOCK_MONOTONIC_COARSE), which bmc_rx reads:
// the lag bmc_rx_live_now allows for.
std::uint64_t coarse_clock_margin_ns();

// The key hash of a frame that looks like a single-key "get <key>" over untagged IPv4 or
// IPv6 (read at fixed offsets, nothing checked beyond them), or nothing: what the hint
// below prefetches by. ingress() computes the hash that decides.
std::optional<std::uint32_t> hinted_key_hash(const std::uint8_t *frame, std::uint32_t len);
// Datapath::prefetch's hint on any cache memory.
void prefetch_buckets(const CacheMemory &mem, const bmc_config &cfg, const std::uint8_t *frame, std::uint32_t len);

enum class Action { Pass, Tx };

struct RxResult {
    Action action = Action::Pass;
};

}  // namespace bmc

// The environment the shared datapath code expects (see core/bmc_datapath.h).
struct bmc_env {
    bmc::CacheMemory mem;
    bmc_config cfg;
    bmc::Counters *counters;
    std::uint64_t (*tai_ns)();
    const bmc::Delivery *delivery;
    // The decision trace: records go to *trace; none if it is null or empty.
    const std::function<void(const bmc_trace &)> *trace = nullptr;
    bmc_trace trace_rec{};
};

struct bmc_conn;
struct bmc_obs;

namespace bmc {

class Datapath {
public:
    // Only clients in `allow` are answered from the cache; writes from anyone invalidate.
    Datapath(CacheMemory mem, const bmc_config &cfg, Allowlist allow, Delivery delivery);

    // One Ethernet frame arriving at the server (XDP's view). On Action::Tx the frame
    // has been rewritten in place into the reply, and resized.
    RxResult ingress(std::vector<std::uint8_t> &frame, std::uint64_t now_ns);
    // The same on a buffer of `capacity` bytes holding a frame of `len` bytes; on
    // Action::Tx, len is the reply's length. A reply that does not fit passes.
    RxResult ingress(std::uint8_t *frame, std::uint32_t &len, std::uint32_t capacity,
                     std::uint64_t now_ns);

    // A hint for a frame that ingress() will be given soon: starts loading the cache
    // lines its key's buckets hold, for a single-key "get <key>" (untagged IPv4 or IPv6;
    // any other frame is left alone). It reads the frame and changes nothing, so
    // ingress() decides exactly as without it. A hit's largest cost on a busy poller is
    // the bucket header's cache miss; a batch hides it by hinting frames ahead.
    void prefetch(const std::uint8_t *frame, std::uint32_t len) const { prefetch_buckets(env_.mem, env_.cfg, frame, len); }

    // One Ethernet frame leaving the server (TC egress's view): may fill the cache.
    void egress(std::span<const std::uint8_t> frame, std::uint64_t now_ns);

    const Counters &counters() const { return counters_; }
    const bmc_config &config() const { return env_.cfg; }
    // The decision trace (while the cache's trace_every is set): each record this
    // datapath makes goes to sink, on the calling thread.
    void set_trace(std::function<void(const bmc_trace &)> sink);
    // The parse of the last frame ingress() looked at.
    const bmc_frame &frame() const { return frame_; }

    // A datagram memcached sent in answer to a request that ingress() passed, as the
    // frame to its client (the AF_XDP relay): request_headers are the request's bytes
    // before its UDP payload and request its parse; the reply gets the headers the
    // cache's own replies get (bmc_reply_headers), whatever the request's shape. Empty if
    // they cannot be made.
    std::vector<std::uint8_t> relayed_reply(const bmc_frame &request, std::span<const std::uint8_t> request_headers,
                                            std::span<const std::uint8_t> payload);

private:
    RxResult rx_udp(std::uint8_t *frame, std::uint32_t &len, std::uint32_t capacity, bool allowed,
                    std::uint64_t now_ns);
    void count(std::uint32_t stat) { counters_[stat]++; }
    // readable: bytes from frame.data() that may be read (the buffer, at least the frame).
    const bmc_frame &parse(std::span<const std::uint8_t> frame, std::uint32_t readable);

    Counters counters_{};
    bmc_env env_;
    bmc_scratch sc_{};
    bmc_rx rx_{};
    bmc_tx tx_{};
    bmc_frame frame_{};
    Allowlist allow_;
    Delivery delivery_;
    std::function<void(const bmc_trace &)> trace_;
};

// Bytes of one observed connection's state (the observer's map value).
std::size_t conn_state_bytes();

// CLOCK_TAI, which bpf_ktime_get_tai_ns() reads: flush_all with a Unix time.
std::uint64_t tai_now_ns();

// The write observer's reading (core/bmc_stream.h) over byte streams: TCP connections as
// memcached's sockets receive them, and UDP datagrams' payloads. The kernel backend runs
// the same reading on memcached's sockets; this instantiation serves the differential
// tests and tools.
class Observer {
public:
    Observer(CacheMemory mem, const bmc_config &cfg);
    ~Observer();
    // The next bytes of connection conn_id (a new id starts a connection).
    void chunk(std::uint64_t conn_id, std::span<const std::uint8_t> bytes, std::uint64_t now_ns);
    // One UDP datagram's payload, memcached's 8-byte frame header first.
    void datagram(std::span<const std::uint8_t> payload, std::uint64_t now_ns);
    // A frame as the stack delivers it to a socket of memcached (the cgroup skb ingress
    // program's view): UDP datagrams to the port are read; data of a TCP connection is
    // unobserved here (observed ones go through chunk), so it starts a new epoch.
    void delivered(std::span<const std::uint8_t> frame, std::uint64_t now_ns);
    // Whether the reading of a connection was lost; its state's bytes (differential tests).
    bool lost(std::uint64_t conn_id) const;
    std::vector<std::uint8_t> conn_state(std::uint64_t conn_id) const;
    const Counters &counters() const { return counters_; }
    // The trace of its invalidations and epochs, as Datapath::set_trace.
    void set_trace(std::function<void(const bmc_trace &)> sink);

private:
    void read(bmc_obs &o, std::span<const std::uint8_t> bytes);
    std::function<void(const bmc_trace &)> trace_;
    Counters counters_{};
    bmc_env env_;
    bmc_scratch sc_{};
    std::unordered_map<std::uint64_t, std::unique_ptr<bmc_conn>> conns_;
};

// Internet checksum of an IPv4 header (header checksum field included as stored).
std::uint16_t ipv4_header_checksum(const std::uint8_t *hdr, std::size_t len);

}  // namespace bmc
