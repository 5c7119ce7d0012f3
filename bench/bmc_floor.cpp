// bmc-floor: the benchmark's floors on an interface until SIGINT/SIGTERM.
//   --kind xdp    an XDP program that bounces each memcached request back with XDP_TX
//   --kind afxdp  bmc's XDP program in AF_XDP mode, and pollers that bounce each request
// Neither does any cache work: they measure what the path itself costs.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "afxdp_backend.hpp"
#include "bench_shared.h"
#include "bmc_bench.skel.h"

int main(int argc, char **argv) {
    CLI::App app{"bmc-floor: XDP_TX or AF_XDP echo of memcached requests (benchmark floors)"};
    std::string iface, kind = "xdp", stats_file;
    app.add_option("-i,--iface", iface, "interface")->required();
    app.add_option("--kind", kind, "xdp or afxdp")->check(CLI::IsMember({"xdp", "afxdp"}));
    app.add_option("--stats-file", stats_file, "JSON counters, rewritten every 200 ms")->required();
    CLI11_PARSE(app, argc, argv);

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigprocmask(SIG_BLOCK, &sigs, nullptr);

    std::unique_ptr<bmc::KernelBackend> kern;
    std::unique_ptr<bmc::AfxdpBackend> afxdp;
    bmc_bench *skel = nullptr;
    int link = -1;
    try {
        if (kind == "xdp") {
            skel = bmc_bench__open();
            if (skel) bpf_program__set_autoload(skel->progs.bench_client, false);
            if (skel && bmc_bench__load(skel)) {
                bmc_bench__destroy(skel);
                skel = nullptr;
            }
            int ifindex = int(if_nametoindex(iface.c_str()));
            if (!skel || !ifindex) throw bmc::Error("cannot load the echo program or find " + iface);
            link = bpf_link_create(bpf_program__fd(skel->progs.bench_echo), ifindex, BPF_XDP, nullptr);
            if (link < 0) throw bmc::Error("XDP attach to " + iface + " failed");
        } else {
            bmc::KernelOptions ko;
            ko.iface = iface;
            kern = std::make_unique<bmc::KernelBackend>(ko);
            bmc::AfxdpOptions ao;
            ao.echo = true;
            afxdp = std::make_unique<bmc::AfxdpBackend>(*kern, ao);
            kern->set_mode(BMC_MODE_AFXDP);
        }
    } catch (const bmc::Error &e) {
        std::fprintf(stderr, "bmc-floor: %s\n", e.what());
        return 1;
    }
    auto echoed = [&]() -> std::uint64_t {
        if (afxdp) return afxdp->counters().rx_frames;
        std::vector<bench_counters> v(static_cast<std::size_t>(libbpf_num_possible_cpus()));
        std::uint32_t key = 0;
        std::uint64_t sum = 0;
        if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.bench_count), &key, v.data()) == 0)
            for (auto &x : v) sum += x.echoed;
        return sum;
    };
    timespec tick{0, 200000000};
    for (;;) {
        int sig = sigtimedwait(&sigs, nullptr, &tick);
        std::ofstream f(stats_file + ".tmp");
        f << nlohmann::json{{"kind", kind}, {"echoed", echoed()}}.dump() << "\n";
        f.close();
        std::rename((stats_file + ".tmp").c_str(), stats_file.c_str());
        if (sig == SIGINT || sig == SIGTERM) break;
    }
    if (kern) kern->set_mode(BMC_MODE_KERNEL);
    afxdp.reset();
    kern.reset();
    if (link >= 0) close(link);
    if (skel) bmc_bench__destroy(skel);
    return 0;
}
