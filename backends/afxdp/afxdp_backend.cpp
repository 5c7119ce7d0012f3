#include "afxdp_backend.hpp"

#include "miss_channels.hpp"
#include "miss_table.hpp"
#include "poll_loop.hpp"
#include "wire.hpp"
#include "xsk.hpp"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <linux/ethtool.h>
#include <linux/if_xdp.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <xdp/xsk.h>

#include <cerrno>
#include <concurrentqueue/concurrentqueue.h>
#include <array>
#include <cstring>
#include <map>
#include <mutex>

namespace bmc {
namespace {

constexpr std::uint32_t kBatch = 64;
constexpr unsigned kRelayBatch = 32;   // datagrams per recvmmsg

std::string err_text(int e) { return std::strerror(e < 0 ? -e : e); }

}  // namespace

unsigned rx_queue_count(const std::string &iface) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 1;
    ethtool_channels ch{};
    ch.cmd = ETHTOOL_GCHANNELS;
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, iface.c_str(), IFNAMSIZ - 1);
    ifr.ifr_data = reinterpret_cast<char *>(&ch);
    unsigned n = 1;
    if (ioctl(fd, SIOCETHTOOL, &ifr) == 0) n = std::max({1u, ch.rx_count, ch.combined_count});
    close(fd);
    return std::min<unsigned>(n, BMC_MAX_QUEUES);
}

std::unique_ptr<Datapath> poller_datapath(const KernelBackend &kernel) {
    bmc_config cfg = kernel.config();
    cfg.check_delivery = 0;
    cfg.check_socket = 0;
    return std::make_unique<Datapath>(kernel.cache(), cfg, Allowlist::everyone(), kernel.delivery());
}

struct AfxdpBackend::TraceQueue {
    moodycamel::ConcurrentQueue<bmc_trace> q;
};

struct AfxdpBackend::Poller {
    std::unique_ptr<XskQueue> q;
    unsigned queue = 0;
    int wake_fd = -1;                        // relay -> poller: frames queued
    moodycamel::ConcurrentQueue<std::vector<std::uint8_t>> to_send;
    std::unique_ptr<Datapath> dp;
    // Forwarded misses: their ids, channel by channel, and each channel's socket.
    std::unique_ptr<MissTable> misses;
    std::unique_ptr<MissChannels> channels;
    std::thread thread;
    // Published by the poller for readers on other threads.
    std::array<std::atomic<std::uint64_t>, BMC_NUM_STATS> counters{};
    std::atomic<std::uint64_t> rx_frames{0}, rx_batches{0}, forwarded{0}, tx_drops{0}, tx_full{0}, rotations{0};
    bool busy_poll = false;
    std::vector<std::uint8_t> relayed_frame;  // the one being sent

    ~Poller() {
        if (wake_fd >= 0) close(wake_fd);
    }

    void open_channel(std::uint64_t now) { channels->open(misses->rotate(now)); }

    // Relay: close the channels retired longer than grace ago.
    void expire_channels(std::uint64_t now, std::uint64_t grace) { channels->close_channels(misses->expire(now, grace)); }

    // A get the cache did not answer (f: its parse, of any shape the XDP program hands
    // over): send its datagram to memcached under an id of ours, and keep its headers to
    // answer the client.
    void forward(const std::uint8_t *frame, std::uint32_t len, const bmc_frame &f, std::uint64_t now) {
        const std::uint32_t off = f.payload_off;
        if (f.proto != BMC_IPPROTO_UDP || !f.answerable || off > MissTable::kReplyHdr ||
            off + BMC_FRAME_HDR_LEN > len || f.payload_len < BMC_FRAME_HDR_LEN || off + f.payload_len > len)
            return;
        const bool v6 = f.answerable == 6;
        if (v6 && !channels->dual_stack()) return;  // no IPv6 here: the client times out as on a loss
        MissTable::Request r;
        std::memcpy(r.hdr.data(), frame, off);
        r.hdr_len = off;
        r.frame = f;
        r.client_id = std::uint16_t(frame[off] << 8 | frame[off + 1]);
        auto t = misses->issue(r, now);
        if (!t) {  // every id of the channel pending or quarantined: a fresh channel
            open_channel(now);
            rotations.fetch_add(1, std::memory_order_relaxed);
            t = misses->issue(r, now);
            if (!t) return;
        }
        std::uint8_t buf[BMC_MAX_PAYLOAD];
        const std::uint32_t plen = std::min<std::uint32_t>(f.payload_len, sizeof buf);
        std::memcpy(buf, frame + off, plen);
        put_be16(buf, t->id);
        // memcached: the request's destination address and port.
        sockaddr_in6 to6{};
        sockaddr_in to4{};
        sockaddr *to;
        socklen_t to_len;
        if (channels->dual_stack()) {
            to6.sin6_family = AF_INET6;
            if (v6) {
                std::memcpy(&to6.sin6_addr, frame + f.l3_off + 24, 16);
            } else {
                to6.sin6_addr.s6_addr[10] = to6.sin6_addr.s6_addr[11] = 0xff;
                std::memcpy(&to6.sin6_addr.s6_addr[12], frame + f.l3_off + 16, 4);
            }
            std::memcpy(&to6.sin6_port, frame + f.l4_off + 2, 2);
            to = reinterpret_cast<sockaddr *>(&to6);
            to_len = sizeof to6;
        } else {
            to4.sin_family = AF_INET;
            std::memcpy(&to4.sin_addr, frame + f.l3_off + 16, 4);
            std::memcpy(&to4.sin_port, frame + f.l4_off + 2, 2);
            to = reinterpret_cast<sockaddr *>(&to4);
            to_len = sizeof to4;
        }
        if (sendto(channels->send_fd(), buf, plen, MSG_DONTWAIT, to, to_len) == ssize_t(plen))
            forwarded.fetch_add(1, std::memory_order_relaxed);
    }

