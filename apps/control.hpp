// bmcd's control socket: a Unix stream socket under /run/bmc/, one per bmcd instance,
// that speaks memcached's own text lines ("stats", "stats settings", ...) so that
// existing memcached tooling, and bmcctl, can read it. Each request line gets the
// handler's reply; the handler runs on the control thread.
#pragma once

#include <atomic>
#include <functional>
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

private:
    void run();
    std::string path_;
    std::function<std::string(const std::string &)> handler_;
    int fd_ = -1, wake_ = -1;
    std::thread thread_;
};

// The control socket of instance `name`.
std::string control_path(const std::string &name);

}  // namespace bmc
