// The UDP sockets a poller forwards misses to memcached through, one per channel of its
// MissTable (a channel's ids belong to its socket, so a reply counts only on the socket
// its request left from). The poller opens a fresh one when a channel's ids run out; the
// relay thread reads them all (epoll) and closes those retired longer than the grace
// period. One dual-stack socket reaches memcached over IPv6 and, v4-mapped, over IPv4; a
// host without IPv6 gets an IPv4 one.
#pragma once

#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

namespace bmc {

class MissChannels {
public:
    // epoll_fd: the relay's; each socket is registered with data queue << 32 | channel.
    MissChannels(int epoll_fd, unsigned queue) : epoll_fd_(epoll_fd), queue_(queue) {}
    ~MissChannels();
    MissChannels(const MissChannels &) = delete;
    MissChannels &operator=(const MissChannels &) = delete;

    // Poller: a new socket for channel ch (a new source port), the one sends go from now.
    // Throws Error if no socket can be made.
    void open(std::uint32_t ch);
    // Poller: the current channel's socket, and whether it takes IPv6 destinations.
    int send_fd() const { return send_fd_; }
    bool dual_stack() const { return send_v6_; }
    // Relay: the socket of channel ch, or -1 once it is closed.
    int fd(std::uint32_t ch);
    // Relay: close the sockets of these (retired and expired) channels.
    void close_channels(const std::vector<std::uint32_t> &channels);

private:
    int epoll_fd_;
    unsigned queue_;
    std::mutex mu_;                                     // fds_: the poller opens, the relay reads and closes
    std::vector<std::pair<std::uint32_t, int>> fds_;    // channel -> socket
    int send_fd_ = -1;                                  // the poller's alone
    bool send_v6_ = false;
};

}  // namespace bmc
