#include "datapath.hpp"

#include <time.h>

#include <algorithm>

static inline bmc_small_bucket *bmc_env_small(bmc_env *env, __u32 idx) {
    return idx < env->mem.n_small ? &env->mem.small[idx] : nullptr;
}
static inline bmc_large_bucket *bmc_env_large(bmc_env *env, __u32 idx) {
    return idx < env->mem.n_large ? &env->mem.large[idx] : nullptr;
}
static inline bmc_global *bmc_env_global(bmc_env *env) { return env->mem.global; }
static inline const bmc_config *bmc_env_config(bmc_env *env) { return &env->cfg; }
static inline void bmc_env_stat(bmc_env *env, __u32 stat) {
    if (stat < BMC_NUM_STATS) (*env->counters)[stat]++;
}
#define BMC_COPY(dst, src, len) std::memcpy((dst), (src), (len))
static inline __u64 bmc_env_tai_ns(bmc_env *env) { return env->tai_ns ? env->tai_ns() : 0; }
static inline int bmc_env_local(bmc_env *env, const __u8 *addr16) {
    return env->delivery ? env->delivery->local_kind(addr16) : 0;
}
static inline int bmc_env_vlan(bmc_env *env, __u32 vid) {
    return env->delivery && env->delivery->vlan(std::uint16_t(vid));
}

#include "bmc_stream.h"

namespace bmc {
namespace {

constexpr std::uint32_t kEthHlen = BMC_ETH_HLEN;
// Largest reply frame: Ethernet, IPv4, UDP and a full datagram payload.
constexpr std::uint32_t kMaxFrame = BMC_ETH_HLEN + 20 + 8 + BMC_MAX_PAYLOAD;


}  // namespace

bmc_config default_config() {
    bmc_config c{};
    c.port = BMC_DEFAULT_PORT;
    c.small_mask = BMC_DEFAULT_SMALL_BUCKETS - 1;
    c.large_mask = BMC_DEFAULT_LARGE_BUCKETS - 1;
    c.max_amp = BMC_DEFAULT_MAX_AMP;
    c.max_age_ns = 10ULL * 1000000000ULL;
    c.fill_guard_ns = 10ULL * 1000000ULL;
    c.check_delivery = 1;
    return c;
}

std::uint64_t monotonic_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::uint64_t(ts.tv_sec) * 1000000000ULL + std::uint64_t(ts.tv_nsec);
}

std::uint16_t ipv4_header_checksum(const std::uint8_t *hdr, std::size_t len) {
    std::uint32_t sum = 0;
    for (std::size_t i = 0; i + 1 < len; i += 2) sum += std::uint32_t(hdr[i] | hdr[i + 1] << 8);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return std::uint16_t(~sum);  // in memory (network) order, like the BPF side
}

Datapath::Datapath(CacheMemory mem, const bmc_config &cfg, Allowlist allow, Delivery delivery)
    : env_{mem, cfg, &counters_, tai_now_ns, nullptr}, allow_(std::move(allow)), delivery_(std::move(delivery)) {
    env_.delivery = &delivery_;
    std::memcpy(env_.cfg.mac, delivery_.mac.data(), 6);
    env_.cfg.loopback = delivery_.loopback;
}

std::uint8_t Delivery::local_kind(const std::uint8_t *addr16) const {
    for (const auto &[a, kind] : local)
        if (std::memcmp(a.data(), addr16, 16) == 0) return kind;
    return 0;
}

bool Delivery::vlan(std::uint16_t vid) const { return std::find(vlans.begin(), vlans.end(), vid) != vlans.end(); }

std::size_t conn_state_bytes() { return sizeof(bmc_conn); }

std::uint64_t tai_now_ns() {
    timespec ts;
    clock_gettime(CLOCK_TAI, &ts);
    return std::uint64_t(ts.tv_sec) * 1000000000ULL + std::uint64_t(ts.tv_nsec);
}

Observer::Observer(CacheMemory mem, const bmc_config &cfg) : env_{mem, cfg, &counters_, tai_now_ns, nullptr} {}

