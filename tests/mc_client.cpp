#include <algorithm>
#include "mc_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

namespace bmc::test {
namespace {

bool wait_readable(int fd, int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    return poll(&p, 1, timeout_ms) == 1;
}

bool send_all(int fd, const void *data, std::size_t len) {
    const char *p = static_cast<const char *>(data);
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0) return false;
        p += n;
        len -= std::size_t(n);
    }
    return true;
}

}  // namespace

McTcp::~McTcp() {
    if (fd_ >= 0) close(fd_);
}

bool McTcp::read_until(std::string &buf, const std::string &end) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    char tmp[4096];
    while (buf.size() < end.size() || buf.compare(buf.size() - end.size(), end.size(), end) != 0) {
        if (std::chrono::steady_clock::now() > deadline || !wait_readable(fd_, 3000)) return false;
        ssize_t n = recv(fd_, tmp, sizeof tmp, 0);
        if (n <= 0) return false;
        buf.append(tmp, std::size_t(n));
    }
    return true;
}

std::string McTcp::call(const std::string &cmd) {
    std::string all = cmd + "mn\r\n", buf;
    if (!send_all(fd_, all.data(), all.size()) || !read_until(buf, "MN\r\n")) return "<io error>";
    return buf.substr(0, buf.size() - 4);
}

bool McTcp::send_raw(const std::string &bytes) {
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return send_all(fd_, bytes.data(), bytes.size());
}

std::uint64_t McTcp::stat(const std::string &name) {
    std::string s = call("stats\r\n"), key = "STAT " + name + " ";
    auto pos = s.find(key);
    return pos == std::string::npos ? ~0ULL : std::stoull(s.substr(pos + key.size()));
}

Bytes McTcp::binary(const Bytes &req) {
    Bytes all = req, noop = bin_request(0x0a, "");
    all.insert(all.end(), noop.begin(), noop.end());
    Bytes out;
    if (!send_all(fd_, all.data(), all.size())) return out;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    for (;;) {
        // responses: 24-byte header, body length at 8..11; stop after the NOOP's
        std::size_t off = 0;
        bool done = false;
        while (off + 24 <= out.size()) {
            std::uint32_t body = std::uint32_t(out[off + 8]) << 24 | std::uint32_t(out[off + 9]) << 16 |
                                 std::uint32_t(out[off + 10]) << 8 | out[off + 11];
            if (off + 24 + body > out.size()) break;
            if (out[off + 1] == 0x0a) {
                out.resize(off);
                done = true;
                break;
            }
            off += 24 + body;
        }
        if (done) return out;
        if (std::chrono::steady_clock::now() > deadline || !wait_readable(fd_, 3000)) return {};
        std::uint8_t tmp[4096];
        ssize_t n = recv(fd_, tmp, sizeof tmp, 0);
        if (n <= 0) return {};
        out.insert(out.end(), tmp, tmp + n);
    }
}

McUdp::McUdp(int fd, const char *server_ip, int port) : fd_(fd) {
    if (std::string(server_ip).find(':') != std::string::npos) {
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(std::uint16_t(port));
        inet_pton(AF_INET6, server_ip, &a.sin6_addr);
        connect(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a);
        return;
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(std::uint16_t(port));
    inet_pton(AF_INET, server_ip, &a.sin_addr);
    connect(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a);
}

McUdp::~McUdp() {
    if (fd_ >= 0) close(fd_);
}

McUdp::Reply McUdp::request(const std::string &text, bool until_end, int timeout_ms) {
    return request_bytes(bytes(text), until_end, timeout_ms);
}

McUdp::Reply McUdp::request_bytes(const Bytes &payload, bool until_end, int timeout_ms) {
    Reply r;
    std::uint16_t id = next_id_++;
    Bytes dgram = mc_udp("", id);
    dgram.insert(dgram.end(), payload.begin(), payload.end());
    if (send(fd_, dgram.data(), dgram.size(), 0) < 0) return r;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    std::uint8_t buf[65536];
    while (!r.complete) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0 || !wait_readable(fd_, int(left.count()))) break;
        ssize_t n = recv(fd_, buf, sizeof buf, 0);
        if (n < 8 || (std::uint16_t(buf[0] << 8 | buf[1]) != id)) continue;  // late reply to an older id
        r.text.append(reinterpret_cast<char *>(buf) + 8, std::size_t(n) - 8);
        r.datagrams++;
        r.largest = std::max(r.largest, int(n));
        r.complete = !until_end || (r.text.size() >= 5 && r.text.compare(r.text.size() - 5, 5, "END\r\n") == 0);
    }
    return r;
}

}  // namespace bmc::test
