#include "metrics.hpp"

#include <httplib.h>

#include <stdexcept>

namespace bmc {

std::string metric_help(const std::string &c) {
    static const std::pair<const char *, const char *> kinds[] = {
        {"pass_", "Gets left to memcached: "}, {"fill_", "Fills of the cache from memcached's replies: "},
        {"inval_", "Invalidations: "},        {"observed_", "Write observer: observed "},
        {"unobserved_", "Write observer: unobserved "}};
    std::string rest = c, head = "Gets: ";
    for (auto [prefix, text] : kinds)
        if (c.rfind(prefix, 0) == 0) {
            head = text;
            rest = c.substr(std::string(prefix).size());
            break;
        }
    for (auto &ch : rest)
        if (ch == '_') ch = ' ';
    return head + rest + ".";
}

MetricsServer::MetricsServer(const std::string &addr, int port, std::function<std::string()> render)
    : server_(std::make_unique<httplib::Server>()) {
    server_->Get("/metrics", [render](const httplib::Request &, httplib::Response &res) {
        res.set_content(render(), "text/plain; version=0.0.4; charset=utf-8");
    });
    if (!server_->bind_to_port(addr, port))
        throw std::runtime_error("cannot serve metrics on " + addr + ":" + std::to_string(port));
    thread_ = std::thread([this] { server_->listen_after_bind(); });
}

MetricsServer::~MetricsServer() {
    server_->stop();
    thread_.join();
}

}  // namespace bmc
