// The benchmark's key space and request bytes: key k (1-based) and its value are pure
// functions of k, so every reply can be checked without keeping state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bmc::bench {

struct Workload {
    std::uint64_t keys = 100000;
    double zipf_s = 0.99;
    unsigned key_size = 16;
    unsigned value_size = 32;
    unsigned width = 1;  // keys per get
};

inline unsigned digits(std::uint64_t n) {
    unsigned d = 1;
    while (n >= 10) {
        n /= 10;
        d++;
    }
    return d;
}

inline unsigned key_digits_min(std::uint64_t keys) { return 4 + digits(keys); }

// "key:" then k zero-padded to key_size bytes.
inline std::string key_name(const Workload &w, std::uint64_t k) {
    std::string digits_str = std::to_string(k);
    return "key:" + std::string(w.key_size - 4 - digits_str.size(), '0') + digits_str;
}

inline std::string value_of(const Workload &w, std::uint64_t k) {
    std::string v = std::to_string(k * 2654435761ULL % 1000000007ULL) + ":";
    while (v.size() < w.value_size) v += char('a' + (k + v.size()) % 26);
    v.resize(w.value_size);
    return v;
}

inline std::string set_command(const Workload &w, std::uint64_t k, bool noreply) {
    const std::string v = value_of(w, k);
    return "set " + key_name(w, k) + " 0 0 " + std::to_string(v.size()) + (noreply ? " noreply" : "") + "\r\n" +
           v + "\r\n";
}

// memcached UDP frame header (request id, sequence 0 of 1) and the get line.
inline std::string get_request(std::uint16_t id, const std::vector<std::uint64_t> &keys,
                               const Workload &w) {
    std::string s = {char(id >> 8), char(id & 0xff), 0, 0, 0, 1, 0, 0};
    s += "get";
    for (auto k : keys) s += " " + key_name(w, k);
    s += "\r\n";
    return s;
}

// What memcached (or the cache) answers, frame headers removed and datagrams joined.
inline std::string expected_reply(const Workload &w, const std::vector<std::uint64_t> &keys) {
    std::string s;
    for (auto k : keys) {
        const std::string v = value_of(w, k);
        s += "VALUE " + key_name(w, k) + " 0 " + std::to_string(v.size()) + "\r\n" + v + "\r\n";
    }
    return s + "END\r\n";
}

}  // namespace bmc::bench
