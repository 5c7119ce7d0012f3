// A blocking memcached client: what bmc's own programs and tests say to a memcached.
// Text, meta and binary requests over TCP, and single requests over UDP with
// memcached's 8-byte frame header (request id, sequence 0 of 1), both over a socket
// made by the caller (in whatever network namespace) or connected here.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace bmc {

// A TCP connection to `host` (IPv4 or IPv6 literal) made within timeout_ms, or -1 with
// errno set.
int mc_connect_tcp(const std::string &host, std::uint16_t port, int timeout_ms = 1000);
// A UDP socket connected to `host`, or -1 with errno set.
int mc_connect_udp(const std::string &host, std::uint16_t port);

class McConnection {
public:
    // Takes fd (a connected TCP socket); every read waits at most `timeout` for bytes.
    explicit McConnection(int fd, std::chrono::milliseconds timeout = std::chrono::seconds(3));
    ~McConnection();
    McConnection(const McConnection &) = delete;
    McConnection &operator=(const McConnection &) = delete;
    bool ok() const { return fd_ >= 0; }
    int fd() const { return fd_; }

    // Sends req and reads until the reply ends with `end`; nothing on a timeout or close.
    std::optional<std::string> call_until(std::string_view req, std::string_view end);
    // Text or meta command(s), then `mn`: every reply before memcached's MN.
    std::optional<std::string> text(std::string_view cmds);
    // Binary request(s), then a NOOP: every response before the NOOP's.
    std::optional<std::string> binary(std::string_view reqs);
    // The bytes as they are, pushed at once (one piece of a request cut in two).
    bool send_raw(std::string_view bytes);
    // `stats`, up to its END.
    std::optional<std::string> stats() { return call_until("stats\r\n", "END\r\n"); }

private:
    bool read_until(std::string &buf, const std::function<bool(const std::string &)> &done);
    int fd_;
    std::chrono::milliseconds timeout_;
};

// One stat's value in a `stats` reply ("STAT name value"), or nothing.
std::optional<std::uint64_t> mc_stat(const std::string &stats, std::string_view name);

// The byte count of the complete binary responses at the start of buf up to the first
// of opcode `op` (its offset), or nothing while that one has not fully arrived.
std::optional<std::size_t> mc_binary_until(const std::string &buf, std::uint8_t op);

class McDatagram {
public:
    struct Reply {
        std::string text;       // payloads after the frame header, in arrival order
        int datagrams = 0;
        bool complete = false;  // saw END (gets), or the one datagram (other requests)
        int largest = 0;        // the largest datagram, frame header included
    };
    // Takes fd (a connected UDP socket); ids start at first_id.
    explicit McDatagram(int fd, std::uint16_t first_id = 1);
    ~McDatagram();
    McDatagram(const McDatagram &) = delete;
    McDatagram &operator=(const McDatagram &) = delete;
    int fd() const { return fd_; }

    // One request under the next id; reads the datagrams with that id until END (or one,
    // without until_end) or the timeout. Datagrams of older ids are late replies: skipped.
    Reply request(std::string_view payload, bool until_end, std::chrono::milliseconds timeout);

private:
    int fd_;
    std::uint16_t next_id_;
};

}  // namespace bmc
