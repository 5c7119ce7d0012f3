#include "inspect.hpp"

#include <arpa/inet.h>

#include <cstdio>
#include <cstring>

#include "bmc_cache.h"

namespace bmc {

std::string counter_stat_lines(const Counters &c) {
    std::string out;
    for (std::uint32_t i = 0; i < BMC_NUM_STATS; i++)
        out += "STAT " + std::string(bmc_stat_names[i]) + " " + std::to_string(c[i]) + "\r\n";
    char ratio[32];
    const std::uint64_t gets = c[BMC_STAT_GET_REQS], hits = c[BMC_STAT_HIT_REQS];
    std::snprintf(ratio, sizeof ratio, "%.4f", gets ? double(hits) / double(gets) : 0.0);
    return out + "STAT hit_ratio " + ratio + "\r\n";
}

std::string dump_key(const bmc_config &cfg, const CacheMemory &c, const std::string &key) {
    if (key.empty() || key.size() > BMC_MAX_KEY_LEN || key.find(' ') != std::string::npos)
        return "CLIENT_ERROR bad key\r\n";
    const __u32 h = bmc_hash_bytes(reinterpret_cast<const __u8 *>(key.data()), __u32(key.size()));
    const __u32 si = bmc_small_index(&cfg, h), li = bmc_large_index(&cfg, h);
    const bmc_small_bucket &sb = c.small[si];
    const bmc_global &g = *c.global;
    const std::uint64_t now = monotonic_ns();
    const __u32 gen = __atomic_load_n(&sb.hdr.gen, __ATOMIC_ACQUIRE), epoch = __atomic_load_n(&g.epoch, __ATOMIC_ACQUIRE);
    char buf[256];
    std::string out;
    auto add = [&](const char *fmt, auto... args) {
        std::snprintf(buf, sizeof buf, fmt, args...);
        out += std::string("STAT ") + buf + "\r\n";
    };
    add("key %s", key.c_str());
    add("hash 0x%08x", h);
    add("small_bucket %u", si);
    add("large_bucket %u", li);
    add("bucket_gen %u", gen);
    add("epoch %u", epoch);
    const __u32 slot = bmc_lease_slot(h);
    const bool leased = __atomic_load_n(&sb.hdr.lease_word[slot], __ATOMIC_ACQUIRE) == bmc_lease_word(h, gen);
    add("lease %s", leased ? "held (a miss awaits memcached's reply)" : "none");
    auto entry = [&](const char *table, unsigned way, const bmc_entry_hdr &e, const __u8 *data) {
        if (e.hash != h || e.item_len == 0) return;
        const bool key_ok = e.key_len == key.size() && e.item_len > 6 + key.size() &&
                            std::memcmp(data + 6, key.data(), key.size()) == 0;
        const __u32 dead = bmc_entry_dead_reason(&e, gen, epoch, g.flush_at_ns, g.flush_cutoff_ns, now, cfg.max_age_ns);
        const char *why = !key_ok                                   ? "another key with the same hash"
                          : dead == BMC_STAT_MISS_INVALIDATED       ? "invalidated (its bucket's generation moved on)"
                          : dead == BMC_STAT_MISS_FLUSHED           ? "flushed (a new epoch)"
                          : dead == BMC_STAT_MISS_EXPIRED           ? "too old (--max-age)"
                          : dead == BMC_STAT_MISS_DELAYED_FLUSH     ? "dead after a delayed flush_all"
                                                                    : "yes";
        add("entry %s.%u item_bytes=%u gen=%u epoch=%u age_ms=%llu served=%s", table, way, e.item_len, e.gen, e.epoch,
            (unsigned long long)((now - e.fill_ns) / 1000000), why);
    };
    for (unsigned w = 0; w < BMC_SMALL_WAYS; w++) entry("small", w, sb.way[w].h, sb.way[w].data);
    for (unsigned w = 0; w < BMC_LARGE_WAYS; w++) entry("large", w, c.large[li].way[w].h, c.large[li].way[w].data);
    return out + "END\r\n";
}

std::string trace_line(const bmc_trace &t, std::uint64_t start_ns) {
    const bool user = t.where == BMC_TRACE_USER;
    const char *where = user ? "afxdp" : t.what == BMC_TRACE_GET ? "xdp" : t.what == BMC_TRACE_FILL ? "tc" : "observer";
    const char *what = t.what == BMC_TRACE_GET     ? "get"
                       : t.what == BMC_TRACE_FILL  ? "fill"
                       : t.what == BMC_TRACE_INVAL ? "invalidate"
                                                   : "epoch";
    char client[INET6_ADDRSTRLEN + 8] = "-";
    if (t.what == BMC_TRACE_INVAL || t.what == BMC_TRACE_EPOCH) {
        // The request that caused it, in the client's column: path and command.
        const char *path = t.path == BMC_TRACE_PATH_TCP ? "tcp" : t.path == BMC_TRACE_PATH_UDP ? "udp" : nullptr;
        std::string cmd;
        if (t.cmd == BMC_TRACE_CMD_NONE) {
        } else if (t.cmd & BMC_TRACE_CMD_BINARY) {
            const auto op = std::uint8_t(t.cmd & ~BMC_TRACE_CMD_BINARY);
            const auto name = bmc_binary_op_name(op);
            char hex[8];
            std::snprintf(hex, sizeof hex, "0x%02x", op);
            cmd = "binary-" + (name.empty() ? std::string(hex) : std::string(name));
        } else if (t.cmd < BMC_NUM_CMDS) {
            cmd = std::string(bmc_cmd_specs[t.cmd].name);
        }
        if (path)
            std::snprintf(client, sizeof client, "%s%s%s", path, cmd.empty() ? "" : ":", cmd.c_str());
    } else if (t.what == BMC_TRACE_GET) {
        char a[INET6_ADDRSTRLEN] = "?";
        static const std::uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (t.family == 4 && std::memcmp(t.addr, mapped, 12) == 0) {
            inet_ntop(AF_INET, t.addr + 12, a, sizeof a);
            std::snprintf(client, sizeof client, "%s:%u", a, t.port);
        } else {
            inet_ntop(AF_INET6, t.addr, a, sizeof a);
            std::snprintf(client, sizeof client, "[%s]:%u", a, t.port);
        }
    }
    std::string key;
    if (t.key_len) {
        key = "key=" + std::string(reinterpret_cast<const char *>(t.key), std::min<std::size_t>(t.key_len, BMC_TRACE_KEY));
        if (t.key_len > BMC_TRACE_KEY) key += "...";
    } else {
        char h[24];
        std::snprintf(h, sizeof h, "hash=0x%08x", t.hash);
        key = t.what == BMC_TRACE_EPOCH ? "-" : h;
    }
    const double at = t.time_ns >= start_ns ? double(t.time_ns - start_ns) / 1e9 : 0.0;
    char line[512];
    std::snprintf(line, sizeof line, "%.6f %s %s %s %s %s\n", at, where, what, client, key.c_str(),
                  t.reason < BMC_NUM_STATS ? std::string(bmc_stat_names[t.reason]).c_str() : "?");
    return line;
}

}  // namespace bmc