    void publish() {
        const Counters &c = dp->counters();
        for (std::uint32_t i = 0; i < BMC_NUM_STATS; i++) counters[i].store(c[i], std::memory_order_relaxed);
        tx_full.store(q->tx_full(), std::memory_order_relaxed);
    }

    // The poll loop's handler (poll_loop.hpp): replies the relay queued, then each get
    // the XDP program handed over, answered from the cache or forwarded to memcached.
    bool send_queued(XskQueue &xq) {
        bool sent = false;
        while (to_send.try_dequeue(relayed_frame)) {
            if (!xq.send_copy(relayed_frame.data(), std::uint32_t(relayed_frame.size())))
                tx_drops.fetch_add(1, std::memory_order_relaxed);
            sent = true;
        }
        return sent;
    }
    void prefetch(const std::uint8_t *frame, std::uint32_t len) { dp->prefetch(frame, len); }
    bool answer(std::uint8_t *frame, std::uint32_t &len, std::uint32_t room, std::uint64_t now) {
        const std::uint32_t received = len;
        if (dp->ingress(frame, len, room, now).action == Action::Tx) return true;
        forward(frame, received, dp->frame(), now);  // the frame is as received when passed
        return false;
    }
    void tx_dropped() { tx_drops.fetch_add(1, std::memory_order_relaxed); }
    void batch_done(std::uint32_t n) {
        rx_frames.fetch_add(n, std::memory_order_relaxed);
        rx_batches.fetch_add(1, std::memory_order_relaxed);
        publish();
    }

    void run(const std::atomic<bool> &stop) {
        poll_queue(*q, stop, {.batch = kBatch, .busy_poll = busy_poll, .wake_fd = wake_fd}, *this);
        publish();
    }
};

AfxdpBackend::AfxdpBackend(KernelBackend &kernel, const AfxdpOptions &opts)
    : kernel_(kernel), opts_(opts), trace_(std::make_unique<TraceQueue>()) {
    if (interface_is_loopback(kernel.iface())) throw Error(kAfxdpLoopbackRefusal);
    const unsigned n = rx_queue_count(kernel.iface());
    try {
        epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
        if (epoll_fd_ < 0) throw Error("epoll: " + err_text(errno));
        relay_wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (relay_wake_fd_ < 0) throw Error("eventfd: " + err_text(errno));
        epoll_event wev{EPOLLIN, {.u64 = ~0ULL}};
        epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, relay_wake_fd_, &wev);
        for (unsigned q = 0; q < n; q++) {
            auto p = std::make_unique<Poller>();
            p->queue = q;
            p->busy_poll = opts.busy_poll;
            p->dp = poller_datapath(kernel);
            p->dp->set_trace([q = trace_.get()](const bmc_trace &t) { q->q.enqueue(t); });
            p->q = std::make_unique<XskQueue>(kernel.iface(), q, opts.frames_per_queue, opts.zero_copy, opts.busy_poll,
                                              notice_);
            bind_mode_ = p->q->zero_copy() ? "zero-copy" : "copy";
            p->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            if (p->wake_fd < 0) throw Error("eventfd: " + err_text(errno));
            p->misses = std::make_unique<MissTable>(std::uint64_t(opts.relay_timeout.count()) * 1000000ULL);
            p->channels = std::make_unique<MissChannels>(epoll_fd_, q);
            p->open_channel(bmc::monotonic_ns());
            if (int e = xsk_socket__update_xskmap(p->q->socket(), kernel.xsks_map_fd()))
                throw Error("registering the AF_XDP socket of queue " + std::to_string(q) + ": " + err_text(e));
            pollers_.push_back(std::move(p));
        }
        for (auto &p : pollers_) p->thread = std::thread([this, raw = p.get()] { raw->run(stop_); });
        relay_ = std::thread([this] { relay_loop(); });
    } catch (...) {
        stop_all();
        throw;
    }
}

