// bmcd's control socket: a Unix stream socket under /run/bmc/, one per bmcd instance,
// that speaks memcached's own text lines ("stats", "stats settings", ...) so that
// existing memcached tooling, and bmcctl, can read it. Each request line gets the
// handler's reply; the handler runs on the control thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>
#include <string>
#include <thread>

namespace bmc {

class ControlServer {
public:
    // Binds path (making its directory); throws std::runtime_error with a one-line reason.
    ControlServer(std::string path, std::function<std::string(const std::string &line)> handler);
    ~ControlServer();
    ControlServer(const ControlServer &) = delete;
    ControlServer &operator=(const ControlServer &) = delete;
    const std::string &path() const { return path_; }

    // A request line starting "trace" subscribes its client to a stream: after the
    // handler's reply it gets every text publish() sends, until it hangs up. on_change
    // learns how many subscribers remain after each change (any thread may publish).
    void set_on_subscribers(std::function<void(std::size_t)> on_change) { on_subscribers_ = std::move(on_change); }
    // Sends text to every subscriber; one that cannot take it now misses it (counted).
    void publish(const std::string &text);
    std::uint64_t dropped() const { return dropped_.load(); }

private:
    void run();
    std::mutex subs_mu_;
    std::vector<int> subs_;
    std::function<void(std::size_t)> on_subscribers_;
    std::atomic<std::uint64_t> dropped_{0};
    std::string path_;
    std::function<std::string(const std::string &)> handler_;
    int fd_ = -1, wake_ = -1;
    std::thread thread_;
};

// The control socket of instance `name`.
std::string control_path(const std::string &name);

}  // namespace bmc
