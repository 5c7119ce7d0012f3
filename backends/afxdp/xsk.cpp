#include "xsk.hpp"

#include <sys/mman.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "kernel_backend.hpp"

namespace bmc {
namespace {

std::string err_text(int e) { return std::strerror(e < 0 ? -e : e); }

// Not in Debian 12's headers.
constexpr int kSoPreferBusyPoll = 69, kSoBusyPollBudget = 70;

}  // namespace

Umem::Umem(std::uint32_t frames, std::uint32_t frame_size) : frames_(frames), frame_size_(frame_size) {
    // The frames sit on transparent huge pages where the kernel allows them (THP
    // "madvise" or "always"): a poller touches a different 4 KiB frame with every
    // packet, and on 4 KiB pages each of those is a TLB miss, costly under a hypervisor.
    constexpr std::size_t kHuge = 2u << 20;
    len_ = std::size_t(frames) * frame_size;
    map_len_ = len_ + kHuge;
    map_ = mmap(nullptr, map_len_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map_ == MAP_FAILED) {
        map_ = nullptr;
        throw Error("cannot allocate UMEM: " + err_text(errno));
    }
    const auto at = (reinterpret_cast<std::uintptr_t>(map_) + kHuge - 1) & ~std::uintptr_t(kHuge - 1);
    area_ = reinterpret_cast<void *>(at);
    madvise(area_, len_, MADV_HUGEPAGE);  // advice only: 4 KiB pages work too
    xsk_umem_config cfg{XskQueue::kRingSize, XskQueue::kRingSize, frame_size, 0, 0};
    if (int err = xsk_umem__create(&umem_, area_, len_, &fill, &comp, &cfg)) {
        munmap(map_, map_len_);
        throw Error("AF_XDP UMEM: " + err_text(err));
    }
}

Umem::~Umem() {
    xsk_umem__delete(umem_);
    munmap(map_, map_len_);
}

XskSocket::XskSocket(const std::string &iface, unsigned queue, Umem &umem, ZeroCopy mode, bool busy_poll,
                     std::string &notice) {
    auto create = [&](std::uint16_t bind) {
        xsk_socket_config cfg{};
        cfg.rx_size = XskQueue::kRingSize;
        cfg.tx_size = XskQueue::kRingSize;
        cfg.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;  // bmc's own XDP program redirects
        cfg.bind_flags = std::uint16_t(bind | XDP_USE_NEED_WAKEUP);
        return xsk_socket__create(&xsk_, iface.c_str(), queue, umem.get(), &rx, &tx, &cfg);
    };
    int err = mode == ZeroCopy::Off ? -EOPNOTSUPP : create(XDP_ZEROCOPY);
    zero_copy_ = err == 0;
    if (err) {
        if (mode == ZeroCopy::On)
            throw Error("zero-copy AF_XDP on " + iface + " queue " + std::to_string(queue) + ": " + err_text(err));
        const int zc_err = err;
        xsk_ = nullptr;
        if ((err = create(XDP_COPY)))
            throw Error("AF_XDP socket on " + iface + " queue " + std::to_string(queue) + ": " + err_text(err) +
                        (err == -EPERM ? " (needs root or CAP_NET_RAW)" : ""));
        if (mode == ZeroCopy::Auto && queue == 0)
            notice += "zero-copy AF_XDP unavailable on " + iface + " (" + err_text(zc_err) + "); using copy mode. ";
    }
    if (busy_poll) {
        int one = 1, usecs = 20, budget = 64;
        if (setsockopt(fd(), SOL_SOCKET, kSoPreferBusyPoll, &one, sizeof one) ||
            setsockopt(fd(), SOL_SOCKET, SO_BUSY_POLL, &usecs, sizeof usecs) ||
            setsockopt(fd(), SOL_SOCKET, kSoBusyPollBudget, &budget, sizeof budget))
            notice += "busy-poll socket options refused (" + err_text(errno) + "); spinning anyway. ";
    }
}

XskSocket::~XskSocket() { xsk_socket__delete(xsk_); }

XskQueue::XskQueue(const std::string &iface, unsigned queue, std::uint32_t frames, ZeroCopy mode, bool busy_poll,
                   std::string &notice)
    : queue_(queue), umem_(frames, kFrameSize), socket_(iface, queue, umem_, mode, busy_poll, notice) {
    free_.reserve(frames);
    for (std::uint32_t f = 0; f < frames; f++) free_.push_back(std::uint64_t(f) * kFrameSize);
    // The fill ring is stocked before the socket can be registered for redirects: a frame
    // redirected to a socket whose fill ring is empty is dropped by the kernel, and the
    // poller thread that stocks it may start after XDP has begun redirecting.
    refill(kRingSize);
}

void XskQueue::reclaim() {
    for (;;) {
        std::uint32_t idx;
        const std::uint32_t n = xsk_ring_cons__peek(&umem_.comp, kRingSize, &idx);
        if (!n) return;
        for (std::uint32_t i = 0; i < n; i++) free_.push_back(*xsk_ring_cons__comp_addr(&umem_.comp, idx + i));
        xsk_ring_cons__release(&umem_.comp, n);
    }
}

void XskQueue::refill(std::uint32_t batch) {
    const std::uint32_t want = std::uint32_t(free_.size() > kReserve ? free_.size() - kReserve : 0);
    if (!want) return;
    std::uint32_t idx;
    const std::uint32_t n = xsk_ring_prod__reserve(&umem_.fill, std::min(want, batch), &idx);
    for (std::uint32_t i = 0; i < n; i++) {
        *xsk_ring_prod__fill_addr(&umem_.fill, idx + i) = free_.back();
        free_.pop_back();
    }
    if (n) xsk_ring_prod__submit(&umem_.fill, n);
}

std::uint32_t XskQueue::tx_room(std::uint32_t want) {
    std::uint32_t room = xsk_prod_nb_free(&socket_.tx, want);
    for (int tries = 0; room < want && tries < 64; tries++) {
        sendto(fd(), nullptr, 0, MSG_DONTWAIT, nullptr, 0);
        reclaim();
        room = xsk_prod_nb_free(&socket_.tx, want);
    }
    return room;
}

bool XskQueue::transmit(std::uint64_t addr, std::uint32_t len) {
    std::uint32_t idx;
    if (xsk_ring_prod__reserve(&socket_.tx, 1, &idx) != 1 &&
        (tx_room(1) < 1 || xsk_ring_prod__reserve(&socket_.tx, 1, &idx) != 1)) {
        tx_full_++;
        return false;
    }
    xdp_desc *d = xsk_ring_prod__tx_desc(&socket_.tx, idx);
    d->addr = addr;
    d->len = len;
    d->options = 0;
    xsk_ring_prod__submit(&socket_.tx, 1);
    return true;
}

bool XskQueue::send_copy(const std::uint8_t *frame, std::uint32_t len) {
    if (free_.empty() || len > kFrameSize) return false;
    const std::uint64_t addr = free_.back();
    free_.pop_back();
    std::memcpy(umem_.data(addr), frame, len);
    if (transmit(addr, len)) return true;
    free_.push_back(addr);
    return false;
}

void XskQueue::kick_tx() {
    // With XDP_USE_NEED_WAKEUP the kernel asks for a syscall before it processes the TX
    // ring (copy mode always needs one).
    if (xsk_ring_prod__needs_wakeup(&socket_.tx)) sendto(fd(), nullptr, 0, MSG_DONTWAIT, nullptr, 0);
}

}  // namespace bmc
