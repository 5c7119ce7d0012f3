// Reading per-CPU BPF maps: a key's value on every possible CPU, and their sum.
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace bmc {

// The value at `key` on every possible CPU, or nothing if the lookup fails.
template <class T>
std::vector<T> percpu_values(int map_fd, std::uint32_t key) {
    const int n = libbpf_num_possible_cpus();
    std::vector<T> v(std::size_t(n > 0 ? n : 1));
    if (bpf_map_lookup_elem(map_fd, &key, v.data()) != 0) return {};
    return v;
}

// Their sum, for a value that is 64-bit counters only (one, or a struct of them): each
// counter summed over the CPUs; zero if the lookup fails.
template <class T>
T percpu_sum(int map_fd, std::uint32_t key) {
    static_assert(sizeof(T) % sizeof(std::uint64_t) == 0 && std::is_trivially_copyable_v<T>);
    std::uint64_t sum[sizeof(T) / sizeof(std::uint64_t)] = {};
    for (const T &v : percpu_values<T>(map_fd, key)) {
        std::uint64_t words[sizeof(T) / sizeof(std::uint64_t)];
        std::memcpy(words, &v, sizeof v);
        for (std::size_t i = 0; i < sizeof(T) / sizeof(std::uint64_t); i++) sum[i] += words[i];
    }
    T out;
    std::memcpy(&out, sum, sizeof out);
    return out;
}

}  // namespace bmc
