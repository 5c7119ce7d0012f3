#include "memcached_client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <functional>

namespace bmc {
namespace {

// A socket of `type` connected to host:port within timeout_ms, or -1 with errno set.
int connect_to(const std::string &host, std::uint16_t port, int type, int timeout_ms) {
    sockaddr_storage ss{};
    socklen_t len;
    if (host.find(':') != std::string::npos) {
        auto *a = reinterpret_cast<sockaddr_in6 *>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        if (inet_pton(AF_INET6, host.c_str(), &a->sin6_addr) != 1) return errno = EINVAL, -1;
        len = sizeof *a;
    } else {
        auto *a = reinterpret_cast<sockaddr_in *>(&ss);
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        if (inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1) return errno = EINVAL, -1;
        len = sizeof *a;
    }
    int fd = socket(ss.ss_family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    int err = connect(fd, reinterpret_cast<sockaddr *>(&ss), len) == 0 ? 0 : errno;
    if (err == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        socklen_t elen = sizeof err;
        err = poll(&p, 1, timeout_ms) != 1 ? ETIMEDOUT
              : getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 ? errno
                                                                      : err;
    }
    if (err) {
        close(fd);
        errno = err;
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}

bool ends_with(const std::string &s, std::string_view end) {
    return s.size() >= end.size() && s.compare(s.size() - end.size(), end.size(), end) == 0;
}

std::string binary_noop() {
    std::string b(24, '\0');
    b[0] = char(0x80);
    b[1] = char(0x0a);
    return b;
}

}  // namespace

int mc_connect_tcp(const std::string &host, std::uint16_t port, int timeout_ms) {
    return connect_to(host, port, SOCK_STREAM, timeout_ms);
}
int mc_connect_udp(const std::string &host, std::uint16_t port) { return connect_to(host, port, SOCK_DGRAM, 0); }

McConnection::McConnection(int fd, std::chrono::milliseconds timeout) : fd_(fd), timeout_(timeout) {
    int one = 1;
    if (fd_ >= 0) setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

McConnection::~McConnection() {
    if (fd_ >= 0) close(fd_);
}

bool McConnection::send_raw(std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n <= 0) return false;
        bytes.remove_prefix(std::size_t(n));
    }
    return true;
}

bool McConnection::read_until(std::string &buf, const std::function<bool(const std::string &)> &done) {
    char tmp[16384];
    while (!done(buf)) {
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, int(timeout_.count())) != 1) return false;
        const ssize_t n = recv(fd_, tmp, sizeof tmp, 0);
        if (n <= 0) return false;
        buf.append(tmp, std::size_t(n));
    }
    return true;
}

std::optional<std::string> McConnection::call_until(std::string_view req, std::string_view end) {
    std::string buf;
    if (!send_raw(req) || !read_until(buf, [&](const std::string &b) { return ends_with(b, end); })) return {};
    return buf;
}

std::optional<std::string> McConnection::text(std::string_view cmds) {
    auto r = call_until(std::string(cmds) + "mn\r\n", "MN\r\n");
    if (r) r->resize(r->size() - 4);
    return r;
}

std::optional<std::string> McConnection::binary(std::string_view reqs) {
    std::string buf;
    std::optional<std::size_t> upto;
    if (!send_raw(std::string(reqs) + binary_noop()) ||
        !read_until(buf, [&](const std::string &b) { return (upto = mc_binary_until(b, 0x0a)).has_value(); }))
        return {};
    buf.resize(*upto);
    return buf;
}

std::optional<std::size_t> mc_binary_until(const std::string &buf, std::uint8_t op) {
    // Responses: a 24-byte header, the body length at bytes 8..11.
    for (std::size_t off = 0; off + 24 <= buf.size();) {
        const auto byte = [&](std::size_t i) { return std::uint32_t(std::uint8_t(buf[off + i])); };
        const std::uint32_t body = byte(8) << 24 | byte(9) << 16 | byte(10) << 8 | byte(11);
        if (off + 24 + body > buf.size()) return {};
        if (std::uint8_t(buf[off + 1]) == op) return off;
        off += 24 + body;
    }
    return {};
}

std::optional<std::uint64_t> mc_stat(const std::string &stats, std::string_view name) {
    const std::string key = "STAT " + std::string(name) + " ";
    const auto p = stats.find(key);
    if (p == std::string::npos) return {};
    return std::strtoull(stats.c_str() + p + key.size(), nullptr, 10);
}

McDatagram::McDatagram(int fd, std::uint16_t first_id) : fd_(fd), next_id_(first_id) {}

McDatagram::~McDatagram() {
    if (fd_ >= 0) close(fd_);
}

McDatagram::Reply McDatagram::request(std::string_view payload, bool until_end, std::chrono::milliseconds timeout) {
    Reply r;
    const std::uint16_t id = next_id_++;
    std::string d = {char(id >> 8), char(id), 0, 0, 0, 1, 0, 0};
    d += payload;
    if (send(fd_, d.data(), d.size(), 0) < 0) return r;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[65536];
    while (!r.complete) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) break;
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, int(left.count()) + 1) != 1) continue;
        const ssize_t n = recv(fd_, buf, sizeof buf, 0);
        if (n < 8 || std::uint16_t(std::uint8_t(buf[0]) << 8 | std::uint8_t(buf[1])) != id) continue;
        r.text.append(buf + 8, std::size_t(n) - 8);
        r.datagrams++;
        r.largest = std::max(r.largest, int(n));
        r.complete = !until_end || ends_with(r.text, "END\r\n");
    }
    return r;
}

}  // namespace bmc
