// The end-to-end tests' view of bmc's memcached client (core/memcached_client.hpp): failures
// become values a test can compare ("<io error>", an empty reply) instead of nothing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "memcached_client.hpp"
#include "packet.hpp"

namespace bmc::test {

class McTcp {
public:
    explicit McTcp(int fd) : c_(fd) {}
    bool ok() const { return c_.ok(); }

    // Text or meta command(s); memcached's reply, or "<io error>".
    std::string call(const std::string &cmd) { return c_.text(cmd).value_or("<io error>"); }
    // Sends bytes as they are, pushed at once; call("") afterwards reads their replies.
    bool send_raw(const std::string &bytes) { return c_.send_raw(bytes); }
    // One of memcached's stats, or ~0 if it has none.
    std::uint64_t stat(const std::string &name) {
        return mc_stat(c_.stats().value_or(""), name).value_or(~0ULL);
    }
    // Binary request(s) on a connection that speaks binary; every response before the
    // NOOP that marks their end (nothing on an error).
    Bytes binary(const Bytes &req) {
        auto r = c_.binary(std::string(req.begin(), req.end()));
        return r ? Bytes(r->begin(), r->end()) : Bytes{};
    }

private:
    McConnection c_;
};

class McUdp {
public:
    // fd: a UDP socket; connected here to server_ip (IPv4 or IPv6) and port.
    McUdp(int fd, const char *server_ip, int port);

    using Reply = McDatagram::Reply;
    // Sends one datagram. For gets, reads datagrams carrying its request id until the
    // payload ends with END; otherwise reads one. Times out after timeout_ms.
    Reply request(const std::string &text, bool until_end, int timeout_ms = 1000) {
        return d_.request(text, until_end, std::chrono::milliseconds(timeout_ms));
    }
    Reply request_bytes(const Bytes &payload, bool until_end, int timeout_ms = 1000) {
        return request(std::string(payload.begin(), payload.end()), until_end, timeout_ms);
    }

private:
    McDatagram d_;
};

}  // namespace bmc::test
