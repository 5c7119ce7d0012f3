#include "memcached_watch.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace bmc {
namespace {

int connect_to(const std::string &host, std::uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0) return fd;
    if (fd >= 0) close(fd);
    return -1;
}

// "pid:start" from a stats reply, where start = time - uptime; empty if incomplete.
std::string identity(const std::string &stats) {
    auto field = [&](const char *name) -> long long {
        std::string key = std::string("STAT ") + name + " ";
        auto p = stats.find(key);
        return p == std::string::npos ? -1 : std::atoll(stats.c_str() + p + key.size());
    };
    long long pid = field("pid"), time = field("time"), uptime = field("uptime");
    if (pid < 0 || time < 0 || uptime < 0) return {};
    return std::to_string(pid) + ":" + std::to_string(time - uptime);
}

// Sends "stats" and reads the reply, watching for the connection to close.
bool ask(int fd, std::string &out) {
    static const char req[] = "stats\r\n";
    if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != ssize_t(sizeof req - 1)) return false;
    out.clear();
    char buf[4096];
    while (out.size() < 5 || out.compare(out.size() - 5, 5, "END\r\n") != 0) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 1000) != 1) return false;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) return false;
        out.append(buf, std::size_t(n));
    }
    return true;
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
        int fd = connect_to(host_, port_);
        if (fd < 0 || !ask(fd, stats) || identity(stats).empty()) {
            if (fd >= 0) close(fd);
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
                alive = ask(fd, stats) && identity(stats) == known;
            }
        }
        close(fd);
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
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return std::nullopt;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    std::string reply;
    if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) == 1 &&
        (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0 || errno == EINPROGRESS)) {
        pollfd p{fd, POLLOUT, 0};
        const char req[] = "stats settings\r\n";
        if (poll(&p, 1, 500) == 1 && send(fd, req, sizeof req - 1, MSG_NOSIGNAL) == ssize_t(sizeof req - 1)) {
            char buf[4096];
            for (int i = 0; i < 20 && reply.find("END\r\n") == std::string::npos; i++) {
                p = {fd, POLLIN, 0};
                if (poll(&p, 1, 500) != 1) break;
                ssize_t n = recv(fd, buf, sizeof buf, 0);
                if (n <= 0) break;
                reply.append(buf, std::size_t(n));
            }
        }
    }
    close(fd);
    const auto pos = reply.find("STAT maxconns ");
    if (pos == std::string::npos) return std::nullopt;
    return std::uint32_t(std::strtoul(reply.c_str() + pos + 14, nullptr, 10));
}

}  // namespace bmc
