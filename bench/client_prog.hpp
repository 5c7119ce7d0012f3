// The client side of the in-kernel benchmark (bench_client in bench.bpf.c): loads it for
// one workload, fills the request template, the key sequence and the exact reply expected
// for every request id, and reads its counters and latency histogram.
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_shared.h"
#include "bmc_bench.skel.h"
#include "datapath.hpp"
#include "percpu.hpp"
#include "wire.hpp"
#include "workload.hpp"

namespace bmc::bench {

using Mac = std::array<std::uint8_t, 6>;

struct ClientConfig {
    Workload w;
    bool echo = false;  // replies are the requests bounced back, not memcached's answers
    unsigned threads = 1;
    std::uint16_t port = 11211, gen_port = 40000;
    std::uint32_t server_ip = 0, client_ip = 0;  // network order
    Mac server_mac{}, client_mac{};
};

inline std::uint64_t load_le64(const std::uint8_t *p) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

// What bench_absorb adds for one item at position pos of a reply.
inline std::uint64_t item_hash(const std::string &item, std::uint32_t pos) {
    const auto len = std::uint32_t(item.size());
    const auto *p = reinterpret_cast<const std::uint8_t *>(item.data());
    std::uint64_t h = bench_item_seed(pos);
    for (std::uint32_t k = 0; k < bench_words_per_item(len); k++) h = bench_mix(h, load_le64(p + bench_word_offset(k, len)));
    return bench_item_final(h, len);
}

// The items of the reply memcached sends for these keys (each in its own datagram; the
// cache sends them in one), "END\r\n" not included.
inline std::vector<std::string> reply_items(const Workload &w, const std::vector<std::uint64_t> &keys) {
    std::vector<std::string> items;
    for (auto k : keys) {
        const std::string v = value_of(w, k);
        items.push_back("VALUE " + key_name(w, k) + " 0 " + std::to_string(v.size()) + "\r\n" + v + "\r\n");
    }
    return items;
}

// The keys request id asks for, given the sequence the generator draws them from.
inline std::vector<std::uint64_t> keys_of(std::uint32_t id, unsigned width, const std::vector<std::uint64_t> &seq) {
    std::vector<std::uint64_t> keys;
    for (unsigned i = 0; i < width; i++) keys.push_back(seq[(id * width + i) & (BENCH_IDS - 1)]);
    return keys;
}

struct ClientSnapshot {
    bench_counters c{};
    std::vector<std::uint64_t> hist = std::vector<std::uint64_t>(BENCH_HIST_BUCKETS);

    ClientSnapshot operator-(const ClientSnapshot &o) const {
        ClientSnapshot d;
        auto *a = reinterpret_cast<const std::uint64_t *>(&c), *b = reinterpret_cast<const std::uint64_t *>(&o.c);
        auto *r = reinterpret_cast<std::uint64_t *>(&d.c);
        for (std::size_t i = 0; i < sizeof c / 8; i++) r[i] = a[i] - b[i];
        for (std::size_t i = 0; i < hist.size(); i++) d.hist[i] = hist[i] - o.hist[i];
        return d;
    }
    std::uint64_t latency_count() const {
        std::uint64_t n = 0;
        for (auto x : hist) n += x;
        return n;
    }
    // The upper bound of the bucket holding quantile q, ns; 0 when empty.
    std::uint64_t quantile(double q) const {
        const std::uint64_t n = latency_count();
        if (!n) return 0;
        const auto rank = std::uint64_t(q * double(n - 1)) + 1;
        std::uint64_t seen = 0;
        for (std::uint32_t b = 0; b < hist.size(); b++) {
            seen += hist[b];
            if (seen >= rank) return bench_hist_lower(b + 1) - 1;
        }
        return 0;
    }
};

class ClientProgram {
public:
    // seq: the key (1-based index) of every sequence slot, BENCH_IDS of them.
    ClientProgram(const ClientConfig &cfg, const std::vector<std::uint64_t> &seq) : cfg_(cfg), seq_(seq) {
        if (seq.size() != BENCH_IDS) throw std::invalid_argument("the key sequence needs 65536 slots");
        if (cfg.w.width < 1 || cfg.w.width > BENCH_MAX_WIDTH) throw std::invalid_argument("bad multi-get width");
        std::vector<std::uint64_t> first = keys_of(0, cfg.w.width, seq);
        request_ = get_request(0, first, cfg.w);
        item_len_ = cfg.echo ? std::uint32_t(request_.size() - 8) : std::uint32_t(reply_items(cfg.w, {1})[0].size());
        if (item_len_ < 8 || item_len_ + 5 > BENCH_MAX_PAYLOAD)
            throw std::invalid_argument("a reply item must take 8 to 1,387 bytes");
        skel_ = bmc_bench__open();
        if (!skel_) throw std::runtime_error("opening the benchmark's BPF object failed");
        auto *ro = skel_->rodata;
        ro->bench_port = cfg.port;
        ro->gen_port = cfg.gen_port;
        ro->server_ip = cfg.server_ip;
        ro->client_ip = cfg.client_ip;
        ro->gen_threads = cfg.threads;
        ro->item_len = item_len_;
        ro->item_words = bench_words_per_item(item_len_);
        ro->max_items = BENCH_MAX_PAYLOAD / item_len_;
        ro->width = cfg.echo ? 1 : cfg.w.width;
        ro->expect_echo = cfg.echo;
        if (bmc_bench__load(skel_)) {
            bmc_bench__destroy(skel_);
            throw std::runtime_error("loading the benchmark's BPF programs failed");
        }
        fill();
    }
    ~ClientProgram() { bmc_bench__destroy(skel_); }
    ClientProgram(const ClientProgram &) = delete;
    ClientProgram &operator=(const ClientProgram &) = delete;