void Observer::read(bmc_obs &o, std::span<const std::uint8_t> bytes) {
    std::size_t off = 0;
    if (o.conn.mode == BMC_CONN_LOST) {
        bmc_obs_lose(&env_, &o);
        return;
    }
    while (off < bytes.size() && o.conn.mode != BMC_CONN_LOST) {
        const auto avail = std::uint32_t(std::min<std::size_t>(bytes.size() - off, UINT32_MAX));
        if (std::uint32_t n = bmc_obs_skip(&env_, &o, avail)) {
            off += n;
            continue;
        }
        const auto n = std::min<std::uint32_t>(avail, BMC_OBS_WINDOW);
        std::memcpy(sc_.in, bytes.data() + off, n);
        o.pos = 0;
        o.end = n;
        while (!bmc_obs_step(&env_, &sc_, &o)) {}
        off += o.pos;
    }
    counters_[BMC_STAT_OBS_CHUNKS]++;
}

void Observer::chunk(std::uint64_t conn_id, std::span<const std::uint8_t> bytes, std::uint64_t now_ns) {
    auto &c = conns_[conn_id];
    if (!c) {
        c = std::make_unique<bmc_conn>();
        bmc_conn_init(c.get());
    }
    bmc_obs o{};
    o.conn = *c;
    o.now = now_ns;
    read(o, bytes);
    *c = o.conn;
}

void Observer::delivered(std::span<const std::uint8_t> frame, std::uint64_t now_ns) {
    if (frame.size() < kEthHlen) return;
    const std::uint16_t type = std::uint16_t(frame[12] << 8 | frame[13]);
    if (type != BMC_ETH_P_IP && type != BMC_ETH_P_IPV6) return;
    const auto pkt_len = std::uint32_t(frame.size());
    const std::uint32_t hlen = std::min<std::uint32_t>(pkt_len, BMC_HDR_MAX);
    if (hlen < kEthHlen + 20) return;
    std::memcpy(sc_.hdr, frame.data(), hlen);
    std::memset(sc_.hdr, 0, 12);  // the program sees no Ethernet header: MACs are zero
    bmc_frame f{};
    bmc_parse_frame(&sc_, pkt_len, hlen, env_.cfg.port, &f);
    if (!f.to_server || f.payload_len == 0) return;
    if (f.proto == BMC_IPPROTO_TCP) {
        bmc_rx_flush(&env_, BMC_STAT_INVAL_UNOBSERVED, now_ns);
        return;
    }
    if (f.proto != BMC_IPPROTO_UDP || f.malformed || f.payload_len < BMC_FRAME_HDR_LEN) return;
    datagram(frame.subspan(f.payload_off, std::min<std::size_t>(f.payload_len, frame.size() - f.payload_off)), now_ns);
}

void Observer::datagram(std::span<const std::uint8_t> payload, std::uint64_t now_ns) {
    bmc_obs o{};
    if (!bmc_obs_udp_begin(&o, payload.data(), std::uint32_t(payload.size()), now_ns)) return;
    read(o, payload.subspan(BMC_FRAME_HDR_LEN));
    bmc_obs_udp_end(&env_, &o);
}

bool Observer::lost(std::uint64_t conn_id) const {
    auto it = conns_.find(conn_id);
    return it != conns_.end() && it->second->mode == BMC_CONN_LOST;
}

std::vector<std::uint8_t> Observer::conn_state(std::uint64_t conn_id) const {
    auto it = conns_.find(conn_id);
    if (it == conns_.end()) return {};
    const auto *b = reinterpret_cast<const std::uint8_t *>(it->second.get());
    return {b, b + sizeof(bmc_conn)};
}

Observer::~Observer() = default;

void Datapath::rx_scan(std::uint32_t start, std::uint32_t len, bool get_allowed,
                       std::uint64_t now_ns) {
    bmc_scan_init(&rx_.st, start, get_allowed);
    rx_.now = now_ns;
    rx_.end = len;
    rx_.out_len = BMC_FRAME_HDR_LEN;
    rx_.hits = rx_.misses = 0;
    rx_.get_done = rx_.trailing = rx_.too_big = rx_.pad = 0;
    if (sc_.in[start & BMC_SCRATCH_MASK] == BMC_BIN_MAGIC_REQ) return;
    for (std::uint32_t i = 0; i < BMC_MAX_PAYLOAD; i++)
        if (bmc_rx_byte(&env_, &sc_, &rx_)) break;
}

