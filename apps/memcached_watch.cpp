#include "memcached_watch.hpp"

#include "memcached_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace bmc {
namespace {

// "pid:start" from a stats reply, where start = time - uptime; empty if incomplete.
std::string identity(const std::string &stats) {
    const auto pid = mc_stat(stats, "pid"), time = mc_stat(stats, "time"), uptime = mc_stat(stats, "uptime");
    if (!pid || !time || !uptime) return {};
    return std::to_string(*pid) + ":" + std::to_string(*time - *uptime);
}

}  // namespace

MemcachedWatch::MemcachedWatch(std::string host, std::uint16_t port, std::function<void()> flush,
                               std::function<void(const std::string &)> on_event)
    : host_(std::move(host)), port_(port), flush_(std::move(flush)), on_event_(std::move(on_event)) {
    thread_ = std::thread([this] { run(); });
}

MemcachedWatch::~MemcachedWatch() {
    stop_ = true;
    thread_.join();
}

void MemcachedWatch::run() {
    const std::string where = host_ + ":" + std::to_string(port_);
    std::string known, stats;
    bool reported_down = false;
    while (!stop_) {
        // A `stats` must come back within a second, or memcached counts as not there.
        McConnection c(mc_connect_tcp(host_, port_), std::chrono::seconds(1));
        const int fd = c.fd();
        auto ask = [&] { return (stats = c.stats().value_or("")), !stats.empty(); };
        if (fd < 0 || !ask() || identity(stats).empty()) {
            if (!reported_down) {
                on_event_("memcached not reachable at " + where + " (" + std::strerror(errno) +
                          "); the cache fills only from its replies, and is flushed when it returns");
                reported_down = true;
            }
            for (int i = 0; i < 10 && !stop_; i++) usleep(5000);
            continue;
        }
        const std::string id = identity(stats);
        if (!known.empty() && id != known) {
            flush_();
            on_event_("memcached at " + where + " restarted (pid:start " + known + " -> " + id + "); cache flushed");
        } else if (known.empty()) {
            on_event_("watching memcached at " + where + " (pid:start " + id + ")");
        }
        known = id;
        reported_down = false;
        // Poll the connection: a close means the process went away.
        bool alive = true;
        while (alive && !stop_) {
            pollfd p{fd, POLLIN, 0};
            int r = poll(&p, 1, 100);
            if (r == 1) {
                char c;
                alive = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
            } else if (r == 0) {
                alive = ask() && identity(stats) == known;
            }
        }
        if (!stop_) {
            flush_();
            on_event_("lost memcached at " + where + "; cache flushed");
        }
    }
}

}  // namespace bmc

#include <optional>

namespace bmc {

std::optional<std::uint32_t> memcached_maxconns(const std::string &host, std::uint16_t port) {
    McConnection c(mc_connect_tcp(host, port, 500), std::chrono::milliseconds(500));
    if (!c.ok()) return std::nullopt;
    auto v = mc_stat(c.call_until("stats settings\r\n", "END\r\n").value_or(""), "maxconns");
    if (!v) return std::nullopt;
    return std::uint32_t(*v);
}

}  // namespace bmc