    int prog_fd() const { return bpf_program__fd(skel_->progs.bench_client); }
    int requests_fd() const { return bpf_map__fd(skel_->maps.requests); }
    int counters_fd() const { return bpf_map__fd(skel_->maps.bench_count); }
    const bench_template &frame() const { return tmpl_; }
    // What BPF_PROG_RUN takes for a generator run: kMetaLen bytes of metadata, then the
    // template (bench_client generates when it sees metadata).
    static constexpr std::uint32_t kMetaLen = 4;
    const std::vector<std::uint8_t> &run_input() const { return input_; }
    std::uint32_t item_len() const { return item_len_; }
    // The exact reply items for request id, as the sink checks them.
    std::vector<std::string> expected_items(std::uint32_t id) const {
        auto keys = keys_of(id, cfg_.w.width, seq_);
        if (cfg_.echo) return {get_request(std::uint16_t(id), keys, cfg_.w).substr(8)};
        return reply_items(cfg_.w, keys);
    }

    // Paces every CPU's generator at rate_per_cpu requests/s; 0 for as fast as possible.
    void set_pace(double rate_per_cpu) {
        const auto ncpu = std::size_t(libbpf_num_possible_cpus());
        bench_pace p{};
        p.period = rate_per_cpu > 0 ? std::uint64_t(16e9 / rate_per_cpu) : 0;
        std::vector<bench_pace> v(ncpu, p);
        std::uint32_t zero = 0;
        if (bpf_map_update_elem(bpf_map__fd(skel_->maps.pace), &zero, v.data(), 0))
            throw std::runtime_error("setting the generator's pace failed");
    }
    std::uint64_t lagged() const { return bmc::percpu_sum<bench_pace>(bpf_map__fd(skel_->maps.pace), 0).lagged; }

    ClientSnapshot snapshot() const {
        ClientSnapshot s;
        s.c = bmc::percpu_sum<bench_counters>(bpf_map__fd(skel_->maps.bench_count), 0);
        for (std::uint32_t b = 0; b < BENCH_HIST_BUCKETS; b++)
            s.hist[b] = bmc::percpu_sum<std::uint64_t>(bpf_map__fd(skel_->maps.latency), b);
        return s;
    }

private:
    void fill() {
        // The request template: Ethernet, IPv4, UDP, memcached frame header, get line.
        std::uint8_t *f = tmpl_.bytes;
        const std::uint32_t l4 = 14 + 20, len = l4 + 8 + std::uint32_t(request_.size());
        if (len >= BENCH_MAX_FRAME) throw std::invalid_argument("request too large for the template");
        std::memcpy(f, cfg_.server_mac.data(), 6);
        std::memcpy(f + 6, cfg_.client_mac.data(), 6);
        bmc::put_be16(f + 12, 0x0800);
        f[14] = 0x45;
        bmc::put_be16(f + 16, std::uint16_t(20 + 8 + request_.size()));
        bmc::put_be16(f + 20, 0x4000);
        f[22] = 64;
        f[23] = 17;
        std::memcpy(f + 26, &cfg_.client_ip, 4);
        std::memcpy(f + 30, &cfg_.server_ip, 4);
        std::uint16_t c = bmc::ipv4_header_checksum(f + 14, 20);
        std::memcpy(f + 24, &c, 2);
        bmc::put_be16(f + l4, cfg_.gen_port);
        bmc::put_be16(f + l4 + 2, cfg_.port);
        bmc::put_be16(f + l4 + 4, std::uint16_t(8 + request_.size()));  // UDP checksum 0: none, valid over IPv4
        std::memcpy(f + l4 + 8, request_.data(), request_.size());
        tmpl_.len = len;
        input_.assign(kMetaLen, 0);
        input_.insert(input_.end(), f, f + len);
        tmpl_.width = cfg_.w.width;
        tmpl_.key_len = cfg_.w.key_size;
        tmpl_.id_off = l4 + 8;
        for (unsigned i = 0; i < cfg_.w.width; i++) tmpl_.key_off[i] = l4 + 8 + 8 + 4 + i * (cfg_.w.key_size + 1);
        std::uint32_t zero = 0;
        if (bpf_map_update_elem(bpf_map__fd(skel_->maps.gen_tmpl), &zero, &tmpl_, 0))
            throw std::runtime_error("writing the request template failed");

        std::vector<std::uint32_t> ids(BENCH_IDS);
        std::vector<bench_key> names(BENCH_IDS);
        std::vector<std::uint64_t> sums(BENCH_IDS);
        for (std::uint32_t i = 0; i < BENCH_IDS; i++) {
            ids[i] = i;
            std::string k = key_name(cfg_.w, seq_[i]);
            std::memcpy(names[i].name, k.data(), k.size());
        }
        for (std::uint32_t id = 0; id < BENCH_IDS; id++) {
            auto items = expected_items(id);
            for (std::uint32_t pos = 0; pos < items.size(); pos++) sums[id] += item_hash(items[pos], pos);
        }
        std::uint32_t n = BENCH_IDS;
        if (bpf_map_update_batch(bpf_map__fd(skel_->maps.gen_keys), ids.data(), names.data(), &n, nullptr) ||
            (n = BENCH_IDS, bpf_map_update_batch(bpf_map__fd(skel_->maps.expected), ids.data(), sums.data(), &n,
                                                  nullptr)))
            throw std::runtime_error("writing the key sequence failed");
    }

    ClientConfig cfg_;
    std::vector<std::uint64_t> seq_;
    std::string request_;
    std::uint32_t item_len_ = 0;
    bench_template tmpl_{};
    std::vector<std::uint8_t> input_;
    bmc_bench *skel_ = nullptr;
};

}  // namespace bmc::bench