RxResult Datapath::rx_udp(std::uint8_t *frame, std::uint32_t &len, std::uint32_t capacity,
                          std::uint32_t payload_off, std::uint32_t payload_len, bool plain_ip, bool allowed,
                          std::uint64_t now_ns) {
    if (payload_len > BMC_MAX_PAYLOAD || payload_len < BMC_FRAME_HDR_LEN) {
        count(BMC_STAT_PASS_MALFORMED);
        return {};
    }
    std::memcpy(sc_.in, frame + payload_off, payload_len);
    bool single = bmc_frame_single(sc_.in);
    rx_scan(BMC_FRAME_HDR_LEN, payload_len, single && plain_ip && allowed, now_ns);

    std::uint32_t verdict = bmc_rx_udp_verdict(&rx_, single, plain_ip, allowed, env_.cfg.max_amp);
    if (verdict == BMC_STAT_PASS_NOT_GET) return {};
    count(BMC_STAT_GET_REQS);
    if (verdict == BMC_STAT_HIT_REQS)
        if (auto d = std::uint32_t(bmc_rx_deliverable(&env_, &sc_, &frame_, payload_len))) verdict = d;
    if (verdict != BMC_STAT_HIT_REQS) {
        count(verdict);
        return {};
    }
    std::uint32_t reply_len = bmc_rx_build_reply(&sc_, &rx_);

    const std::uint32_t hdr_len = bmc_reply_headers(&sc_, &frame_, reply_len);
    if (hdr_len + reply_len > capacity) {
        count(BMC_STAT_PASS_NO_ROOM);
        return {};
    }
    std::memcpy(frame, sc_.hdr, hdr_len);
    std::memcpy(frame + hdr_len, sc_.out, reply_len);
    len = hdr_len + reply_len;
    count(BMC_STAT_HIT_REQS);
    return {Action::Tx};
}

const bmc_frame &Datapath::parse(std::span<const std::uint8_t> frame) {
    const auto pkt_len = std::uint32_t(frame.size());
    const std::uint32_t hlen = std::min<std::uint32_t>(pkt_len, BMC_HDR_MAX);
    std::memcpy(sc_.hdr, frame.data(), hlen);
    bmc_parse_frame(&sc_, pkt_len, hlen, env_.cfg.port, &frame_);
    return frame_;
}

RxResult Datapath::ingress(std::vector<std::uint8_t> &frame, std::uint64_t now_ns) {
    auto len = std::uint32_t(frame.size());
    frame.resize(std::max<std::size_t>(frame.size(), kMaxFrame));
    RxResult r = ingress(frame.data(), len, std::uint32_t(frame.size()), now_ns);
    frame.resize(len);
    return r;
}

RxResult Datapath::ingress(std::uint8_t *frame, std::uint32_t &len, std::uint32_t capacity,
                           std::uint64_t now_ns) {
    if (len < kEthHlen) return {};
    const bmc_frame &f = parse({frame, len});
    if (!f.to_server) return {};
    if (f.proto == BMC_IPPROTO_UDP) {
        if (f.malformed) {
            count(BMC_STAT_PASS_MALFORMED);
            return {};
        }
        return rx_udp(frame, len, capacity, f.payload_off, f.payload_len, f.answerable, allow_.contains(f.src, bmc_frame_family(&sc_, &f)),
                      now_ns);
    }
    return {};
}

void Datapath::egress(std::span<const std::uint8_t> frame, std::uint64_t now_ns) {
    if (frame.size() < kEthHlen) return;
    const bmc_frame &f = parse(frame);
    if (f.proto != BMC_IPPROTO_UDP || !f.from_server || !f.complete) return;
    const std::uint32_t payload_len = f.payload_len;
    if (payload_len < BMC_FRAME_HDR_LEN || payload_len > BMC_MAX_PAYLOAD) return;
    std::memcpy(sc_.in, frame.data() + f.payload_off, payload_len);
    if (!bmc_frame_single(sc_.in)) return;
    bmc_scan_init(&tx_.st, BMC_FRAME_HDR_LEN, 0);
    tx_.now = now_ns;
    tx_.end = payload_len;
    tx_.pad = 0;
    for (std::uint32_t i = 0; i < BMC_MAX_PAYLOAD; i++)
        if (bmc_tx_byte(&env_, &sc_, &tx_)) break;
}

}  // namespace bmc
