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
static inline __u64 bmc_env_tai_ns(bmc_env *env) { return env->tai_ns ? env->tai_ns() : 0; }
// The callers' clock is the exact one (monotonic_ns()): nothing to read again.
static inline __u64 bmc_env_exact_now(bmc_env *, __u64 now) { return now; }
static inline int bmc_env_local(bmc_env *env, const __u8 *addr16) {
    return env->delivery ? env->delivery->local_kind(addr16) : 0;
}
static inline int bmc_env_vlan(bmc_env *env, __u32 vid) {
    return env->delivery && env->delivery->vlan(std::uint16_t(vid));
}
static inline bmc_trace *bmc_env_trace_reserve(bmc_env *env) {
    if (!env->trace || !*env->trace) return nullptr;
    env->trace_rec = bmc_trace{};
    env->trace_rec.where = BMC_TRACE_USER;
    return &env->trace_rec;
}
static inline void bmc_env_trace_submit(bmc_env *env, bmc_trace *t) { (*env->trace)(*t); }

#include "bmc_stream.h"

// I/O for the shared driver: the frame is a buffer of `capacity` bytes.
struct bmc_io {
    std::uint8_t *frame;
    std::uint32_t *len;
    std::uint32_t capacity;
    bmc_env *env;
};
// A copy of n bytes in 32-byte blocks when the destination has room for the last
// block's overshoot (dst_room bytes from dst; the source is a scratch array or a frame
// buffer of at least as much): requests and replies are short, and a variable-length
// memcpy of them costs more in its setup (rep movs) than in its copying.
static inline void copy_blocks(std::uint8_t *dst, const std::uint8_t *src, std::uint32_t n, std::uint32_t dst_room) {
    if (n > 512 || std::uint64_t(n) + 32 > dst_room) {
        std::memcpy(dst, src, n);
        return;
    }
    for (std::uint32_t i = 0; i < n; i += 32) std::memcpy(dst + i, src + i, 32);
}
static inline int bmc_io_load(bmc_io *io, __u32 off, __u8 *dst, __u32 n) {
    if (off > *io->len || n > *io->len - off) return -1;
    // Into scratch->in (BMC_SCRATCH_IN bytes); reads stay inside the frame's buffer.
    if (std::uint64_t(off) + n + 32 <= io->capacity)
        copy_blocks(dst, io->frame + off, n, BMC_SCRATCH_IN);
    else
        std::memcpy(dst, io->frame + off, n);
    return 0;
}
static inline void bmc_io_scan(bmc_io *io, bmc_scratch *sc, bmc_rx *rx) {
    for (std::uint32_t i = 0; i < BMC_MAX_PAYLOAD; i++)
        if (bmc_rx_byte(io->env, sc, rx)) break;
}
// The socket lookup is the kernel's (bpf_sk_lookup_udp); userspace datapaths are handed
// only what XDP already found deliverable, or run where check_socket is off.
static inline int bmc_io_sk_lookup(bmc_io *, const bmc_scratch *, const bmc_frame *) { return 1; }
static inline bmc_sock_memo *bmc_io_sock_memo(bmc_io *) { return nullptr; }
static inline int bmc_io_reply(bmc_io *io, const bmc_scratch *sc, __u32 hdr_len, __u32 payload_len) {
    if (hdr_len + payload_len > io->capacity) return -1;
    // The headers' last block may run into the payload's place: the payload's copy follows.
    if (hdr_len + 32 <= sizeof sc->hdr)
        copy_blocks(io->frame, sc->hdr, hdr_len, io->capacity);
    else
        std::memcpy(io->frame, sc->hdr, hdr_len);
    copy_blocks(io->frame + hdr_len, sc->out, payload_len, io->capacity - hdr_len);
    *io->len = hdr_len + payload_len;
    return 0;
}

struct bmc_tx_io {
    std::span<const std::uint8_t> frame;
    bmc_env *env;
    std::uint64_t now;
};
static inline int bmc_tx_io_load(bmc_tx_io *io, __u32 off, __u8 *dst, __u32 n) {
    if (off > io->frame.size() || n > io->frame.size() - off) return -1;
    std::memcpy(dst, io->frame.data() + off, n);
    return 0;
}
static inline void bmc_tx_io_scan(bmc_tx_io *io, bmc_scratch *sc, bmc_tx *tx) {
    for (std::uint32_t i = 0; i < BMC_MAX_PAYLOAD; i++)
        if (bmc_tx_byte(io->env, sc, tx)) break;
}
static inline __u64 bmc_tx_io_now(bmc_tx_io *io) { return io->now; }

#include "bmc_driver.h"

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
    c.max_age_ns = BMC_DEFAULT_MAX_AGE_S * 1000000000ULL;
    c.fill_guard_ns = BMC_DEFAULT_FILL_GUARD_MS * 1000000ULL;
    c.sock_memo_ns = BMC_DEFAULT_SOCK_MEMO_MS * 1000000ULL;
    c.check_delivery = 1;
    return c;
}

std::uint64_t monotonic_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::uint64_t(ts.tv_sec) * 1000000000ULL + std::uint64_t(ts.tv_nsec);
}

