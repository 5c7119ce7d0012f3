// bmcd's command line: help, and one-line errors with a non-zero exit for bad input.
#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <string>
#include <thread>

#include "test_util.hpp"
#include "testbed.hpp"

using bmc::test::sh;

namespace {

struct Outcome {
    int status;
    std::string err;
};

Outcome run(const std::string &args, const std::string &prefix = "") {
    int st = 0;
    std::string err = sh(prefix + BMC_BMCD_PATH " " + args + " 2>&1 >/dev/null", &st);
    return {st, err};
}

int lines(const std::string &s) { return int(std::count(s.begin(), s.end(), '\n')); }

}  // namespace

TEST(BmcdCli, HelpDescribesEveryOption) {
    int st = 0;
    std::string out = sh(BMC_BMCD_PATH " --help", &st);
    EXPECT_EQ(st, 0);
    for (auto opt : {"--iface", "--backend", "--port", "--max-age", "--fill-guard-ms", "--socket-memo-ms",
                     "--xdp-mode", "--tc-attach", "--stats-file"})
        EXPECT_NE(out.find(opt), std::string::npos) << opt;
}

TEST(BmcdCli, BadArgumentsGiveOneLineAndExit2) {
    for (auto args : {"", "--iface", "--iface lo --port 70000", "--iface lo --bogus",
                      "--iface lo --backend dpdk", "--iface lo --max-age -1", "--iface lo --allow 10.0.0.0/40",
                      "--iface lo --allow nonsense", "--iface lo --max-amplification 0", "--iface lo --iface lo"}) {
        auto o = run(args);
        EXPECT_EQ(o.status, 2) << args;
        EXPECT_EQ(lines(o.err), 1) << args << ": " << o.err;
        EXPECT_EQ(o.err.rfind("bmcd: ", 0), 0u) << o.err;
    }
}

TEST(BmcdCli, HelpShowsDefaults) {
    std::string out = sh(BMC_BMCD_PATH " --help");
    EXPECT_NE(out.find("--max-age FLOAT:NUMBER=10 "), std::string::npos) << out;
    EXPECT_NE(out.find("=11211"), std::string::npos) << out;  // --port
}

TEST(BmcdCli, NumbersThatAreNotNumbersAreRefusedInOneShortLine) {
    for (auto args : {"--iface lo --max-age nan", "--iface lo --fill-guard-ms nan", "--iface lo --max-age inf",
                      "--iface lo --max-age 1e300", "--iface lo --fill-guard-ms -5", "--iface lo --interval 1e999",
                      "--iface lo --socket-memo-ms -1", "--iface lo --socket-memo-ms nan",
                      "--iface lo --socket-memo-ms 5000"}) {
        auto o = run(args);
        EXPECT_EQ(o.status, 2) << args;
        EXPECT_EQ(lines(o.err), 1) << args << ": " << o.err;
        EXPECT_LT(o.err.size(), 200u) << args << ": " << o.err;
    }
}

// Flags that can only be judged with an interface: all refused before anything attaches.
TEST(BmcdCli, EveryBadFlagIsRefusedBeforeAnyAttach) {
    BMC_REQUIRE_ROOT();
    bmc::test::Testbed tb("cli");
    const std::string pre = "ip netns exec " + tb.server_ns() + " ";
    for (auto args : {"--iface bmcs0 --stats-file /nonexistent/dir/s.json", "--iface bmcs0 --memcached example.com",
                      "--iface bmcs0 --textfile /nonexistent/dir/bmc.prom", "--iface bmcs0 --log-level loud",
                      "--iface bmcs0 --large-buckets 16777216 --small-buckets 16777216",
                      "--iface bmcs0 --small-buckets 1000"}) {
        auto o = run(args, pre);
        EXPECT_EQ(o.status, 2) << args;
        EXPECT_EQ(lines(o.err), 1) << args << ": " << o.err;
        EXPECT_EQ(o.err.rfind("bmcd: ", 0), 0u) << o.err;
        EXPECT_EQ(tb.run_in(tb.server_ns(), "ip link show dev bmcs0").find("xdp"), std::string::npos) << args;
    }
    auto o = run("--iface bmcs0 --large-buckets 16777216 --small-buckets 16777216", pre);
    EXPECT_NE(o.err.find("--small-buckets x 576 B"), std::string::npos) << "the sizing rule: " << o.err;
}

TEST(BmcdCli, MissingInterfaceIsOneLine) {
    BMC_REQUIRE_ROOT();
    auto o = run("--iface bmc-no-such-if0");
    EXPECT_EQ(o.status, 1);
    EXPECT_EQ(o.err, "bmcd: interface 'bmc-no-such-if0' not found\n");
    // A second interface that does not exist is found before the first is attached.
    o = run("--iface lo --iface bmc-no-such-if1");
    EXPECT_EQ(o.status, 1);
    EXPECT_EQ(o.err, "bmcd: interface 'bmc-no-such-if1' not found\n");
}

TEST(BmcdCli, BadBucketCountIsOneLine) {
    BMC_REQUIRE_ROOT();
    auto o = run("--iface lo --small-buckets 1000");
    EXPECT_EQ(o.status, 2);
    EXPECT_EQ(lines(o.err), 1) << o.err;
    EXPECT_NE(o.err.find("power of two"), std::string::npos) << o.err;
}

TEST(BmcdCli, NoBpfPermissionIsOneLine) {
    BMC_REQUIRE_ROOT();  // to drop privileges to nobody
    auto o = run("--iface lo", "setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all ");
    EXPECT_EQ(o.status, 1);
    EXPECT_EQ(lines(o.err), 1) << o.err;
    EXPECT_NE(o.err.find("needs root"), std::string::npos) << o.err;
}

// AF_XDP mode on a loopback device would loop (forwarded misses come back through the
// same XDP hook): refused at start before anything attaches, and refused as a switch
// while bmcd keeps serving with the kernel backend.
TEST(BmcdCli, AfxdpOnLoopbackIsRefused) {
    BMC_REQUIRE_ROOT();
    bmc::test::Testbed tb("lo");
    const std::string pre = "ip netns exec " + tb.server_ns() + " ";
    auto o = run("--iface lo --backend afxdp", pre);
    EXPECT_EQ(o.status, 2);
    EXPECT_EQ(lines(o.err), 1) << o.err;
    EXPECT_NE(o.err.find("loopback"), std::string::npos) << o.err;
    EXPECT_EQ(tb.run_in(tb.server_ns(), "ip link show dev lo").find("xdp"), std::string::npos);

    const std::string log = "/tmp/" + tb.server_ns() + "-bmcd.log";
    const pid_t bmcd = tb.spawn(tb.server_ns(), {BMC_BMCD_PATH, "--iface", "lo", "--interval", "0"}, log);
    bool attached = false;
    for (int i = 0; i < 100 && !attached; i++) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        attached = tb.run_in(tb.server_ns(), "ip link show dev lo").find("xdp") != std::string::npos;
    }
    ASSERT_TRUE(attached) << bmc::test::read_file(log);
    kill(bmcd, SIGUSR1);
    std::string text;
    for (int i = 0; i < 100 && text.find("cannot switch") == std::string::npos; i++) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        text = bmc::test::read_file(log);
    }
    EXPECT_NE(text.find("cannot switch to afxdp: AF_XDP mode cannot serve a loopback device"), std::string::npos)
        << text;
    EXPECT_TRUE(tb.alive(bmcd)) << "a refused switch is not fatal";
    tb.stop(bmcd, SIGTERM);
    std::remove(log.c_str());
}
