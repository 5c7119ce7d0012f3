#include "miss_channels.hpp"

#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "kernel_backend.hpp"

namespace bmc {
namespace {

constexpr int kRelayRcvbuf = 8 << 20;  // bytes; the kernel doubles it for its bookkeeping

}  // namespace

MissChannels::~MissChannels() {
    for (auto &[ch, fd] : fds_) close(fd);
}

void MissChannels::open(std::uint32_t ch) {
    int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), off = 0;
    const bool v6 = fd >= 0 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) == 0;
    if (!v6) {
        if (fd >= 0) close(fd);
        fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    }
    if (fd < 0) throw Error(std::string("socket to memcached: ") + std::strerror(errno));
    // memcached answers a get of n keys with n + 1 datagrams (one per item, then END),
    // as fast as it can write them; the relay reads them on another CPU. A default
    // receive buffer (about 300 small datagrams) overflows within a burst of wide
    // misses, and each loss leaves a client a reply with an item missing. The drops
    // that still happen are counted (SO_RXQ_OVFL), never silent.
    const int rcvbuf = kRelayRcvbuf, on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &on, sizeof on);
    {
        std::lock_guard<std::mutex> g(mu_);
        fds_.emplace_back(ch, fd);
    }
    epoll_event ev{EPOLLIN, {.u64 = std::uint64_t(queue_) << 32 | ch}};
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
    send_fd_ = fd;
    send_v6_ = v6;
}

int MissChannels::fd(std::uint32_t ch) {
    std::lock_guard<std::mutex> g(mu_);
    for (auto &[c, fd] : fds_)
        if (c == ch) return fd;
    return -1;
}

void MissChannels::close_channels(const std::vector<std::uint32_t> &channels) {
    std::lock_guard<std::mutex> g(mu_);
    for (std::uint32_t ch : channels)
        for (auto it = fds_.begin(); it != fds_.end(); ++it)
            if (it->first == ch) {
                epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, it->second, nullptr);
                close(it->second);
                fds_.erase(it);
                break;
            }
}

}  // namespace bmc
