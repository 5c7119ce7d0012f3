#include "afxdp_backend.hpp"

#include "miss_table.hpp"

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
#include <cstring>
#include <mutex>

namespace bmc {
namespace {

constexpr std::uint32_t kFrameSize = XSK_UMEM__DEFAULT_FRAME_SIZE;
constexpr std::uint32_t kRingSize = XSK_RING_CONS__DEFAULT_NUM_DESCS;
constexpr std::uint32_t kBatch = 64;
constexpr std::uint32_t kHdrLen = BMC_ETH_HLEN + 20 + 8;  // plain IPv4 + UDP: all that is redirected

// Not in Debian 12's headers.
constexpr int kSoPreferBusyPoll = 69, kSoBusyPollBudget = 70;

std::string err_text(int e) { return std::strerror(e < 0 ? -e : e); }

void put16(std::uint8_t *p, std::uint16_t v) {
    p[0] = std::uint8_t(v >> 8);
    p[1] = std::uint8_t(v);
}

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

struct AfxdpBackend::Poller {
    unsigned queue = 0;
    void *area = nullptr;
    std::size_t area_len = 0;
    xsk_umem *umem = nullptr;
    xsk_socket *xsk = nullptr;
    xsk_ring_prod fill{};
    xsk_ring_cons comp{};
    xsk_ring_cons rx{};
    xsk_ring_prod tx{};
    std::vector<std::uint64_t> free_frames;  // poller thread only
    int wake_fd = -1;                        // relay -> poller: frames queued
    moodycamel::ConcurrentQueue<std::vector<std::uint8_t>> to_send;
    std::unique_ptr<Datapath> dp;
    // Forwarded misses: their ids, channel by channel (a UDP socket to memcached each).
    std::unique_ptr<MissTable> misses;
    std::mutex channels_mu;                          // channel_fds: rotation and expiry
    std::vector<std::pair<std::uint32_t, int>> channel_fds;  // channel number -> socket
    int send_fd = -1;                                // the current channel's socket (poller)
    int epoll_fd = -1;                               // the relay's
    std::thread thread;
    // Published by the poller for readers on other threads.
    std::array<std::atomic<std::uint64_t>, BMC_NUM_STATS> counters{};
    std::atomic<std::uint64_t> rx_frames{0}, forwarded{0}, tx_dropped{0}, tx_full{0}, rotations{0};
    bool busy_poll = false;
    bool echo = false;

    ~Poller() {
        if (xsk) xsk_socket__delete(xsk);
        if (umem) xsk_umem__delete(umem);
        if (area) munmap(area, area_len);
        for (auto &[ch, fd] : channel_fds) close(fd);
        if (wake_fd >= 0) close(wake_fd);
    }

    // A fresh channel: a new UDP socket (a new source port), watched by the relay.
    void open_channel(std::uint64_t now) {
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) throw Error("socket to memcached: " + err_text(errno));
        const std::uint32_t ch = misses->rotate(now);
        {
            std::lock_guard<std::mutex> g(channels_mu);
            channel_fds.emplace_back(ch, fd);
        }
        epoll_event ev{EPOLLIN, {.u64 = std::uint64_t(queue) << 32 | ch}};
        epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev);
        send_fd = fd;
    }

    int channel_fd(std::uint32_t ch) {
        std::lock_guard<std::mutex> g(channels_mu);
        for (auto &[c, fd] : channel_fds)
            if (c == ch) return fd;
        return -1;
    }

