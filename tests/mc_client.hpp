// Minimal memcached clients for the end-to-end tests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "packet.hpp"

namespace bmc::test {

class McTcp {
public:
    explicit McTcp(int fd) : fd_(fd) {}
    ~McTcp();
    McTcp(const McTcp &) = delete;
    McTcp &operator=(const McTcp &) = delete;
    bool ok() const { return fd_ >= 0; }

    // Text or meta command(s); returns memcached's reply (a trailing "mn" marks its end).
    std::string call(const std::string &cmd);
    // Sends bytes as they are, pushed at once (TCP_NODELAY); reads the replies of what was
    // sent by call("") afterwards.
    bool send_raw(const std::string &bytes);
    std::uint64_t stat(const std::string &name);
    // Binary request(s) on a connection that speaks binary; returns every response
    // before the NOOP that marks their end.
    Bytes binary(const Bytes &req);

private:
    bool read_until(std::string &buf, const std::string &end);
    int fd_;
};

class McUdp {
public:
    McUdp(int fd, const char *server_ip, int port);  // IPv4 or IPv6 address
    ~McUdp();
    McUdp(const McUdp &) = delete;
    McUdp &operator=(const McUdp &) = delete;

    struct Reply {
        std::string text;  // payloads after the frame header, concatenated
        int datagrams = 0;
        bool complete = false;  // saw the end (END for gets, one datagram otherwise)
        int largest = 0;        // bytes of the largest datagram, frame header included
    };
    // Sends one datagram. For gets, reads datagrams carrying its request id until the
    // payload ends with END; otherwise reads one. Times out after timeout_ms.
    Reply request(const std::string &text, bool until_end, int timeout_ms = 1000);
    Reply request_bytes(const Bytes &payload, bool until_end, int timeout_ms = 1000);

private:
    int fd_;
    std::uint16_t next_id_ = 1;
};

}  // namespace bmc::test
