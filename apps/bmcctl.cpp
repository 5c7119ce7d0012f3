// bmcctl: talks to a running bmcd through its control socket (/run/bmc/NAME.sock), in
// memcached's own text lines.
#include <sys/socket.h>
#include <sys/un.h>
#include <poll.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "control.hpp"

namespace {

// Sends one request line and returns the reply (through "END" for stats, else one line).
std::string ask(const std::string &path, const std::string &line, bool multi) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
        const int e = errno;
        close(fd);
        throw std::runtime_error("no bmcd answers on " + path + " (" + std::strerror(e) + "; see --name)");
    }
    const std::string req = line + "\r\n";
    send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    std::string out;
    char buf[4096];
    const std::string end = multi ? "END\r\n" : "\r\n";
    auto done = [&] {
        if (out.size() >= end.size() && out.compare(out.size() - end.size(), end.size(), end) == 0) return true;
        // A refusal is one line, also where a listing was asked for.
        return (out.rfind("ERROR", 0) == 0 || out.rfind("CLIENT_ERROR", 0) == 0) && out.find("\r\n") != std::string::npos;
    };
    while (!done()) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 3000) != 1) {
            close(fd);
            throw std::runtime_error("bmcd did not answer on " + path);
        }
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        out.append(buf, std::size_t(n));
    }
    close(fd);
    return out;
}

// "STAT name value" lines as a JSON object; values that are numbers stay numbers.
nlohmann::json to_json(const std::string &stats) {
    nlohmann::json j = nlohmann::json::object();
    std::size_t pos = 0;
    while (pos < stats.size()) {
        std::size_t eol = stats.find("\r\n", pos);
        if (eol == std::string::npos) break;
        std::string line = stats.substr(pos, eol - pos);
        pos = eol + 2;
        if (line.rfind("STAT ", 0) != 0) continue;
        std::size_t sp = line.find(' ', 5);
        std::string k = line.substr(5, sp - 5), v = sp == std::string::npos ? "" : line.substr(sp + 1);
        try {
            std::size_t used = 0;
            double d = std::stod(v, &used);
            if (used == v.size()) {
                if (v.find_first_not_of("0123456789") == std::string::npos) j[k] = std::stoull(v);
                else j[k] = d;
                continue;
            }
        } catch (...) {
        }
        j[k] = v;
    }
    return j;
}

}  // namespace

int main(int argc, char **argv) {
    CLI::App app{"bmcctl: inspect and steer a running bmcd through its control socket"};
    app.option_defaults()->always_capture_default();
    std::string name, backend;
    bool json = false;
    app.add_option("-n,--name", name, "the bmcd instance (its --name, or its --iface)")->required();
    app.add_flag("--json", json, "machine-readable output");
    app.require_subcommand(1);
    auto *status = app.add_subcommand("status", "backend, attach modes, queues, memcached watch, uptime");
    auto *stats = app.add_subcommand("stats", "counters, in memcached's STAT format");
    auto *settings = app.add_subcommand("settings", "the effective configuration (stats settings)");
    auto *flush = app.add_subcommand("flush", "empty the cache (a new epoch)");
    auto *sw = app.add_subcommand("switch", "select the backend that answers gets");
    sw->add_option("backend", backend, "kernel or afxdp")->required()->check(CLI::IsMember({"kernel", "afxdp"}));
    auto *version = app.add_subcommand("version", "bmcd's version");
    std::string key;
    auto *dump = app.add_subcommand("dump", "a key's buckets and entries, and whether a get of it is served now");
    dump->add_option("key", key, "the key")->required();
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp &e) {
        return app.exit(e);
    } catch (const CLI::ParseError &e) {
        std::fprintf(stderr, "bmcctl: %s (see --help)\n", e.what());
        return 2;
    }
    const std::string path = bmc::control_path(name);
    try {
        std::string reply;
        if (*stats || *settings || *dump || *status) {
            reply = ask(path, *stats ? "stats" : *settings ? "stats settings" : *status ? "status" : "dump " + key, true);
            if (reply.rfind("CLIENT_ERROR", 0) == 0) {
                std::fprintf(stderr, "bmcctl: %s", reply.c_str() + 13);
                return 2;
            }
            if (json) {
                std::printf("%s\n", to_json(reply).dump(1).c_str());
                return 0;
            }
        } else if (*flush) {
            reply = ask(path, "flush_all", false);
        } else if (*sw) {
            reply = ask(path, "switch " + backend, false);
        } else if (*version) {
            reply = ask(path, "version", false);
        }
        if (reply.rfind("ERROR", 0) == 0) {
            std::fprintf(stderr, "bmcctl: bmcd refused the request\n");
            return 1;
        }
        if (json) {
            nlohmann::json j = {{"reply", reply.substr(0, reply.find("\r\n"))}};
            std::printf("%s\n", j.dump().c_str());
        } else {
            for (std::size_t p; (p = reply.find('\r')) != std::string::npos;) reply.erase(p, 1);
            std::fputs(reply.c_str(), stdout);
        }
    } catch (const std::runtime_error &e) {
        std::fprintf(stderr, "bmcctl: %s\n", e.what());
        return 1;
    }
    return 0;
}
