// AF_XDP building blocks, one job each: the UMEM (frame memory and its fill and
// completion rings), the socket bound to one RX queue (its RX and TX rings), and the
// queue discipline a poller runs over both (free frames, fill-ring stocking, and TX that
// never drops a reply it can send). The backend's pollers and the benchmark's AF_XDP echo
// are both built from these.
#pragma once

#include <xdp/xsk.h>

#include <cstdint>
#include <string>
#include <vector>

namespace bmc {

enum class ZeroCopy { Auto, On, Off };

class Umem {
public:
    // frames of frame_size bytes; throws bmc::Error.
    Umem(std::uint32_t frames, std::uint32_t frame_size);
    ~Umem();
    Umem(const Umem &) = delete;
    Umem &operator=(const Umem &) = delete;

    xsk_umem *get() const { return umem_; }
    std::uint8_t *data(std::uint64_t addr) const {
        return static_cast<std::uint8_t *>(xsk_umem__get_data(area_, addr));
    }
    std::uint32_t frames() const { return frames_; }
    std::uint32_t frame_size() const { return frame_size_; }
    xsk_ring_prod fill{};
    xsk_ring_cons comp{};

private:
    void *map_ = nullptr;   // the mapping, of map_len_ bytes
    std::size_t map_len_ = 0;
    void *area_ = nullptr;  // the frames, from the first 2 MiB boundary in it
    std::size_t len_ = 0;
    std::uint32_t frames_, frame_size_;
    xsk_umem *umem_ = nullptr;
};

class XskSocket {
public:
    // Binds to queue of iface, zero-copy if mode allows and the driver can, else copy
    // mode; busy_poll sets the socket's busy-polling options. Throws bmc::Error. notice
    // collects what the operator should know (a fallback taken).
    XskSocket(const std::string &iface, unsigned queue, Umem &umem, ZeroCopy mode, bool busy_poll,
              std::string &notice);
    ~XskSocket();
    XskSocket(const XskSocket &) = delete;
    XskSocket &operator=(const XskSocket &) = delete;

    int fd() const { return xsk_socket__fd(xsk_); }
    xsk_socket *get() const { return xsk_; }
    bool zero_copy() const { return zero_copy_; }
    xsk_ring_cons rx{};
    xsk_ring_prod tx{};

private:
    xsk_socket *xsk_ = nullptr;
    bool zero_copy_ = false;
};

// One queue's UMEM and socket, and the discipline over their rings. Single-threaded: the
// poller that owns it calls everything.
class XskQueue {
public:
    static constexpr std::uint32_t kFrameSize = XSK_UMEM__DEFAULT_FRAME_SIZE;
    static constexpr std::uint32_t kRingSize = XSK_RING_CONS__DEFAULT_NUM_DESCS;
    // Frames kept back from the fill ring for replies the poller sends on its own.
    static constexpr std::uint32_t kReserve = 256;

    XskQueue(const std::string &iface, unsigned queue, std::uint32_t frames, ZeroCopy mode, bool busy_poll,
             std::string &notice);

    unsigned queue() const { return queue_; }
    int fd() const { return socket_.fd(); }
    bool zero_copy() const { return socket_.zero_copy(); }
    xsk_socket *socket() const { return socket_.get(); }
    std::uint8_t *data(std::uint64_t addr) const { return umem_.data(addr); }
    xsk_ring_cons *rx() { return &socket_.rx; }

    // Every completion the kernel has posted back to the free frames.
    void reclaim();
    // Keeps the fill ring stocked, holding kReserve frames back.
    void refill(std::uint32_t batch);
    // Room for want TX descriptors: kicks the kernel and reclaims until it has consumed
    // enough of the ring (bounded: a stuck device leaves the rest to the caller).
    std::uint32_t tx_room(std::uint32_t want);
    // Queues a frame for TX; false (and counted in tx_full) when the ring stays full.
    bool transmit(std::uint64_t addr, std::uint32_t len);
    // Copies a frame into a free frame and queues it; false if there is none or no room.
    bool send_copy(const std::uint8_t *frame, std::uint32_t len);
    // Asks the kernel to process the TX ring if it wants to be asked (copy mode always).
    void kick_tx();
    void release_frame(std::uint64_t addr) { free_.push_back(xsk_umem__extract_addr(addr)); }
    std::uint64_t tx_full() const { return tx_full_; }

private:
    unsigned queue_;
    Umem umem_;
    XskSocket socket_;
    std::vector<std::uint64_t> free_;
    std::uint64_t tx_full_ = 0;
};

}  // namespace bmc
