// Loads the kernel datapath without attaching it and runs packets through it with
// BPF_PROG_TEST_RUN.
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include <algorithm>
#include <memory>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "bmc_cache.h"
#include "kernel_backend.hpp"
#include "packet.hpp"
#include "test_util.hpp"

namespace bmc::test {

struct ProgRun {
    int retval = -1;
    Bytes out;
};

inline ProgRun test_run(int prog_fd, const Bytes &in) {
    ProgRun r;
    r.out.resize(8192);
    LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in.data(), .data_out = r.out.data(),
                .data_size_in = std::uint32_t(in.size()), .data_size_out = std::uint32_t(r.out.size()),
                .repeat = 1);
    int err = bpf_prog_test_run_opts(prog_fd, &o);
    EXPECT_EQ(err, 0) << "BPF_PROG_TEST_RUN: " << std::strerror(-err);
    r.retval = int(o.retval);
    r.out.resize(o.data_size_out);
    return r;
}

// The decision trace's BPF ring buffer, read into `records`: every record, or only those
// of the kinds given (BMC_TRACE_GET, ...).
class TraceRing {
public:
    std::vector<bmc_trace> records;

    explicit TraceRing(int ring_fd, std::vector<std::uint8_t> kinds = {}) : kinds_(std::move(kinds)) {
        ring_ = ring_buffer__new(ring_fd, &TraceRing::take, this, nullptr);
        if (!ring_) throw std::runtime_error("ring_buffer__new: " + std::string(std::strerror(errno)));
    }
    ~TraceRing() { ring_buffer__free(ring_); }
    TraceRing(const TraceRing &) = delete;
    TraceRing &operator=(const TraceRing &) = delete;
    // Reads what the programs submitted since; returns how many records (of any kind).
    int consume() { return ring_buffer__consume(ring_); }
    // Forgets everything submitted so far.
    void reset() {
        consume();
        records.clear();
    }

private:
    static int take(void *ctx, void *data, std::size_t size) {
        auto *self = static_cast<TraceRing *>(ctx);
        const auto *t = static_cast<const bmc_trace *>(data);
        if (size == sizeof(bmc_trace) &&
            (self->kinds_.empty() || std::find(self->kinds_.begin(), self->kinds_.end(), t->what) != self->kinds_.end()))
            self->records.push_back(*t);
        return 0;
    }
    ring_buffer *ring_ = nullptr;
    std::vector<std::uint8_t> kinds_;
};

class BpfFixture : public ::testing::Test {
protected:
    static constexpr std::uint32_t kSmall = 64, kLarge = 16;
    std::unique_ptr<KernelBackend> be;
    Delivery delivery = test_delivery();  // what load() gives the programs

    void load(std::uint64_t fill_guard_ns = default_config().fill_guard_ns, std::uint32_t max_amp = 1000,
              Allowlist allow = Allowlist::everyone(), std::uint32_t small = kSmall) {
        be.reset();
        KernelOptions o;
        o.max_amp = max_amp;
        o.allow = std::move(allow);
        o.attach = false;
        o.delivery = delivery;
        o.small_buckets = small;
        o.large_buckets = kLarge;
        o.fill_guard_ns = fill_guard_ns;
        o.max_age_ns = 3600ULL * 1000000000ULL;
        be = std::make_unique<KernelBackend>(o);
    }
    void SetUp() override {
        BMC_REQUIRE_ROOT();
        load();
    }
    // The small-table entry holding key, or nullptr.
    bmc_entry_hdr *entry_of(const std::string &key) const {
        const CacheMemory mem = be->cache();
        const bmc_config cfg = be->config();
        const __u32 h = bmc_hash_bytes(reinterpret_cast<const __u8 *>(key.data()), __u32(key.size()));
        for (auto &w : mem.small[bmc_small_index(&cfg, h)].way)
            if (w.h.hash == h && w.h.item_len) return &w.h;
        return nullptr;
    }
    ProgRun xdp(const Bytes &in) { return test_run(be->xdp_prog_fd(), in); }
    ProgRun tc(const Bytes &in) { return test_run(be->tc_prog_fd(), in); }
    // The write observer: the next bytes of TCP connection `conn` as memcached's socket
    // reads them (through bmc_stream's test wrapper, in pieces the test runner takes),
    // and a packet as delivered to memcached's socket (cgroup skb ingress).
    void stream(std::uint64_t conn, const std::string &bytes) {
        for (std::size_t at = 0; at < bytes.size(); at += 3000) {
            Bytes frame(14, 0);
            std::memcpy(frame.data(), &conn, sizeof conn);  // the wrapper's connection id
            frame[12] = 0x88;  // local experimental ethertype: not IP
            frame[13] = 0xb5;
            frame.insert(frame.end(), bytes.begin() + long(at),
                         bytes.begin() + long(std::min(bytes.size(), at + 3000)));
            ASSERT_EQ(test_run(be->stream_test_prog_fd(), frame).retval, 0);  // TC_ACT_OK
        }
    }
    ProgRun sock_in(const Bytes &frame) { return test_run(be->sock_ingress_prog_fd(), frame); }
    // A connection's reading state in the kernel, as bytes.
    Bytes conn_state(std::uint64_t conn, std::size_t size) {
        Bytes v(size);
        if (bpf_map_lookup_elem(be->conns_map_fd(), &conn, v.data()) != 0) return {};
        return v;
    }
    std::uint64_t count(bmc_stat s) { return be->read_counters()[s]; }
};

}  // namespace bmc::test
