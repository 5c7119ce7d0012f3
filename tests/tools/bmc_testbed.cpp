// bmc-testbed: the tests' namespace testbed (tests/testbed.hpp) for programs that are not
// tests: the benchmark harness, the guide's labs and the demo make and remove theirs
// with it, so that names, addresses, the client's XDP_PASS program, the cgroup and the
// cleanup of a crashed run are written once.
//
//   bmc-testbed up --tag T [--queues N] [--links L] [--owner PID]   prints the testbed as JSON
//   bmc-testbed down --server-ns S --client-ns C [--cgroup G]        removes it
//   bmc-testbed clean                                                removes crashed runs'
#include <CLI/CLI.hpp>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "testbed.hpp"

using bmc::test::Testbed;

int main(int argc, char **argv) {
    CLI::App app{"bmc-testbed: two network namespaces joined by veth pairs, with the tests' names and addresses "
                 "(198.18.0.0/15, 2001:2::/48, assigned only inside them) and a cgroup of their own (as root)"};
    app.require_subcommand(1);
    std::string tag = "tool", server_ns, client_ns, cgroup;
    int queues = 1, links = 1;
    pid_t owner = getppid();
    auto *up = app.add_subcommand("up", "make a testbed and print it as JSON; it stays until `down`, or until "
                                        "--owner has exited and any testbed is made or `clean` runs");
    up->add_option("--tag", tag, "a word in its names")->check([](const std::string &t) {
        return t.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789") == std::string::npos && !t.empty() &&
                       t.size() <= 12
                   ? std::string()
                   : std::string("lower-case letters and digits, at most 12");
    })->capture_default_str();
    up->add_option("--queues", queues, "RX/TX queues of each veth end")->check(CLI::Range(1, 8))->capture_default_str();
    up->add_option("--links", links, "veth pairs")->check(CLI::Range(1, 2))->capture_default_str();
    up->add_option("--owner", owner, "the process whose testbed it is (default: the caller)");
    auto *down = app.add_subcommand("down", "remove a testbed `up` made");
    down->add_option("--server-ns", server_ns, "its server namespace")->required();
    down->add_option("--client-ns", client_ns, "its client namespace")->required();
    down->add_option("--cgroup", cgroup, "its cgroup");
    app.add_subcommand("clean", "remove the testbeds of processes that are gone");
    CLI11_PARSE(app, argc, argv);
    if (geteuid() != 0) {
        std::fprintf(stderr, "bmc-testbed: run as root (namespaces, cgroups, XDP)\n");
        return 1;
    }
    try {
        if (*up) {
            Testbed tb(tag, queues, links, owner);
            tb.keep();
            nlohmann::json j = {{"server_ns", tb.server_ns()},    {"client_ns", tb.client_ns()},
                                {"cgroup", tb.cgroup()},          {"server_if", Testbed::kServerIf},
                                {"client_if", Testbed::kClientIf}, {"server_ip", Testbed::kServerIp},
                                {"client_ip", Testbed::kClientIp}, {"server_ip6", Testbed::kServerIp6},
                                {"client_ip6", Testbed::kClientIp6}, {"server_mac", tb.server_mac()},
                                {"queues", queues},               {"links", links}};
            if (links == 2)
                j.update({{"server_if2", Testbed::kServerIf2}, {"client_if2", Testbed::kClientIf2},
                          {"server_ip2", Testbed::kServerIp2}, {"client_ip2", Testbed::kClientIp2}});
            std::printf("%s\n", j.dump().c_str());
        } else if (*down) {
            Testbed::remove(server_ns, client_ns, cgroup);
        } else {
            Testbed::remove_stale();
        }
    } catch (const std::exception &e) {
        std::fprintf(stderr, "bmc-testbed: %s\n", e.what());
        return 1;
    }
    return 0;
}
