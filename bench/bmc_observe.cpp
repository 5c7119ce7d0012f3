// bmc-observe: attaches bmc's write observer alone (no XDP, no TC) to a cgroup until
// SIGINT/SIGTERM, so that a benchmark can measure what observing memcached's sockets costs
// memcached itself.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "kernel_backend.hpp"

int main(int argc, char **argv) {
    CLI::App app{"bmc-observe: bmc's write observer alone on memcached's sockets, until SIGTERM"};
    bmc::KernelOptions o;
    app.add_option("--cgroup", o.cgroup, "cgroup (v2) whose sockets are observed")->required();
    app.add_option("-p,--port", o.port, "memcached port")->check(CLI::Range(1, 65535));
    CLI11_PARSE(app, argc, argv);
    o.observer_only = true;
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigprocmask(SIG_BLOCK, &sigs, nullptr);
    try {
        bmc::KernelBackend be(o);
        std::printf("bmc-observe: observing port %u in %s\n", o.port, be.cgroup().c_str());
        std::fflush(stdout);
        int sig;
        sigwait(&sigs, &sig);
        auto c = be.read_counters();
        std::printf("bmc-observe: %llu connections, %llu chunks observed\n",
                    (unsigned long long)c[BMC_STAT_OBS_CONNS], (unsigned long long)c[BMC_STAT_OBS_CHUNKS]);
    } catch (const bmc::Error &e) {
        std::fprintf(stderr, "bmc-observe: %s\n", e.what());
        return 1;
    }
    return 0;
}