AfxdpBackend::~AfxdpBackend() { stop_all(); }

void AfxdpBackend::stop_all() {
    stop_ = true;
    if (relay_wake_fd_ >= 0) {
        std::uint64_t one = 1;
        [[maybe_unused]] auto r = write(relay_wake_fd_, &one, sizeof one);
    }
    if (relay_.joinable()) relay_.join();
    for (auto &p : pollers_) {
        if (p->thread.joinable()) p->thread.join();
        bpf_map_delete_elem(kernel_.xsks_map_fd(), &p->queue);
    }
    pollers_.clear();
    if (epoll_fd_ >= 0) close(epoll_fd_);
    if (relay_wake_fd_ >= 0) close(relay_wake_fd_);
    epoll_fd_ = relay_wake_fd_ = -1;
}

// A reply datagram that ends memcached's answer to a get: END, or an error line.
static bool ends_reply(const std::uint8_t *p, std::size_t len) {
    auto ends = [&](const char *s) {
        const std::size_t n = std::strlen(s);
        return len >= n && std::memcmp(p + len - n, s, n) == 0;
    };
    auto starts = [&](const char *s) {
        const std::size_t n = std::strlen(s);
        return len >= BMC_FRAME_HDR_LEN + n && std::memcmp(p + BMC_FRAME_HDR_LEN, s, n) == 0;
    };
    return ends("END\r\n") || starts("ERROR") || starts("CLIENT_ERROR") || starts("SERVER_ERROR");
}

void AfxdpBackend::relay_loop() {
    Datapath dp(kernel_.cache(), kernel_.config(), kernel_.allowlist(), kernel_.delivery());
    dp.set_trace([q = trace_.get()](const bmc_trace &t) { q->q.enqueue(t); });
    // One batch of datagrams, each with room for the largest a client's frame can carry
    // back (anything longer arrives cut, MSG_TRUNC, and is dropped as late), and for the
    // SO_RXQ_OVFL count.
    static constexpr std::size_t kDatagram = BMC_MTU - 28;
    std::vector<std::uint8_t> bufs(kRelayBatch * kDatagram);
    std::array<mmsghdr, kRelayBatch> msgs{};
    std::array<iovec, kRelayBatch> iovs{};
    std::array<std::array<char, CMSG_SPACE(sizeof(std::uint32_t))>, kRelayBatch> ctl{};
    // Per channel, the socket's drop count as last seen (SO_RXQ_OVFL is cumulative).
    std::map<std::uint64_t, std::uint32_t> drops_seen;
    std::vector<std::uint8_t> frame;
    epoll_event evs[16];
    // A retired channel stays open this long for replies still on their way.
    const std::uint64_t grace = 2 * std::uint64_t(opts_.relay_timeout.count()) * 1000000ULL;
    while (!stop_.load(std::memory_order_relaxed)) {
        int n = epoll_wait(epoll_fd_, evs, 16, 100);
        for (int e = 0; e < n; e++) {
            if (evs[e].data.u64 == ~0ULL) continue;
            Poller &p = *pollers_[evs[e].data.u64 >> 32];
            const auto channel = std::uint32_t(evs[e].data.u64);
            const int fd = p.channels->fd(channel);
            if (fd < 0) continue;
            for (;;) {
                for (unsigned i = 0; i < kRelayBatch; i++) {
                    iovs[i] = {bufs.data() + i * kDatagram, kDatagram};
                    msgs[i].msg_hdr = {};
                    msgs[i].msg_hdr.msg_iov = &iovs[i];
                    msgs[i].msg_hdr.msg_iovlen = 1;
                    msgs[i].msg_hdr.msg_control = ctl[i].data();
                    msgs[i].msg_hdr.msg_controllen = ctl[i].size();
                }
                const int got = recvmmsg(fd, msgs.data(), kRelayBatch, MSG_DONTWAIT, nullptr);
                if (got <= 0) break;
                bool queued = false;
                for (int i = 0; i < got; i++) {
                    for (cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c))
                        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
                            std::uint32_t total;
                            std::memcpy(&total, CMSG_DATA(c), sizeof total);
                            std::uint32_t &seen = drops_seen[evs[e].data.u64];
                            relay_dropped_.fetch_add(total - seen, std::memory_order_relaxed);
                            seen = total;
                        }
                    std::uint8_t *buf = bufs.data() + std::size_t(i) * kDatagram;
                    const std::size_t len = msgs[i].msg_len;
                    if (len < BMC_FRAME_HDR_LEN || (msgs[i].msg_hdr.msg_flags & MSG_TRUNC)) {
                        late_.fetch_add(1, std::memory_order_relaxed);
                        continue;
                    }
                    const std::uint16_t id = std::uint16_t(buf[0] << 8 | buf[1]);
                    const std::uint64_t now = bmc::monotonic_ns();
                    MissTable::Request req;
                    const auto verdict = p.misses->reply(channel, id, ends_reply(buf, len), now, &req);
                    if (verdict == MissTable::Reply::Late || verdict == MissTable::Reply::Unknown) {
                        late_.fetch_add(1, std::memory_order_relaxed);
                        continue;
                    }
                    put_be16(buf, req.client_id);
                    frame = dp.relayed_reply(req.frame, {req.hdr.data(), req.hdr_len}, {buf, len});
                    if (frame.empty()) {
                        late_.fetch_add(1, std::memory_order_relaxed);
                        continue;
                    }
                    dp.egress(frame, now);  // the fill, exactly as TC egress would make it
                    p.to_send.enqueue(std::move(frame));
                    frame = {};
                    queued = true;
                    relayed_.fetch_add(1, std::memory_order_relaxed);
                }
                if (queued) {  // one wake-up per batch: the poller sends all it finds queued
                    std::uint64_t one = 1;
                    [[maybe_unused]] auto r = write(p.wake_fd, &one, sizeof one);
                }
                if (got < int(kRelayBatch)) break;
            }
        }
        for (auto &p : pollers_) p->expire_channels(bmc::monotonic_ns(), grace);
        const Counters &c = dp.counters();
        for (std::uint32_t i = 0; i < BMC_NUM_STATS; i++) relay_counters_[i].store(c[i], std::memory_order_relaxed);
    }
}

