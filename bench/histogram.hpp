// Latency histogram with bounded relative error: log-linear buckets, 128 per power of
// two, so a recorded value and the bucket bound reported for it differ by less than
// 1/128 (0.8 %). Values below 128 are exact.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <vector>

namespace bmc::bench {

class Histogram {
public:
    static constexpr unsigned kSubBits = 7, kSub = 1u << kSubBits;
    static constexpr unsigned kBuckets = kSub + (64 - kSubBits) * kSub;

    static unsigned index(std::uint64_t v) {
        if (v < kSub) return unsigned(v);
        const unsigned msb = 63u - unsigned(std::countl_zero(v));
        const unsigned shift = msb - kSubBits;
        return kSub + shift * kSub + unsigned((v >> shift) - kSub);
    }
    // Largest value that lands in bucket i.
    static std::uint64_t upper(unsigned i) {
        if (i < kSub) return i;
        const unsigned shift = (i - kSub) / kSub, sub = (i - kSub) % kSub + kSub;
        return ((std::uint64_t(sub) + 1) << shift) - 1;
    }

    void record(std::uint64_t v) {
        counts_[index(v)]++;
        total_++;
        max_ = std::max(max_, v);
        sum_ += v;
    }
    void merge(const Histogram &o) {
        for (unsigned i = 0; i < kBuckets; i++) counts_[i] += o.counts_[i];
        total_ += o.total_;
        max_ = std::max(max_, o.max_);
        sum_ += o.sum_;
    }
    // The value at quantile q in [0, 1]: the upper bound of its bucket, capped at max.
    std::uint64_t quantile(double q) const {
        if (!total_) return 0;
        std::uint64_t rank = std::uint64_t(q * double(total_ - 1)) + 1, seen = 0;
        for (unsigned i = 0; i < kBuckets; i++) {
            seen += counts_[i];
            if (seen >= rank) return std::min(upper(i), max_);
        }
        return max_;
    }
    std::uint64_t count() const { return total_; }
    std::uint64_t max() const { return max_; }
    double mean() const { return total_ ? double(sum_) / double(total_) : 0; }
    // Non-empty buckets as (upper bound, count), for CDF plots.
    std::vector<std::pair<std::uint64_t, std::uint64_t>> buckets() const {
        std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
        for (unsigned i = 0; i < kBuckets; i++)
            if (counts_[i]) out.emplace_back(upper(i), counts_[i]);
        return out;
    }

private:
    std::array<std::uint64_t, kBuckets> counts_{};
    std::uint64_t total_ = 0, max_ = 0, sum_ = 0;
};

}  // namespace bmc::bench