    // Relay: close the channels retired longer than grace ago.
    void expire_channels(std::uint64_t now, std::uint64_t grace) {
        for (std::uint32_t ch : misses->expire(now, grace)) {
            std::lock_guard<std::mutex> g(channels_mu);
            for (auto it = channel_fds.begin(); it != channel_fds.end(); ++it)
                if (it->first == ch) {
                    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, it->second, nullptr);
                    close(it->second);
                    channel_fds.erase(it);
                    break;
                }
        }
    }

    void kick_tx() {
        // With XDP_USE_NEED_WAKEUP the kernel asks for a syscall before it processes
        // the TX ring (copy mode always needs one).
        if (xsk_ring_prod__needs_wakeup(&tx)) sendto(xsk_socket__fd(xsk), nullptr, 0, MSG_DONTWAIT, nullptr, 0);
    }

    // Every completion the kernel has posted.
    void reclaim() {
        for (;;) {
            std::uint32_t idx;
            std::uint32_t n = xsk_ring_cons__peek(&comp, kRingSize, &idx);
            if (!n) return;
            for (std::uint32_t i = 0; i < n; i++) free_frames.push_back(*xsk_ring_cons__comp_addr(&comp, idx + i));
            xsk_ring_cons__release(&comp, n);
        }
    }

    // Room for `want` TX descriptors: kick the kernel and take back completions until it
    // has consumed enough of the ring (bounded: a stuck device leaves the rest counted as
    // tx_full rather than hanging the poller).
    std::uint32_t tx_room(std::uint32_t want) {
        std::uint32_t room = xsk_prod_nb_free(&tx, want);
        for (int tries = 0; room < want && tries < 64; tries++) {
            sendto(xsk_socket__fd(xsk), nullptr, 0, MSG_DONTWAIT, nullptr, 0);
            reclaim();
            room = xsk_prod_nb_free(&tx, want);
        }
        return room;
    }

    // Keep the fill ring stocked, but hold back frames for relayed replies.
    void refill() {
        std::uint32_t want = std::uint32_t(free_frames.size() > 256 ? free_frames.size() - 256 : 0);
        if (!want) return;
        std::uint32_t idx;
        std::uint32_t n = xsk_ring_prod__reserve(&fill, std::min(want, kBatch), &idx);
        for (std::uint32_t i = 0; i < n; i++) {
            *xsk_ring_prod__fill_addr(&fill, idx + i) = free_frames.back();
            free_frames.pop_back();
        }
        if (n) xsk_ring_prod__submit(&fill, n);
    }

    bool transmit(std::uint64_t addr, std::uint32_t len) {
        std::uint32_t idx;
        if (xsk_ring_prod__reserve(&tx, 1, &idx) != 1 &&
            (tx_room(1) < 1 || xsk_ring_prod__reserve(&tx, 1, &idx) != 1)) {
            tx_full.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
        xdp_desc *d = xsk_ring_prod__tx_desc(&tx, idx);
        d->addr = addr;
        d->len = len;
        d->options = 0;
        xsk_ring_prod__submit(&tx, 1);
        return true;
    }

    void send_copy(const std::vector<std::uint8_t> &frame) {
        if (free_frames.empty() || frame.size() > kFrameSize) {
            tx_dropped.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        std::uint64_t addr = free_frames.back();
        free_frames.pop_back();
        std::memcpy(xsk_umem__get_data(area, addr), frame.data(), frame.size());
        if (!transmit(addr, std::uint32_t(frame.size()))) {
            free_frames.push_back(addr);
            tx_dropped.fetch_add(1, std::memory_order_relaxed);
        }
    }

    // A get the cache did not answer: send its datagram to memcached under an id of
    // ours, and remember how to answer the client.
    void forward(const std::uint8_t *frame, std::uint32_t len, std::uint64_t now) {
        if (len < kHdrLen + BMC_FRAME_HDR_LEN) return;
        MissTable::Request r;
        std::uint8_t *h = r.hdr.data();
        std::memcpy(h, frame + 6, 6);  // reply: swap MACs, addresses and ports
        std::memcpy(h + 6, frame, 6);
        std::memcpy(h + 12, frame + 12, 2 + 12);
        std::memcpy(h + 26, frame + 30, 4);
        std::memcpy(h + 30, frame + 26, 4);
        std::memcpy(h + 34, frame + 36, 2);
        std::memcpy(h + 36, frame + 34, 2);
        std::memcpy(h + 38, frame + 38, 4);
        r.hdr_len = kHdrLen;
        r.client_id = std::uint16_t(frame[kHdrLen] << 8 | frame[kHdrLen + 1]);
        auto t = misses->issue(r, now);
        if (!t) {  // every id of the channel pending or quarantined: a fresh channel
            open_channel(now);
            rotations.fetch_add(1, std::memory_order_relaxed);
            t = misses->issue(r, now);
            if (!t) return;
        }

        std::uint8_t buf[BMC_MAX_PAYLOAD];
        std::uint32_t plen = std::min<std::uint32_t>(len - kHdrLen, sizeof buf);
        std::memcpy(buf, frame + kHdrLen, plen);
        put16(buf, t->id);
        sockaddr_in to{};
        to.sin_family = AF_INET;
        std::memcpy(&to.sin_addr, frame + 30, 4);
        std::memcpy(&to.sin_port, frame + 36, 2);
        if (sendto(send_fd, buf, plen, MSG_DONTWAIT, reinterpret_cast<sockaddr *>(&to), sizeof to) == ssize_t(plen))
            forwarded.fetch_add(1, std::memory_order_relaxed);
    }

    // The echo floor: swap MACs, IPv4 addresses and UDP ports in place.
    static void bounce(std::uint8_t *f, std::uint32_t len) {
        if (len < kHdrLen) return;
        std::uint8_t t[6];
        std::memcpy(t, f, 6);
        std::memcpy(f, f + 6, 6);
        std::memcpy(f + 6, t, 6);
        std::memcpy(t, f + 26, 4);
        std::memcpy(f + 26, f + 30, 4);
        std::memcpy(f + 30, t, 4);
        std::memcpy(t, f + 34, 2);
        std::memcpy(f + 34, f + 36, 2);
        std::memcpy(f + 36, t, 2);
        f[40] = f[41] = 0;
    }

    void publish() {
        const Counters &c = dp->counters();
        for (std::uint32_t i = 0; i < BMC_NUM_STATS; i++) counters[i].store(c[i], std::memory_order_relaxed);
    }

    void run(const std::atomic<bool> &stop) {
        std::vector<std::uint8_t> out;
        while (!stop.load(std::memory_order_relaxed)) {
            bool sent = false;
            while (to_send.try_dequeue(out)) {
                send_copy(out);
                sent = true;
            }
            reclaim();
            refill();
            // No more requests than TX can take replies for.
            std::uint32_t idx, room = tx_room(kBatch);
            std::uint32_t n = room ? xsk_ring_cons__peek(&rx, room, &idx) : 0;
            if (n == 0) {
                if (sent) kick_tx();
                if (busy_poll) {
                    // Drives the NAPI context of this queue from this thread.
                    recvfrom(xsk_socket__fd(xsk), nullptr, 0, MSG_DONTWAIT, nullptr, nullptr);
                    continue;
                }
                pollfd p[2] = {{xsk_socket__fd(xsk), POLLIN, 0}, {wake_fd, POLLIN, 0}};
                if (poll(p, 2, 50) > 0 && (p[1].revents & POLLIN)) {
                    std::uint64_t v;
                    [[maybe_unused]] auto r = read(wake_fd, &v, sizeof v);
                }
                continue;
            }
            const std::uint64_t now = bmc::monotonic_ns();
            for (std::uint32_t i = 0; i < n; i++) {
                const xdp_desc *d = xsk_ring_cons__rx_desc(&rx, idx + i);
                std::uint64_t addr = d->addr;
                std::uint8_t *frame = static_cast<std::uint8_t *>(xsk_umem__get_data(area, addr));
                std::uint32_t len = d->len;
                std::uint32_t room = kFrameSize - std::uint32_t(addr & (kFrameSize - 1));
                if (echo) {
                    bounce(frame, len);
                    if (!transmit(addr, len)) free_frames.push_back(xsk_umem__extract_addr(addr));
                } else if (dp->ingress(frame, len, room, now).action == Action::Tx) {
                    if (!transmit(addr, len)) {
                        free_frames.push_back(xsk_umem__extract_addr(addr));
                        tx_dropped.fetch_add(1, std::memory_order_relaxed);
                    }
                } else {
                    forward(frame, d->len, now);
                    free_frames.push_back(xsk_umem__extract_addr(addr));
                }
            }
            // Releasing the RX slots lets the kernel reuse them; the frames themselves
            // are ours until they go back through the fill ring.
            xsk_ring_cons__release(&rx, n);
            rx_frames.fetch_add(n, std::memory_order_relaxed);
            kick_tx();
            publish();
        }
        publish();
    }
};

AfxdpBackend::AfxdpBackend(KernelBackend &kernel, const AfxdpOptions &opts) : kernel_(kernel), opts_(opts) {
    if (interface_is_loopback(kernel.iface())) throw Error(kAfxdpLoopbackRefusal);
    const unsigned n = rx_queue_count(kernel.iface());
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    relay_wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (epoll_fd_ < 0 || relay_wake_fd_ < 0) throw Error("epoll/eventfd: " + err_text(errno));
    epoll_event wev{EPOLLIN, {.u64 = ~0ULL}};
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, relay_wake_fd_, &wev);

    try {
        for (unsigned q = 0; q < n; q++) {
            auto p = std::make_unique<Poller>();
            p->queue = q;
            p->busy_poll = opts.busy_poll;
            p->echo = opts.echo;
            p->dp = std::make_unique<Datapath>(kernel.cache(), kernel.config(), kernel.allowlist(), kernel.delivery());
            p->area_len = std::size_t(opts.frames_per_queue) * kFrameSize;
            p->area = mmap(nullptr, p->area_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p->area == MAP_FAILED) {
                p->area = nullptr;
                throw Error("cannot allocate UMEM: " + err_text(errno));
            }
            xsk_umem_config ucfg{kRingSize, kRingSize, kFrameSize, 0, 0};
            if (int err = xsk_umem__create(&p->umem, p->area, p->area_len, &p->fill, &p->comp, &ucfg))
                throw Error("AF_XDP UMEM on " + kernel.iface() + ": " + err_text(err));

            auto create = [&](std::uint16_t mode) {
                xsk_socket_config cfg{};
                cfg.rx_size = kRingSize;
                cfg.tx_size = kRingSize;
                cfg.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;  // bmc's own XDP program redirects
                cfg.bind_flags = std::uint16_t(mode | XDP_USE_NEED_WAKEUP);
                return xsk_socket__create(&p->xsk, kernel.iface().c_str(), q, p->umem, &p->rx, &p->tx, &cfg);
            };
            int err = opts.zero_copy == ZeroCopy::Off ? -EOPNOTSUPP : create(XDP_ZEROCOPY);
            if (err == 0) {
                bind_mode_ = "zero-copy";
            } else {
                if (opts.zero_copy == ZeroCopy::On)
                    throw Error("zero-copy AF_XDP on " + kernel.iface() + " queue " + std::to_string(q) +
                                ": " + err_text(err));
                int zc_err = err;
                p->xsk = nullptr;
                err = create(XDP_COPY);
                if (err)
                    throw Error("AF_XDP socket on " + kernel.iface() + " queue " + std::to_string(q) + ": " +
                                err_text(err) + (err == -EPERM ? " (needs root or CAP_NET_RAW)" : ""));
                bind_mode_ = "copy";
                if (opts.zero_copy == ZeroCopy::Auto && q == 0)
                    notice_ += "zero-copy AF_XDP unavailable on " + kernel.iface() + " (" + err_text(zc_err) +
                               "); using copy mode. ";
            }
            if (opts.busy_poll) {
                int fd = xsk_socket__fd(p->xsk), one = 1, usecs = 20, budget = int(kBatch);
                if (setsockopt(fd, SOL_SOCKET, kSoPreferBusyPoll, &one, sizeof one) ||
                    setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL, &usecs, sizeof usecs) ||
                    setsockopt(fd, SOL_SOCKET, kSoBusyPollBudget, &budget, sizeof budget))
                    notice_ += "busy-poll socket options refused (" + err_text(errno) + "); spinning anyway. ";
            }
            for (std::uint32_t f = 0; f < opts.frames_per_queue; f++) p->free_frames.push_back(std::uint64_t(f) * kFrameSize);
            p->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            if (p->wake_fd < 0) throw Error("eventfd: " + err_text(errno));
            p->epoll_fd = epoll_fd_;
            p->misses = std::make_unique<MissTable>(std::uint64_t(opts.relay_timeout.count()) * 1000000ULL);
            p->open_channel(bmc::monotonic_ns());
            if (int e = xsk_socket__update_xskmap(p->xsk, kernel.xsks_map_fd()))
                throw Error("registering the AF_XDP socket of queue " + std::to_string(q) + ": " + err_text(e));
            pollers_.push_back(std::move(p));
        }
        for (auto &p : pollers_) p->thread = std::thread([this, raw = p.get()] { raw->run(stop_); });
        relay_ = std::thread([this] { relay_loop(); });
    } catch (...) {
        stop_ = true;
        for (auto &p : pollers_) {
            if (p->thread.joinable()) p->thread.join();
            bpf_map_delete_elem(kernel.xsks_map_fd(), &p->queue);
        }
        pollers_.clear();
        close(epoll_fd_);
        close(relay_wake_fd_);
        throw;
    }
}

