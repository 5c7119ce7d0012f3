// bmcd's Prometheus endpoint (--metrics ADDR:PORT): GET /metrics in the text exposition
// format, every counter as bmc_<name>_total{iface, backend} with # HELP and # TYPE.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

namespace httplib {
class Server;
}

namespace bmc {

class MetricsServer {
public:
    // Listens on addr:port (throws std::runtime_error with a one-line reason); render()
    // returns the exposition text, called on the server's thread.
    MetricsServer(const std::string &addr, int port, std::function<std::string()> render);
    ~MetricsServer();

private:
    std::unique_ptr<httplib::Server> server_;
    std::thread thread_;
};

// "pass_bad_udp_checksum" -> "Gets left to memcached: bad udp checksum."
std::string metric_help(const std::string &counter);

}  // namespace bmc