void AfxdpBackend::drain_trace(std::vector<bmc_trace> &out) {
    bmc_trace t;
    for (int i = 0; i < 65536 && trace_->q.try_dequeue(t); i++) out.push_back(t);
}

void add_counters(AfxdpCounters &into, const AfxdpCounters &c) {
    for (std::uint32_t i = 0; i < BMC_NUM_STATS; i++) into.datapath[i] += c.datapath[i];
    into.rx_frames += c.rx_frames;
    into.rx_batches += c.rx_batches;
    into.rx_per_queue.insert(into.rx_per_queue.end(), c.rx_per_queue.begin(), c.rx_per_queue.end());
    into.forwarded += c.forwarded;
    into.relayed += c.relayed;
    into.late += c.late;
    into.relay_dropped += c.relay_dropped;
    into.tx_dropped += c.tx_dropped;
    into.tx_full += c.tx_full;
    into.rotations += c.rotations;
}

AfxdpCounters AfxdpBackend::counters() const {
    AfxdpCounters c;
    for (auto &p : pollers_) {
        for (std::uint32_t i = 0; i < BMC_NUM_STATS; i++) c.datapath[i] += p->counters[i].load(std::memory_order_relaxed);
        c.rx_frames += p->rx_frames.load(std::memory_order_relaxed);
        c.rx_batches += p->rx_batches.load(std::memory_order_relaxed);
        c.rx_per_queue.push_back(p->rx_frames.load(std::memory_order_relaxed));
        c.forwarded += p->forwarded.load(std::memory_order_relaxed);
        c.tx_dropped += p->tx_drops.load(std::memory_order_relaxed);
        c.tx_full += p->tx_full.load(std::memory_order_relaxed);
        c.rotations += p->rotations.load(std::memory_order_relaxed);
    }
    for (std::uint32_t i = 0; i < BMC_NUM_STATS; i++) c.datapath[i] += relay_counters_[i].load(std::memory_order_relaxed);
    c.relayed = relayed_.load(std::memory_order_relaxed);
    c.late = late_.load(std::memory_order_relaxed);
    c.relay_dropped = relay_dropped_.load(std::memory_order_relaxed);
    return c;
}

}  // namespace bmc
