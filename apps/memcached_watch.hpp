// Watches memcached over a TCP connection of its own. The cache must never serve a value
// that a memcached process held before it restarted: when the connection drops, or
// memcached answers with another pid or start time, the whole cache is flushed. The
// connection is polled continuously, so a restart is seen when the old process closes
// it, before a new process can accept a request.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>

namespace bmc {

// memcached's connection limit (its -c), from "stats settings", or nothing if it does not
// answer within a second.
std::optional<std::uint32_t> memcached_maxconns(const std::string &host, std::uint16_t port);

class MemcachedWatch {
public:
    // on_event(message) is called, from the watcher thread, after each flush and on the
    // first connection; flush() empties the cache.
    MemcachedWatch(std::string host, std::uint16_t port, std::function<void()> flush,
                   std::function<void(const std::string &)> on_event);
    ~MemcachedWatch();

private:
    void run();

    std::string host_;
    std::uint16_t port_;
    std::function<void()> flush_;
    std::function<void(const std::string &)> on_event_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

}  // namespace bmc