std::uint64_t coarse_clock_margin_ns() {
    timespec res{};
    // Three ticks: the coarse clock lags by up to one while its CPU runs, and bmc_rx keeps
    // a reading for the rest of its tick (bmc_coarse_now in bpf/bmc_bpf_env.h), which adds one;
    // the third absorbs a late tick.
    if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) != 0) return 30000000;  // HZ=100's three ticks
    return 3 * (std::uint64_t(res.tv_sec) * 1000000000ULL + std::uint64_t(res.tv_nsec));
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
    o.path = BMC_TRACE_PATH_TCP;
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
        bmc_rx_flush(&env_, BMC_STAT_INVAL_UNOBSERVED, BMC_VIA(BMC_TRACE_PATH_TCP, BMC_TRACE_CMD_NONE), now_ns);
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

void Observer::set_trace(std::function<void(const bmc_trace &)> sink) {
    trace_ = std::move(sink);
    env_.trace = &trace_;
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

RxResult Datapath::rx_udp(std::uint8_t *frame, std::uint32_t &len, std::uint32_t capacity, bool allowed,
                          std::uint64_t now_ns) {
    bmc_io io{frame, &len, capacity, &env_};
    if (bmc_drive_rx_udp(&env_, &io, &sc_, &rx_, &frame_, allowed, now_ns) != BMC_RX_TX) return {};
    return {Action::Tx};
}

const bmc_frame &Datapath::parse(std::span<const std::uint8_t> frame, std::uint32_t readable) {
    const auto pkt_len = std::uint32_t(frame.size());
    const std::uint32_t hlen = std::min<std::uint32_t>(pkt_len, BMC_HDR_MAX);
    if (std::uint64_t(hlen) + 32 <= readable)
        copy_blocks(sc_.hdr, frame.data(), hlen, BMC_HDR_MAX);
    else
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
    const bmc_frame &f = parse({frame, len}, capacity);
    if (!f.to_server) return {};
    if (f.proto == BMC_IPPROTO_UDP) {
        if (f.malformed) {
            count(BMC_STAT_PASS_MALFORMED);
            return {};
        }
        return rx_udp(frame, len, capacity, allow_.contains(f.src, bmc_frame_family(&sc_, &f)), now_ns);
    }
    return {};
}

std::optional<std::uint32_t> hinted_key_hash(const std::uint8_t *frame, std::uint32_t len) {
    if (len < kEthHlen + 40) return std::nullopt;
    std::uint32_t off;
    const std::uint16_t type = std::uint16_t(frame[12] << 8 | frame[13]);
    if (type == BMC_ETH_P_IP && frame[kEthHlen + 9] == BMC_IPPROTO_UDP)
        off = kEthHlen + (frame[kEthHlen] & 15u) * 4;
    else if (type == BMC_ETH_P_IPV6 && frame[kEthHlen + 6] == BMC_IPPROTO_UDP)
        off = kEthHlen + 40;
    else
        return std::nullopt;
    off += 8 + BMC_FRAME_HDR_LEN;  // UDP, then memcached's frame header
    if (off + 5 > len || std::memcmp(frame + off, "get ", 4) != 0) return std::nullopt;
    __u32 h = BMC_FNV_OFFSET;
    const std::uint32_t end = std::min(len, off + 4 + BMC_MAX_KEY_LEN);
    for (std::uint32_t i = off + 4; i < end && bmc_is_key_byte(frame[i]); i++) h = bmc_hash_update(h, frame[i]);
    return h;
}

void prefetch_buckets(const CacheMemory &mem, const bmc_config &cfg, const std::uint8_t *frame, std::uint32_t len) {
    const auto hash = hinted_key_hash(frame, len);
    if (!hash) return;
    const __u32 h = *hash;
    const std::uint32_t si = bmc_small_index(&cfg, h), li = bmc_large_index(&cfg, h);
    if (si < mem.n_small) {
        const auto *b = reinterpret_cast<const char *>(&mem.small[si]);
        for (std::size_t at = 0; at < sizeof(bmc_small_bucket); at += 64) __builtin_prefetch(b + at);
    }
    if (li < mem.n_large)  // bmc_find reads only the large ways' headers first
        for (const auto &way : mem.large[li].way) __builtin_prefetch(&way.h);
}

void Datapath::set_trace(std::function<void(const bmc_trace &)> sink) {
    trace_ = std::move(sink);
    env_.trace = &trace_;
}

std::vector<std::uint8_t> Datapath::relayed_reply(const bmc_frame &request, std::span<const std::uint8_t> request_headers,
                                                  std::span<const std::uint8_t> payload) {
    if (request_headers.size() != request.payload_off || request_headers.size() > BMC_HDR_MAX ||
        payload.size() > BMC_MAX_PAYLOAD || payload.size() < BMC_FRAME_HDR_LEN)
        return {};
    std::memcpy(sc_.hdr, request_headers.data(), request_headers.size());
    std::memcpy(sc_.out, payload.data(), payload.size());
    const __u32 hdr_len = bmc_reply_headers(&sc_, &request, __u32(payload.size()));
    if (hdr_len < BMC_REPLY_HDR_MIN || hdr_len > BMC_REPLY_HDR_MAX) return {};
    std::vector<std::uint8_t> out(sc_.hdr, sc_.hdr + hdr_len);
    out.insert(out.end(), sc_.out, sc_.out + payload.size());
    return out;
}

void Datapath::egress(std::span<const std::uint8_t> frame, std::uint64_t now_ns) {
    if (frame.size() < BMC_ETH_HLEN) return;
    bmc_tx_io io{frame, &env_, now_ns};
    bmc_drive_tx(&io, &sc_, &tx_, &parse(frame, std::uint32_t(frame.size())));
}

}  // namespace bmc
