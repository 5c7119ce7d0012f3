#include "control.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <vector>

namespace bmc {

std::string control_path(const std::string &name) { return "/run/bmc/" + name + ".sock"; }

ControlServer::ControlServer(std::string path, std::function<std::string(const std::string &)> handler)
    : path_(std::move(path)), handler_(std::move(handler)) {
    sockaddr_un a{};
    if (path_.size() >= sizeof a.sun_path) throw std::runtime_error("control socket path too long: " + path_);
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ec);
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path_.c_str(), path_.size());
    // A socket file left by a bmcd that died is stale: nobody accepts on it.
    if (connect(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0) {
        close(fd_);
        throw std::runtime_error("another bmcd answers on " + path_ + " (give this one another --name)");
    }
    unlink(path_.c_str());
    if (bind(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 || listen(fd_, 16) != 0) {
        int e = errno;
        close(fd_);
        throw std::runtime_error("cannot serve the control socket " + path_ + ": " + std::strerror(e));
    }
    chmod(path_.c_str(), 0660);
    wake_ = eventfd(0, EFD_CLOEXEC);
    thread_ = std::thread([this] { run(); });
}

ControlServer::~ControlServer() {
    std::uint64_t one = 1;
    if (write(wake_, &one, sizeof one) < 0) {}
    thread_.join();
    close(fd_);
    close(wake_);
    unlink(path_.c_str());
}

void ControlServer::publish(const std::string &text) {
    std::lock_guard<std::mutex> g(subs_mu_);
    for (int fd : subs_)
        if (send(fd, text.data(), text.size(), MSG_NOSIGNAL | MSG_DONTWAIT) != ssize_t(text.size())) dropped_++;
}

void ControlServer::run() {
    struct Client {
        int fd;
        std::string in;
        bool subscribed = false;
    };
    auto unsubscribe = [&](int fd) {
        std::size_t left;
        {
            std::lock_guard<std::mutex> g(subs_mu_);
            std::erase(subs_, fd);
            left = subs_.size();
        }
        if (on_subscribers_) on_subscribers_(left);
    };
    std::vector<Client> clients;
    for (;;) {
        std::vector<pollfd> p = {{wake_, POLLIN, 0}, {fd_, POLLIN, 0}};
        for (auto &c : clients) p.push_back({c.fd, POLLIN, 0});
        if (poll(p.data(), p.size(), -1) < 0 && errno != EINTR) return;
        if (p[0].revents) break;
        if (p[1].revents & POLLIN) {
            int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c >= 0) clients.push_back({c, ""});
        }
        for (std::size_t i = 2; i < p.size(); i++) {
            if (!p[i].revents) continue;
            Client &c = clients[i - 2];
            char buf[1024];
            ssize_t n = recv(c.fd, buf, sizeof buf, 0);
            if (n <= 0 || c.in.size() > 4096) {
                if (c.subscribed) unsubscribe(c.fd);
                close(c.fd);
                c.fd = -1;
                continue;
            }
            if (c.subscribed) continue;  // a subscriber only listens
            c.in.append(buf, std::size_t(n));
            for (std::size_t eol; (eol = c.in.find('\n')) != std::string::npos;) {
                std::string line = c.in.substr(0, eol);
                c.in.erase(0, eol + 1);
                if (!line.empty() && line.back() == '\r') line.pop_back();
                const std::string reply = handler_(line);
                if (send(c.fd, reply.data(), reply.size(), MSG_NOSIGNAL) < 0) break;
                if (line.rfind("trace", 0) == 0 && reply.rfind("OK", 0) == 0) {
                    c.subscribed = true;
                    std::size_t now;
                    {
                        std::lock_guard<std::mutex> g(subs_mu_);
                        subs_.push_back(c.fd);
                        now = subs_.size();
                    }
                    if (on_subscribers_) on_subscribers_(now);
                    break;
                }
            }
        }
        std::erase_if(clients, [](const Client &c) { return c.fd < 0; });
    }
    for (auto &c : clients) {
        if (c.subscribed) unsubscribe(c.fd);
        close(c.fd);
    }
}

}  // namespace bmc