AfxdpBackend::~AfxdpBackend() {
    stop_ = true;
    std::uint64_t one = 1;
    [[maybe_unused]] auto r = write(relay_wake_fd_, &one, sizeof one);
    if (relay_.joinable()) relay_.join();
    for (auto &p : pollers_) {
        if (p->thread.joinable()) p->thread.join();
        bpf_map_delete_elem(kernel_.xsks_map_fd(), &p->queue);
    }
    pollers_.clear();
    close(epoll_fd_);
    close(relay_wake_fd_);
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
    std::uint8_t buf[65536];
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
            const int fd = p.channel_fd(channel);
            if (fd < 0) continue;
            for (;;) {
                ssize_t len = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
                if (len < 0) break;
                if (len < ssize_t(BMC_FRAME_HDR_LEN) || len > ssize_t(BMC_MTU - 28)) {
                    late_.fetch_add(1, std::memory_order_relaxed);
                    continue;
                }
                const std::uint16_t id = std::uint16_t(buf[0] << 8 | buf[1]);
                const std::uint64_t now = bmc::monotonic_ns();
                MissTable::Request req;
                const auto verdict = p.misses->reply(channel, id, ends_reply(buf, std::size_t(len)), now, &req);
                if (verdict == MissTable::Reply::Late || verdict == MissTable::Reply::Unknown) {
                    late_.fetch_add(1, std::memory_order_relaxed);
                    continue;
                }
                frame.assign(req.hdr.begin(), req.hdr.begin() + req.hdr_len);
                frame.insert(frame.end(), buf, buf + len);
                std::uint8_t *f = frame.data();
                put16(f + kHdrLen, req.client_id);
                put16(f + BMC_ETH_HLEN + 2, std::uint16_t(20 + 8 + len));
                f[BMC_ETH_HLEN + 8] = 64;
                f[BMC_ETH_HLEN + 10] = f[BMC_ETH_HLEN + 11] = 0;
                std::uint16_t csum = ipv4_header_checksum(f + BMC_ETH_HLEN, 20);
                std::memcpy(f + BMC_ETH_HLEN + 10, &csum, 2);
                put16(f + BMC_ETH_HLEN + 24, std::uint16_t(8 + len));
                f[BMC_ETH_HLEN + 26] = f[BMC_ETH_HLEN + 27] = 0;
                dp.egress(frame, now);  // the fill, exactly as TC egress would make it
                p.to_send.enqueue(std::move(frame));
                frame = {};
                std::uint64_t one = 1;
                [[maybe_unused]] auto r = write(p.wake_fd, &one, sizeof one);
                relayed_.fetch_add(1, std::memory_order_relaxed);
            }
        }
        for (auto &p : pollers_) p->expire_channels(bmc::monotonic_ns(), grace);
        const Counters &c = dp.counters();
        for (std::uint32_t i = 0; i < BMC_NUM_STATS; i++) relay_counters_[i].store(c[i], std::memory_order_relaxed);
    }
}

