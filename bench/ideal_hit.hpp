// The floor of a hit for an AF_XDP poller (bmc-floor --kind afxdp-ideal): the work of
// bench/bench_ideal.bpf.c, in C++ on a received frame in the poller's UMEM. It reads
// bmc's cache with the core's layout, lookup and seqlock (bmc_find, bmc_seq_retry), so
// the table, the entry and the item are the backend's. What it does: an untagged IPv4
// frame without options read in place, the key hashed and compared, the bucket searched
// under the cache's rules, the item and "END" copied over the request, addresses and
// ports swapped, the IPv4 checksum recomputed, the UDP checksum zero. What it leaves
// out, which the backend's datapath (bmc::Datapath::ingress) does: the allowlist and the
// stack-delivery checks, the counters, the trace, other shapes (VLAN, options, IPv6,
// multi-get, large items), leases and forwarding on a miss (a miss is dropped), and the
// scratch copies that let one parser serve every shape. Benchmark only.
#pragma once

#include <cstdint>
#include <cstring>

#include "bmc_cache.h"
#include "datapath.hpp"
#include "wire.hpp"

namespace bmc::bench {

// Answers frame in place (true, len the reply's length) or leaves it (false).
inline bool ideal_hit(const CacheMemory &mem, const bmc_config &cfg, std::uint8_t *f, std::uint32_t &len,
                      std::uint32_t room, std::uint64_t now) {
    constexpr std::uint32_t kIp = BMC_ETH_HLEN, kUdp = kIp + 20, kPayload = kUdp + 8;
    constexpr std::uint32_t kKey = kPayload + BMC_FRAME_HDR_LEN + 4;  // after "get "
    auto be16 = [&](std::uint32_t at) { return std::uint32_t(f[at] << 8 | f[at + 1]); };
    if (len < kKey + 3 || be16(12) != BMC_ETH_P_IP || f[kIp] != 0x45 || f[kIp + 9] != BMC_IPPROTO_UDP ||
        (be16(kIp + 6) & 0x3fff) || be16(kUdp + 2) != cfg.port)
        return false;
    const std::uint8_t *req = f + kPayload;
    if (req[2] | req[3] | req[4] | (req[5] ^ 1) | (req[8] ^ 'g') | (req[9] ^ 'e') | (req[10] ^ 't') | (req[11] ^ ' '))
        return false;
    const std::uint8_t *key = f + kKey;
    __u32 h = BMC_FNV_OFFSET, key_len = 0;
    for (; key_len < BMC_MAX_KEY_LEN && kKey + key_len < len; key_len++) {
        const std::uint8_t c = key[key_len];
        if (c == '\r') break;
        if (!bmc_is_key_byte(c)) return false;
        h = bmc_hash_update(h, c);
    }
    // The longest key whose item fits a small entry: "VALUE <key> 0 0\r\n\r\n".
    if (key_len == 0 || key_len > BMC_SMALL_DATA - 14 || len != kKey + key_len + 2 || key[key_len + 1] != '\n')
        return false;
    const __u32 si = bmc_small_index(&cfg, h), li = bmc_large_index(&cfg, h);
    if (si >= mem.n_small || li >= mem.n_large || !mem.global) return false;
    bmc_found found;
    if (!bmc_find(&mem.small[si], &mem.large[li], mem.global, &cfg, h, key_len, now + cfg.clock_margin_ns, &found) ||
        found.large)
        return false;
    const __u32 item_len = BMC_READ_ONCE(found.e->item_len);
    const auto *item = reinterpret_cast<const std::uint8_t *>(found.e + 1);
    const std::uint32_t reply_len = kPayload + BMC_FRAME_HDR_LEN + item_len + 5;
    // An item starts "VALUE <key> ": its key against the request's, before the copy
    // writes over the request.
    if (item_len < 6 + key_len + 8 || item_len > BMC_SMALL_DATA || reply_len > room ||
        std::memcmp(item + 6, key, key_len) != 0)
        return false;
    std::memcpy(f + kPayload + BMC_FRAME_HDR_LEN, item, item_len);
    std::memcpy(f + kPayload + BMC_FRAME_HDR_LEN + item_len, "END\r\n", 5);
    if (bmc_seq_retry(found.e, found.seq)) return false;  // changed under the copy: the client asks again
    std::uint8_t t[6];
    std::memcpy(t, f, 6);
    std::memcpy(f, f + 6, 6);
    std::memcpy(f + 6, t, 6);
    std::memcpy(t, f + kIp + 12, 4);
    std::memcpy(f + kIp + 12, f + kIp + 16, 4);
    std::memcpy(f + kIp + 16, t, 4);
    std::memcpy(t, f + kUdp, 2);
    std::memcpy(f + kUdp, f + kUdp + 2, 2);
    std::memcpy(f + kUdp + 2, t, 2);
    put_be16(f + kUdp + 4, std::uint16_t(reply_len - kUdp));
    f[kUdp + 6] = f[kUdp + 7] = 0;
    put_be16(f + kIp + 2, std::uint16_t(reply_len - kIp));
    f[kIp + 8] = 64;
    f[kIp + 10] = f[kIp + 11] = 0;
    const std::uint16_t check = ipv4_header_checksum(f + kIp, 20);  // in network order already
    std::memcpy(f + kIp + 10, &check, 2);
    len = reply_len;
    return true;
}

}  // namespace bmc::bench