void add_counters(AfxdpCounters &into, const AfxdpCounters &c) {
    for (std::uint32_t i = 0; i < BMC_NUM_STATS; i++) into.datapath[i] += c.datapath[i];
    into.rx_frames += c.rx_frames;
    into.rx_per_queue.insert(into.rx_per_queue.end(), c.rx_per_queue.begin(), c.rx_per_queue.end());
    into.forwarded += c.forwarded;
    into.relayed += c.relayed;
    into.late += c.late;
    into.tx_dropped += c.tx_dropped;
    into.tx_full += c.tx_full;
    into.rotations += c.rotations;
}

AfxdpCounters AfxdpBackend::counters() const {
    AfxdpCounters c;
    for (auto &p : pollers_) {
        for (std::uint32_t i = 0; i < BMC_NUM_STATS; i++) c.datapath[i] += p->counters[i].load(std::memory_order_relaxed);
        c.rx_frames += p->rx_frames.load(std::memory_order_relaxed);
        c.rx_per_queue.push_back(p->rx_frames.load(std::memory_order_relaxed));
        c.forwarded += p->forwarded.load(std::memory_order_relaxed);
        c.tx_dropped += p->tx_dropped.load(std::memory_order_relaxed);
        c.tx_full += p->tx_full.load(std::memory_order_relaxed);
        c.rotations += p->rotations.load(std::memory_order_relaxed);
    }
    for (std::uint32_t i = 0; i < BMC_NUM_STATS; i++) c.datapath[i] += relay_counters_[i].load(std::memory_order_relaxed);
    c.relayed = relayed_.load(std::memory_order_relaxed);
    c.late = late_.load(std::memory_order_relaxed);
    return c;
}

}  // namespace bmc
