// End to end on the namespace testbed: a real memcached, bmcd attached to the server end
// of the veth, clients in the other namespace.
#include <gtest/gtest.h>
#include <linux/if_packet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <chrono>
#include <cstring>
#include <atomic>
#include <cctype>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include <bpf/bpf.h>

#include "kernel_backend.hpp"
#include "mc_client.hpp"
#include <poll.h>
#include <arpa/inet.h>
#include "test_util.hpp"
#include "testbed.hpp"
#include "wire.hpp"
#include "writes.hpp"

using namespace bmc::test;
using namespace std::chrono_literals;

namespace {

// memcached and bmcd on a fresh testbed.
struct Server {
    std::unique_ptr<Testbed> tb;
    pid_t memcached = -1, bmcd = -1;
    std::string dir, stats_path, log_path;

    // With start_bmcd = false, the test starts it (start_bmcd) when it wants.
    int links = 1;
    explicit Server(const std::string &tag, std::vector<std::string> bmcd_args = {}, bool with_bmcd = true,
                    int queues = 1, int links_ = 1)
        : links(links_) {
        tb = std::make_unique<Testbed>(tag, queues, links);
        dir = "/tmp/" + tb->server_ns();
        sh("mkdir -p " + dir);
        stats_path = dir + "/bmcd.json";
        log_path = dir + "/bmcd.log";
        start_memcached("memcached.log");
        int probe = tb->client_tcp_connect(11211);
        if (probe < 0) throw std::runtime_error("memcached did not start");
        McTcp closer(probe);
        if (with_bmcd) start_bmcd(bmcd_args);
    }
    void start_memcached(const std::string &log) {
        // Also on loopback (writes from the server host) and IPv6.
        memcached = tb->spawn(tb->server_ns(),
                              {"memcached", "-u", "root", "-U", "11211", "-p", "11211", "-l",
                               std::string(Testbed::kServerIp) + ",127.0.0.1,[" + Testbed::kServerIp6 + "]" +
                                   (links == 2 ? std::string(",") + Testbed::kServerIp2 : ""),
                               "-t", "1", "-m", "64"},
                              dir + "/" + log, true);
    }
    void start_bmcd(std::vector<std::string> extra) {
        std::vector<std::string> argv = {BMC_BMCD_PATH, "--iface", Testbed::kServerIf, "--interval", "0",
                                         "--stats-file", stats_path, "--cgroup", tb->cgroup()};
        argv.insert(argv.end(), extra.begin(), extra.end());
        std::remove(stats_path.c_str());
        bmcd = tb->spawn(tb->server_ns(), argv, log_path);
        for (int i = 0; i < 500 && read_file(stats_path).empty(); i++) {
            if (!tb->alive(bmcd)) throw std::runtime_error("bmcd exited: " + read_file(log_path));
            std::this_thread::sleep_for(10ms);
        }
        if (read_file(stats_path).empty()) throw std::runtime_error("bmcd did not start");
    }
    ~Server() {
        if (bmcd > 0 && tb->alive(bmcd)) tb->stop(bmcd, SIGTERM);
        if (memcached > 0) tb->stop(memcached, SIGTERM);
        if (!::testing::Test::HasFailure()) sh("rm -rf " + dir);  // keep logs of a failure
    }
    std::unique_ptr<McTcp> tcp() { return std::make_unique<McTcp>(tb->client_tcp_connect(11211)); }
    std::unique_ptr<McUdp> udp() {
        return std::make_unique<McUdp>(tb->client_udp_socket(), Testbed::kServerIp, 11211);
    }
    // The first stats file bmcd wrote from counters it read at least 50 ms after this
    // call (it stamps a snapshot before reading the counters, and rewrites the file
    // every 200 ms): everything that happened before the call is in it, including what
    // an AF_XDP poller publishes after its batch. A stopped bmcd's last file is final.
    nlohmann::json stats() {
        const auto since = std::uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                                              std::chrono::system_clock::now().time_since_epoch())
                                              .count()) + 50;
        nlohmann::json j;
        for (int i = 0; i < 150; i++) {
            const std::string text = read_file(stats_path);
            j = text.empty() ? nlohmann::json() : nlohmann::json::parse(text, nullptr, false);
            if (j.is_object() && (j.value("state", "") == "stopped" || j.value("unix_time_ms", std::uint64_t(0)) >= since))
                return j;
            std::this_thread::sleep_for(20ms);
        }
        throw std::runtime_error("bmcd wrote no fresh stats file in 3 s: " + read_file(log_path));
    }
    nlohmann::json counters() { return stats()["counters"]; }
    // Gets answered by the cache, on either path.
    std::uint64_t cache_hits() {
        auto j = stats();
        std::uint64_t n = j["counters"]["hit_requests"].get<std::uint64_t>();
        if (j.contains("afxdp")) n += j["afxdp"]["counters"]["hit_requests"].get<std::uint64_t>();
        return n;
    }
};

// Polls cond every 10 ms until it holds or `limit` has passed; whether it held. Tests wait
// on what they need this way, never on a fixed sleep (the waits left are time itself: the
// fill guard, --max-age, a delayed flush, a fault held for a while).
bool eventually(const std::function<bool()> &cond, std::chrono::milliseconds limit = 3000ms) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!cond()) {
        if (std::chrono::steady_clock::now() > until) return false;
        std::this_thread::sleep_for(10ms);
    }
    return true;
}

// The backends every end-to-end test runs against.
const std::vector<std::string> kBackends = {"kernel", "afxdp"};

// A counter summed over both datapaths.
std::uint64_t all_counters_of(Server &s, const std::string &name) {
    auto j = s.stats();
    std::uint64_t n = j["counters"][name].get<std::uint64_t>();
    if (j.contains("afxdp")) n += j["afxdp"]["counters"][name].get<std::uint64_t>();
    return n;
}

std::string item(const std::string &key, const std::string &value, int flags = 0) {
    return "VALUE " + key + " " + std::to_string(flags) + " " + std::to_string(value.size()) + "\r\n" +
           value + "\r\n";
}

// One server per backend and test process, shared by the tests of a suite.
class E2EBase : public ::testing::Test {
protected:
    static inline std::map<std::string, std::unique_ptr<Server>> servers;
    Server *server = nullptr;
    std::unique_ptr<McTcp> tcp;
    std::unique_ptr<McUdp> udp;

    virtual std::string backend() const = 0;
    void SetUp() override {
        BMC_REQUIRE_ROOT();
        auto &s = servers[backend()];
        if (!s)
            s = std::make_unique<Server>(
                "e2e", std::vector<std::string>{"--backend", backend(), "--max-amplification", "100"});
        server = s.get();
        tcp = server->tcp();
        udp = server->udp();
        ASSERT_TRUE(tcp->ok());
    }
    static void TearDownTestSuite() { servers.clear(); }

    // Stores key=value through memcached and waits until UDP gets of it no longer reach
    // memcached (the cache answers them).
    bool warm(const std::string &key, const std::string &value) {
        EXPECT_EQ(tcp->call("set " + key + " 0 0 " + std::to_string(value.size()) + "\r\n" + value + "\r\n"),
                  "STORED\r\n");
        std::this_thread::sleep_for(15ms);  // past the fill guard
        for (int i = 0; i < 50; i++) {
            auto before = tcp->stat("cmd_get");
            auto r = udp->request("get " + key + "\r\n", true);
            EXPECT_EQ(r.text, item(key, value) + "END\r\n");
            if (tcp->stat("cmd_get") == before) return true;
            std::this_thread::sleep_for(10ms);
        }
        return false;
    }
    std::string truth(const std::string &key) { return tcp->call("get " + key + "\r\n"); }
};

class E2E : public E2EBase, public ::testing::WithParamInterface<std::string> {
    std::string backend() const override { return GetParam(); }
};

}  // namespace

INSTANTIATE_TEST_SUITE_P(Backend, E2E, ::testing::ValuesIn(kBackends),
                         [](const auto &info) { return info.param; });

TEST_P(E2E, RepeatedGetsOfAStoredKeyAreAnsweredByTheCache) {
    const std::string value = "a 32-byte value, as in the paper";
    ASSERT_TRUE(warm("hot", value));
    auto path_hits = [&] {
        auto j = server->stats();
        return std::pair{j["counters"]["hit_requests"].get<std::uint64_t>(),
                         j.contains("afxdp") ? j["afxdp"]["counters"]["hit_requests"].get<std::uint64_t>() : 0};
    };
    auto [xdp_before, afxdp_before] = path_hits();
    auto cmd_get = tcp->stat("cmd_get"), get_hits = tcp->stat("get_hits");
    for (int i = 0; i < 200; i++) {
        auto r = udp->request("get hot\r\n", true);
        ASSERT_EQ(r.text, item("hot", value) + "END\r\n");
        ASSERT_EQ(r.datagrams, 1);
    }
    EXPECT_EQ(tcp->stat("get_hits"), get_hits);
    EXPECT_EQ(tcp->stat("cmd_get"), cmd_get);
    // The counters say which path answered.
    auto [xdp_after, afxdp_after] = path_hits();
    if (GetParam() == "kernel") {
        EXPECT_GE(xdp_after, xdp_before + 200);
        EXPECT_EQ(afxdp_after, afxdp_before);
    } else {
        EXPECT_GE(afxdp_after, afxdp_before + 200);
        EXPECT_EQ(xdp_after, xdp_before);
        // One request at a time: the poller found about one frame waiting each time.
        auto a = server->stats()["afxdp"];
        const auto frames = a["rx_frames"].get<std::uint64_t>(), batches = a["rx_batches"].get<std::uint64_t>();
        EXPECT_GE(frames, 200u);
        EXPECT_LE(batches, frames);
        EXPECT_GE(2 * batches, frames);
    }
}

TEST_P(E2E, PartialMultiGetReturnsEveryKey) {
    ASSERT_TRUE(warm("pa", "cached"));
    ASSERT_EQ(tcp->call("set pb 0 0 9\r\nmemcached\r\n"), "STORED\r\n");
    auto hits_before = tcp->stat("get_hits");
    auto r = udp->request("get pa pb\r\n", true);
    EXPECT_TRUE(r.complete);
    EXPECT_NE(r.text.find(item("pa", "cached")), std::string::npos) << r.text;
    EXPECT_NE(r.text.find(item("pb", "memcached")), std::string::npos) << r.text;
    EXPECT_EQ(tcp->stat("get_hits"), hits_before + 2);  // memcached answered both
}

TEST_P(E2E, LargeValueIsServedWhereTheFrameHasRoom) {
    std::string v(180, 'L');  // grows the frame by more than veth's tailroom
    ASSERT_TRUE(warm("large", v));
    auto r = udp->request("get large\r\n", true);
    EXPECT_EQ(r.text, item("large", v) + "END\r\n");
}

// memcached stalls with client X's miss for key A in flight while client Z sends more
// misses than there are 16-bit request ids; then memcached resumes. No reply may reach
// the wrong client: every reply Z receives carries the key and value its request id asked
// for, and X receives A or nothing (on the AF_XDP backend nothing, when the stall
// outlasts the relay timeout). (The AF_XDP backend forwards misses under ids of its
// own; it once reused a pending id and sent A's value to Z.)
TEST_P(E2E, AStalledMemcachedNeverSendsOneClientsReplyToAnother) {
    constexpr int kZKeys = 64, kZRequests = 80000;  // a margin over 65,536 for misses a busy poller drops
    ASSERT_EQ(tcp->call("set relay-A 0 0 10\r\nvalue-of-A\r\n"), "STORED\r\n");
    for (int k = 0; k < kZKeys; k++) {
        const std::string v = "zv" + std::to_string(k);
        ASSERT_EQ(tcp->call("set relay-z" + std::to_string(k) + " 0 0 " + std::to_string(v.size()) + "\r\n" + v + "\r\n"),
                  "STORED\r\n");
    }
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(11211);
    inet_pton(AF_INET, Testbed::kServerIp, &to.sin_addr);
    const int x = server->tb->client_udp_socket(), z = server->tb->client_udp_socket();
    ASSERT_GE(x, 0);
    ASSERT_GE(z, 0);
    auto send_get = [&](int fd, std::uint16_t id, const std::string &key) {
        std::string d = {char(id >> 8), char(id & 0xff), 0, 0, 0, 1, 0, 0};
        d += "get " + key + "\r\n";
        return sendto(fd, d.data(), d.size(), 0, reinterpret_cast<sockaddr *>(&to), sizeof to) == ssize_t(d.size());
    };
    auto z_key = [&](std::uint32_t id) { return "relay-z" + std::to_string(id % kZKeys); };

    ASSERT_EQ(kill(server->memcached, SIGSTOP), 0);
    ASSERT_TRUE(send_get(x, 0x4242, "relay-A"));
    std::this_thread::sleep_for(50ms);
    // Paced, so that the AF_XDP RX ring does not overflow: the poller must forward them.
    const std::uint64_t forwarded_before = GetParam() == "afxdp" ? server->stats()["afxdp"]["forwarded"].get<std::uint64_t>() : 0;
    int sent = 0;
    for (int i = 0; i < kZRequests; i++) {
        sent += send_get(z, std::uint16_t(i), z_key(std::uint16_t(i)));
        if (i % 256 == 255) std::this_thread::sleep_for(1ms);
    }
    std::this_thread::sleep_for(200ms);
    ASSERT_EQ(kill(server->memcached, SIGCONT), 0);  // stalled about half the relay timeout

    // Everything that comes back within 2 s.
    int z_replies = 0, z_wrong = 0, x_replies = 0, x_wrong = 0;
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    char buf[2048];
    while (std::chrono::steady_clock::now() < deadline) {
        pollfd p[2] = {{x, POLLIN, 0}, {z, POLLIN, 0}};
        if (poll(p, 2, 50) <= 0) continue;
        for (int i = 0; i < 2; i++) {
            if (!(p[i].revents & POLLIN)) continue;
            ssize_t n = recv(p[i].fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n < 8) continue;
            const std::uint16_t id = std::uint16_t(std::uint8_t(buf[0]) << 8 | std::uint8_t(buf[1]));
            const std::string text(buf + 8, std::size_t(n - 8));
            if (i == 0) {
                x_replies++;
                x_wrong += id != 0x4242 || text != item("relay-A", "value-of-A") + "END\r\n";
            } else {
                z_replies++;
                const std::string k = z_key(id), v = "zv" + std::to_string(id % kZKeys);
                if (text != item(k, v) + "END\r\n") {
                    if (z_wrong++ < 3) ADD_FAILURE() << "Z's request " << id << " got: " << text.substr(0, 80);
                }
            }
        }
    }
    close(x);
    close(z);
    if (GetParam() == "afxdp") {
        const auto forwarded = server->stats()["afxdp"]["forwarded"].get<std::uint64_t>() - forwarded_before;
        std::printf("stalled memcached: the pollers forwarded %llu misses\n", (unsigned long long)forwarded);
        EXPECT_GT(forwarded, 65536u) << "the test must make the 16-bit ids wrap";
    }
    std::printf("stalled memcached: Z sent %d, got %d replies (%d wrong); X got %d (%d wrong)\n", sent, z_replies,
                z_wrong, x_replies, x_wrong);
    EXPECT_EQ(z_wrong, 0);
    EXPECT_EQ(x_wrong, 0);
    EXPECT_GT(z_replies, 100) << "the test needs replies to check";
}

// Two RX queues: the kernel backend answers on both, the AF_XDP backend runs a poller on
// each and both answer, and switching back and forth keeps every answer right.
TEST(E2ETwoQueues, BothBackendsAnswerOnEveryQueueAcrossSwitches) {
    BMC_REQUIRE_ROOT();
    Server s("2q", {"--max-amplification", "100"}, true, 2);
    auto tcp = s.tcp();
    constexpr int kKeys = 32, kClients = 16;
    for (int k = 0; k < kKeys; k++) {
        const std::string v = "two-queue-value-" + std::to_string(k);
        ASSERT_EQ(tcp->call("set q" + std::to_string(k) + " 0 0 " + std::to_string(v.size()) + "\r\n" + v + "\r\n"),
                  "STORED\r\n");
    }
    std::this_thread::sleep_for(15ms);  // past the fill guard
    // Many source ports, so that the veth spreads the flows over both queues.
    std::vector<std::unique_ptr<McUdp>> clients;
    for (int c = 0; c < kClients; c++) clients.push_back(s.udp());
    auto round = [&](const std::string &what) {
        for (int rep = 0; rep < 3; rep++)
            for (int c = 0; c < kClients; c++)
                for (int k = c % 4; k < kKeys; k += 4) {
                    const std::string key = "q" + std::to_string(k), v = "two-queue-value-" + std::to_string(k);
                    auto r = clients[std::size_t(c)]->request("get " + key + "\r\n", true);
                    ASSERT_EQ(r.text, item(key, v) + "END\r\n") << what << " client " << c;
                }
    };
    const auto hits0 = s.cache_hits();
    round("kernel");
    EXPECT_GT(s.cache_hits(), hits0 + std::uint64_t(kClients * kKeys / 2)) << "the cache answered";
    kill(s.bmcd, SIGUSR1);
    std::uint64_t queues = 0;
    for (int i = 0; i < 50 && queues != 2; i++) {
        auto j = s.stats();
        if (j.contains("afxdp")) queues = j["afxdp"]["rx_per_queue"].size();
    }
    ASSERT_EQ(queues, 2u) << "a poller per queue";
    round("afxdp");
    auto per_queue = s.stats()["afxdp"]["rx_per_queue"];
    EXPECT_GT(per_queue[0].get<std::uint64_t>(), 0u) << per_queue.dump();
    EXPECT_GT(per_queue[1].get<std::uint64_t>(), 0u) << per_queue.dump();
    kill(s.bmcd, SIGUSR2);
    ASSERT_TRUE(eventually([&] { return s.stats()["backend"] == "kernel"; }));
    round("kernel again");
    kill(s.bmcd, SIGUSR1);
    ASSERT_TRUE(eventually([&] { return s.stats()["backend"] == "afxdp"; }));
    round("afxdp again");
}

// ---- several interfaces, one cache ------------------------------------------------------

namespace {

// The textfile's value of a counter for one interface and backend (-1 if absent).
long long textfile_value(const std::string &text, const std::string &metric, const std::string &iface,
                         const std::string &backend) {
    const std::string key = metric + "{iface=\"" + iface + "\",backend=\"" + backend + "\"} ";
    const auto at = text.find(key);
    return at == std::string::npos ? -1 : std::stoll(text.substr(at + key.size()));
}

}  // namespace

// bmcd --iface A --iface B: what is filled from a reply leaving A is served to a client on
// B, a write invalidates for both, and each interface's counters carry its own label; on
// both backends.
TEST(E2EMultiIface, OneCacheAnswersOnEveryInterfaceOnBothBackends) {
    BMC_REQUIRE_ROOT();
    Server s("multi", {}, false, 1, 2);
    const std::string prom = s.dir + "/bmc.prom";
    s.start_bmcd({"--iface", Testbed::kServerIf2, "--textfile", prom});
    auto tcp = s.tcp();
    auto on_a = s.udp();
    McUdp on_b(s.tb->client_udp_socket(), Testbed::kServerIp2, 11211);
    ASSERT_EQ(tcp->call("set mk 0 0 5\r\nfirst\r\n"), "STORED\r\n");
    std::this_thread::sleep_for(15ms);  // past the fill guard
    ASSERT_EQ(on_a->request("get mk\r\n", true).text, item("mk", "first") + "END\r\n");  // a miss fills
    const auto before = tcp->stat("cmd_get");
    for (int i = 0; i < 3; i++) ASSERT_EQ(on_b.request("get mk\r\n", true).text, item("mk", "first") + "END\r\n");
    EXPECT_EQ(tcp->stat("cmd_get"), before) << "the cache answered on the second interface what the first filled";
    ASSERT_EQ(tcp->call("set mk 0 0 6\r\nsecond\r\n"), "STORED\r\n");
    EXPECT_EQ(on_b.request("get mk\r\n", true).text, item("mk", "second") + "END\r\n") << "the write invalidated";
    s.stats();
    std::string text;
    for (int i = 0; i < 50 && textfile_value(text, "bmc_hit_requests_total", Testbed::kServerIf2, "kernel") < 3; i++) {
        std::this_thread::sleep_for(50ms);
        text = read_file(prom);
    }
    EXPECT_EQ(textfile_value(text, "bmc_hit_requests_total", Testbed::kServerIf2, "kernel"), 3) << text.substr(0, 2000);
    EXPECT_EQ(textfile_value(text, "bmc_hit_requests_total", Testbed::kServerIf, "kernel"), 0);
    EXPECT_EQ(textfile_value(text, "bmc_get_requests_total", Testbed::kServerIf, "kernel"), 1);
    // AF_XDP: a poller per interface, the same cache.
    kill(s.bmcd, SIGUSR1);
    for (int i = 0; i < 50 && s.stats()["backend"] != "afxdp"; i++) std::this_thread::sleep_for(20ms);
    ASSERT_EQ(s.stats()["backend"], "afxdp");
    std::this_thread::sleep_for(15ms);
    ASSERT_EQ(on_a->request("get mk\r\n", true).text, item("mk", "second") + "END\r\n");
    const auto before_afxdp = tcp->stat("cmd_get");
    for (int i = 0; i < 3; i++) ASSERT_EQ(on_b.request("get mk\r\n", true).text, item("mk", "second") + "END\r\n");
    for (int i = 0; i < 3; i++) ASSERT_EQ(on_a->request("get mk\r\n", true).text, item("mk", "second") + "END\r\n");
    EXPECT_EQ(tcp->stat("cmd_get"), before_afxdp) << "the pollers of both interfaces answered";
    EXPECT_EQ(s.stats()["afxdp"]["rx_per_queue"].size(), 2u) << "one queue on each interface";
    s.stats();
    for (int i = 0; i < 50 && textfile_value(text, "bmc_hit_requests_total", Testbed::kServerIf2, "afxdp") < 3; i++) {
        std::this_thread::sleep_for(50ms);
        text = read_file(prom);
    }
    EXPECT_EQ(textfile_value(text, "bmc_hit_requests_total", Testbed::kServerIf2, "afxdp"), 3) << text.substr(0, 2000);
    EXPECT_EQ(textfile_value(text, "bmc_hit_requests_total", Testbed::kServerIf, "afxdp"), 3);
    ASSERT_EQ(s.tb->stop(s.bmcd, SIGTERM), 0);
    s.bmcd = -1;
    for (const char *dev : {Testbed::kServerIf, Testbed::kServerIf2})
        EXPECT_EQ(s.tb->run_in(s.tb->server_ns(), std::string("ip link show dev ") + dev).find("xdp"), std::string::npos)
            << dev << ": detached on exit";
}

// ---- every mutating command, over TCP and over UDP ---------------------------------------

struct MutationCase {
    std::string name;
    std::string initial;  // value stored and cached before the mutation
    // Performs the mutation on `key` through `via_udp` or TCP; returns memcached's reply.
    std::function<std::string(McTcp &, McUdp &, Server &, const std::string &key, bool via_udp)> apply;
};

// One test per transport and backend runs every write on one testbed (a testbed per
// write cost a second each).
class E2EMutation : public E2EBase, public ::testing::WithParamInterface<std::tuple<bool, std::string>> {
    std::string backend() const override { return std::get<1>(GetParam()); }
};

namespace {

std::string send_text(McTcp &tcp, McUdp &udp, bool via_udp, const std::string &cmd) {
    if (!via_udp) return tcp.call(cmd);
    return udp.request(cmd, false).text;
}

std::string send_binary(Server &s, McUdp &udp, bool via_udp, const Bytes &req) {
    if (via_udp) return udp.request_bytes(req, false).text;
    McTcp bin(s.tb->client_tcp_connect(11211));
    Bytes r = bin.binary(req);
    return std::string(r.begin(), r.end());
}

MutationCase text(const std::string &name, const std::string &initial, const std::string &fmt) {
    return {name, initial, [fmt](McTcp &t, McUdp &u, Server &, const std::string &key, bool via_udp) {
                std::string cmd = fmt;
                for (std::size_t p; (p = cmd.find("{k}")) != std::string::npos;) cmd.replace(p, 3, key);
                return send_text(t, u, via_udp, cmd);
            }};
}

// Every write of tests/writes.hpp, on an item holding a word (or, for arithmetic, a
// number), and two writes in one packet.
std::vector<MutationCase> mutation_cases() {
    std::vector<MutationCase> v;
    for (const WriteFixture &w : write_fixtures()) {
        v.push_back({w.name, w.effect == WriteFixture::Arithmetic ? "10" : "old",
                     [&w](McTcp &t, McUdp &u, Server &s, const std::string &key, bool via_udp) {
                         std::string cas;
                         if (w.needs_cas()) {
                             const std::string g = t.call("gets " + key + "\r\n");
                             cas = g.substr(0, g.find("\r\n"));
                             cas = cas.substr(cas.rfind(' ') + 1);
                         }
                         const std::string req = w.make(key, "new", cas);
                         return w.proto == WriteFixture::Binary ? send_binary(s, u, via_udp, bytes(req))
                                                                : send_text(t, u, via_udp, req);
                     }});
    }
    v.push_back(text("delete_and_add_in_one_packet", "old", "delete {k}\r\nadd {k} 0 0 3\r\nnew\r\n"));
    return v;
}

}  // namespace

TEST_P(E2EMutation, NextUdpGetSeesEveryMutation) {
    const bool via_udp = std::get<0>(GetParam());
    for (const MutationCase &c : mutation_cases()) {
        SCOPED_TRACE(c.name + (via_udp ? " over UDP" : " over TCP"));
        const std::string key = c.name + (via_udp ? "_u" : "_t");
        ASSERT_TRUE(warm(key, c.initial));
        std::string reply = c.apply(*tcp, *udp, *server, key, via_udp);
        const WriteFixture *w = write_fixture(c.name);
        const bool quiet = w && w->quiet;
        EXPECT_EQ(reply.empty(), quiet) << "memcached's reply: '" << reply << "'";
        std::string want = truth(key);
        auto r = udp->request("get " + key + "\r\n", true);
        EXPECT_TRUE(r.complete);
        EXPECT_EQ(r.text, want) << "after " << c.name << " replied " << reply;
        const bool changes_value = !w || w->effect != WriteFixture::Keeps;
        if (changes_value) {
            EXPECT_NE(want, item(key, c.initial) + "END\r\n") << "the mutation changed nothing: test is void";
        }
    }
}

INSTANTIATE_TEST_SUITE_P(EveryCommand, E2EMutation, ::testing::Combine(::testing::Bool(), ::testing::ValuesIn(kBackends)),
                         [](const auto &info) {
                             return std::string(std::get<0>(info.param) ? "udp_" : "tcp_") + std::get<1>(info.param);
                         });

// ---- lifecycle ---------------------------------------------------------------------------

class E2ELifecycle : public ::testing::TestWithParam<std::vector<std::string>> {
protected:
    void SetUp() override { BMC_REQUIRE_ROOT(); }
};

TEST_P(E2ELifecycle, ServesThenDetachesEverythingOnSigterm) {
    Server s("life", GetParam());
    auto tcp = s.tcp();
    auto udp = s.udp();
    ASSERT_EQ(tcp->call("set lk 0 0 2\r\nok\r\n"), "STORED\r\n");
    std::this_thread::sleep_for(15ms);
    for (int i = 0; i < 5; i++) udp->request("get lk\r\n", true);
    EXPECT_GT(s.cache_hits(), 0u);

    const std::string ns = s.tb->server_ns();
    EXPECT_NE(s.tb->run_in(ns, "ip link show dev bmcs0").find("xdp"), std::string::npos);
    EXPECT_EQ(s.tb->stop(s.bmcd, SIGTERM), 0);
    EXPECT_EQ(s.tb->run_in(ns, "ip link show dev bmcs0").find("xdp"), std::string::npos);
    std::string net = s.tb->run_in(ns, "bpftool net show dev bmcs0");
    EXPECT_EQ(net.find("bmc_"), std::string::npos) << net;
    EXPECT_EQ(s.tb->run_in(ns, "tc filter show dev bmcs0 egress"), "");
    EXPECT_EQ(s.tb->run_in(ns, "tc qdisc show dev bmcs0").find("clsact"), std::string::npos);
    std::string xsks = s.tb->run_in(ns, "ss -H -a --xdp");
    EXPECT_EQ(xsks, "") << "AF_XDP sockets left: " << xsks;
    // memcached answers on its own again
    auto r = udp->request("get lk\r\n", true);
    EXPECT_EQ(r.text, item("lk", "ok") + "END\r\n");
}

INSTANTIATE_TEST_SUITE_P(Modes, E2ELifecycle,
                         ::testing::Values(std::vector<std::string>{"--tc-attach", "tcx"},
                                           std::vector<std::string>{"--tc-attach", "netlink"},
                                           std::vector<std::string>{"--xdp-mode", "generic"},
                                           std::vector<std::string>{"--backend", "afxdp"},
                                           std::vector<std::string>{"--backend", "afxdp", "--busy-poll"}),
                         [](const auto &info) {
                             std::string name;
                             for (auto &a : info.param)
                                 for (char c : a)
                                     if (std::isalnum(static_cast<unsigned char>(c))) name += c;
                             return name;
                         });

TEST(E2ELifecycleErrors, ZeroCopyOnVethIsRefusedWithOneLine) {
    BMC_REQUIRE_ROOT();
    Testbed tb("zc");
    const std::string log = "/tmp/" + tb.server_ns() + ".log";
    pid_t p = tb.spawn(tb.server_ns(),
                       {BMC_BMCD_PATH, "--iface", Testbed::kServerIf, "--backend", "afxdp", "--zero-copy", "on"}, log);
    EXPECT_EQ(tb.stop(p, 0, 10.0), 1);
    std::string out = read_file(log);
    std::remove(log.c_str());
    EXPECT_NE(out.find("bmcd: zero-copy AF_XDP on bmcs0 queue 0: "), std::string::npos) << out;
    EXPECT_EQ(tb.run_in(tb.server_ns(), "ip link show dev bmcs0").find("xdp"), std::string::npos);
}

TEST(E2ESecurity, ClientsOutsideTheAllowlistAreLeftToMemcached) {
    BMC_REQUIRE_ROOT();
    for (std::string backend : kBackends) {
        Server s("allow", {"--backend", backend, "--allow", "203.0.113.0/24", "--allow", "2001:db8::/32"});
        auto tcp = s.tcp();
        auto udp = s.udp();
        ASSERT_EQ(tcp->call("set ak 0 0 2\r\nv1\r\n"), "STORED\r\n");
        std::this_thread::sleep_for(15ms);
        const auto before = tcp->stat("cmd_get");
        for (int i = 0; i < 5; i++) EXPECT_EQ(udp->request("get ak\r\n", true).text, item("ak", "v1") + "END\r\n");
        EXPECT_EQ(tcp->stat("cmd_get"), before + 5) << backend << ": memcached answered every get";
        EXPECT_EQ(s.cache_hits(), 0u) << backend;
    }
}

// memcached's -l: a get to a host address it is not bound to is the stack's (an ICMP
// error), even with the key cached and the cache answering the address beside it; the
// socket lookup's remembered answers are per destination.
TEST(E2ESecurity, AnAddressMemcachedDoesNotListenOnIsNeverAnsweredFromTheCache) {
    BMC_REQUIRE_ROOT();
    const std::string unbound = "2001:2::3";
    for (std::string backend : kBackends) {
        Server s("listen", {}, false);
        // Before bmcd starts: it reads the host's addresses once.
        sh("ip -n " + s.tb->server_ns() + " addr add " + unbound + "/64 dev " + Testbed::kServerIf + " nodad");
        s.start_bmcd({"--backend", backend});
        auto tcp = s.tcp();
        ASSERT_EQ(tcp->call("set lk 0 0 2\r\nv1\r\n"), "STORED\r\n");
        std::this_thread::sleep_for(15ms);
        McUdp bound(s.tb->client_udp_socket(AF_INET6), Testbed::kServerIp6, 11211);
        McUdp other(s.tb->client_udp_socket(AF_INET6), unbound.c_str(), 11211);
        ASSERT_EQ(bound.request("get lk\r\n", true).text, item("lk", "v1") + "END\r\n");  // the fill
        const auto hits = s.cache_hits();
        const auto no_socket = all_counters_of(s, "pass_no_memcached_socket");
        for (int i = 0; i < 4; i++) {
            EXPECT_EQ(bound.request("get lk\r\n", true).text, item("lk", "v1") + "END\r\n") << backend;
            EXPECT_EQ(other.request("get lk\r\n", true, 200).text, "") << backend << ": answered for " << unbound;
        }
        EXPECT_GE(s.cache_hits(), hits + 4) << backend << ": the cache answered the bound address";
        EXPECT_EQ(all_counters_of(s, "pass_no_memcached_socket"), no_socket + 4) << backend;
    }
}

TEST_P(E2E, DelayedFlushAllMakesEarlierEntriesUnservable) {
    ASSERT_TRUE(warm("df", "before"));
    ASSERT_EQ(tcp->call("flush_all 1\r\n"), "OK\r\n");
    EXPECT_EQ(udp->request("get df\r\n", true).text, truth("df"));  // memcached still has it
    std::this_thread::sleep_for(1100ms);
    EXPECT_EQ(truth("df"), "END\r\n");
    for (int i = 0; i < 3; i++) EXPECT_EQ(udp->request("get df\r\n", true).text, "END\r\n");
}

TEST(E2EFaults, NoValueFromBeforeAMemcachedRestartIsServed) {
    BMC_REQUIRE_ROOT();
    for (std::string backend : kBackends) {
        Server s("restart", {"--backend", backend});
        {
            auto tcp = s.tcp();
            auto udp = s.udp();
            ASSERT_EQ(tcp->call("set rk 0 0 3\r\nold\r\n"), "STORED\r\n");
            std::this_thread::sleep_for(15ms);
            for (int i = 0; i < 3; i++) udp->request("get rk\r\n", true);
            ASSERT_GT(s.cache_hits(), 0u) << backend << ": the value was not cached; the test would be void";
        }
        s.tb->stop(s.memcached, SIGTERM);
        s.start_memcached("memcached2.log");
        auto tcp = s.tcp();
        ASSERT_TRUE(tcp->ok());
        auto udp = s.udp();
        for (int i = 0; i < 5; i++) EXPECT_EQ(udp->request("get rk\r\n", true).text, "END\r\n") << backend;
        // Seen in the kernel (memcached's sockets released and bound again), and by bmcd.
        EXPECT_GE(s.stats()["counters"]["inval_memcached_restart"].get<std::uint64_t>(), 2u) << backend;
        EXPECT_NE(read_file(s.log_path).find("cache flushed"), std::string::npos) << read_file(s.log_path);
    }
}

TEST(E2EFaults, SigkillLeavesNothingAttachedAndMemcachedAnswers) {
    BMC_REQUIRE_ROOT();
    for (std::string backend : kBackends) {
        Server s("kill9", {"--backend", backend});
        auto tcp = s.tcp();
        auto udp = s.udp();
        ASSERT_EQ(tcp->call("set kk 0 0 2\r\nok\r\n"), "STORED\r\n");
        std::this_thread::sleep_for(15ms);
        for (int i = 0; i < 3; i++) udp->request("get kk\r\n", true);
        EXPECT_EQ(s.tb->stop(s.bmcd, SIGKILL), 128 + SIGKILL);
        const std::string ns = s.tb->server_ns();
        // Link teardown is asynchronous.
        EXPECT_TRUE(eventually([&] { return s.tb->run_in(ns, "ip link show dev bmcs0").find("xdp") == std::string::npos; }))
            << backend;
        EXPECT_EQ(s.tb->run_in(ns, "bpftool net show dev bmcs0").find("bmc_"), std::string::npos) << backend;
        EXPECT_EQ(s.tb->run_in(ns, "ss -H -a --xdp"), "") << backend;
        const auto before = tcp->stat("cmd_get");
        EXPECT_EQ(udp->request("get kk\r\n", true).text, item("kk", "ok") + "END\r\n");
        EXPECT_EQ(tcp->stat("cmd_get"), before + 1) << backend << ": memcached answered";
    }
}

// The randomized checker (tests/tools/bmc_check.cpp): every mutating command, over TCP and UDP,
// against single- and multi-key UDP gets on a hot key set; no stale or unwritten value.
// The randomized checker (tests/tools/bmc_check.cpp): every mutating command, over TCP and UDP,
// pipelined, split in two with a gap, over loopback on the server, against single- and
// multi-key UDP gets on a hot key set; no stale or unwritten value. Then again over a link
// that loses 2 % of the TCP segments, for a bounded time.
namespace {
nlohmann::json run_check(Server &s, const std::string &args) {
    const std::string out = s.tb->run_in(
        s.tb->client_ns(), std::string(BMC_CHECK_PATH) + " --keys 16 --write-pause-us 3000 --pipeline 8 --split " +
                               "--loopback-netns /var/run/netns/" + s.tb->server_ns() + " " + args);
    const auto start = out.find("{\"");
    if (start == std::string::npos) throw std::runtime_error("bmc-check: " + out);
    return nlohmann::json::parse(out.substr(start));
}
}  // namespace

TEST_P(E2E, ConsistencyCheckerFindsNoStaleOrUnwrittenValue) {
    const auto hits_before = server->cache_hits();
    nlohmann::json j;
    ASSERT_NO_THROW(j = run_check(*server, "--ops 50000 --max-seconds 240"));
    std::printf("consistency (%s): %s\n", GetParam().c_str(), j.dump().c_str());
    EXPECT_GE(j["operations"].get<std::uint64_t>(), 50000u);
    EXPECT_EQ(j["violations"].get<std::uint64_t>(), 0u) << j["examples"].dump();
    EXPECT_GT(j["key_reads_checked"].get<std::uint64_t>(), 50000u);
    // Every write of tests/writes.hpp ran, and every way of sending one.
    std::map<std::string, std::uint64_t> ran, how;
    for (auto &[name, n] : j["writes_by_command"].items()) {
        const auto cut = name.rfind('_');
        const std::string way = cut == std::string::npos ? "" : name.substr(cut + 1);
        const bool suffixed = way == "udp" || way == "split" || way == "loopback";
        ran[suffixed ? name.substr(0, cut) : name] += n.get<std::uint64_t>();
        how[suffixed ? way : "tcp"] += n.get<std::uint64_t>();
    }
    for (const WriteFixture &w : write_fixtures()) EXPECT_GT(ran[w.name], 0u) << w.name << " never ran";
    for (auto way : {"pipelined", "tcp", "udp", "split", "loopback"})
        EXPECT_GT(way == std::string("pipelined") ? ran["pipelined"] : how[way], 0u) << way << " never ran";
    const auto served = server->cache_hits() - hits_before;
    std::printf("consistency (%s): %llu gets answered by the cache\n", GetParam().c_str(), (unsigned long long)served);
    EXPECT_GT(served, 500u) << "the cache answered too little for the check to mean much";
}

TEST_P(E2E, ConsistencyCheckerOverALossyLinkFindsNothingStale) {
    const std::string sns = server->tb->server_ns();
    server->tb->run_in(sns, "tc qdisc add dev bmcs0 clsact");
    ASSERT_EQ(server->tb->run_in(sns, "tc filter add dev bmcs0 ingress bpf da obj " BMC_LOSSY_OBJ " sec tc"), "");
    nlohmann::json j;
    EXPECT_NO_THROW(j = run_check(*server, "--ops 50000 --max-seconds 12 --seed 7"));
    server->tb->run_in(sns, "tc filter del dev bmcs0 ingress");
    std::printf("consistency, lossy (%s): %s\n", GetParam().c_str(), j.dump().c_str());
    EXPECT_EQ(j["violations"].get<std::uint64_t>(), 0u) << j["examples"].dump();
    EXPECT_GT(j["key_reads_checked"].get<std::uint64_t>(), 2000u);
}

TEST(E2EFaults, PinnedDeploymentOutlivesBmcdIsAdoptedAndDetached) {
    BMC_REQUIRE_ROOT();
    const std::string fs = "/tmp/bmct-bpffs-" + std::to_string(getpid());
    sh("mkdir -p " + fs + " && mount -t bpf bpf " + fs);
    const std::string dir = fs + "/bmc";
    {
        Server s("pin", {"--pin", "--pin-dir", dir});
        auto tcp = s.tcp();
        auto udp = s.udp();
        ASSERT_EQ(tcp->call("set pk 0 0 4\r\nkept\r\n"), "STORED\r\n");
        std::this_thread::sleep_for(15ms);
        for (int i = 0; i < 3; i++) udp->request("get pk\r\n", true);
        ASSERT_EQ(s.tb->stop(s.bmcd, SIGTERM), 0);
        s.bmcd = -1;
        // Still attached, still answering from the cache with bmcd gone.
        const std::string ns = s.tb->server_ns();
        EXPECT_NE(s.tb->run_in(ns, "ip link show dev bmcs0").find("xdp"), std::string::npos);
        auto before = tcp->stat("cmd_get");
        for (int i = 0; i < 5; i++) EXPECT_EQ(udp->request("get pk\r\n", true).text, item("pk", "kept") + "END\r\n");
        EXPECT_EQ(tcp->stat("cmd_get"), before) << "the pinned programs answered";
        // A plain bmcd refuses to start over it, clearly.
        pid_t plain = s.tb->spawn(ns, {BMC_BMCD_PATH, "--iface", Testbed::kServerIf, "--pin-dir", dir}, s.dir + "/plain.log");
        EXPECT_EQ(s.tb->stop(plain, 0, 10), 1);
        EXPECT_NE(read_file(s.dir + "/plain.log").find("pinned"), std::string::npos);
        // A new bmcd --pin adopts it: the cache is still warm.
        s.start_bmcd({"--pin", "--pin-dir", dir});
        EXPECT_NE(read_file(s.log_path).find("adopted"), std::string::npos) << read_file(s.log_path);
        before = tcp->stat("cmd_get");
        for (int i = 0; i < 5; i++) EXPECT_EQ(udp->request("get pk\r\n", true).text, item("pk", "kept") + "END\r\n");
        EXPECT_EQ(tcp->stat("cmd_get"), before);
        EXPECT_GE(s.stats()["counters"]["hit_requests"].get<std::uint64_t>(), 10u);  // kept counters too
        ASSERT_EQ(s.tb->stop(s.bmcd, SIGTERM), 0);
        s.bmcd = -1;
        // --detach removes it; memcached answers again.
        pid_t det = s.tb->spawn(ns, {BMC_BMCD_PATH, "--iface", Testbed::kServerIf, "--detach", "--pin-dir", dir},
                                s.dir + "/detach.log");
        EXPECT_EQ(s.tb->stop(det, 0, 10), 0) << read_file(s.dir + "/detach.log");
        EXPECT_TRUE(eventually([&] { return s.tb->run_in(ns, "ip link show dev bmcs0").find("xdp") == std::string::npos; }));
        EXPECT_EQ(s.tb->run_in(ns, "bpftool net show dev bmcs0").find("bmc_"), std::string::npos);
        before = tcp->stat("cmd_get");
        EXPECT_EQ(udp->request("get pk\r\n", true).text, item("pk", "kept") + "END\r\n");
        EXPECT_EQ(tcp->stat("cmd_get"), before + 1);
    }
    sh("umount " + fs + " && rmdir " + fs);
}

TEST(E2EFaults, MissingMemcachedAndInterfaceDownAreReportedNotFatal) {
    BMC_REQUIRE_ROOT();
    for (std::string backend : kBackends) {
        Server s("down", {"--backend", backend});
        // memcached goes away: bmcd says so and keeps running. (First, bmcd's watch has
        // connected: it starts on its own thread once bmcd is up.)
        for (int i = 0; i < 500 && read_file(s.log_path).find("watching memcached") == std::string::npos; i++)
            std::this_thread::sleep_for(10ms);
        ASSERT_NE(read_file(s.log_path).find("watching memcached"), std::string::npos) << read_file(s.log_path);
        s.tb->stop(s.memcached, SIGTERM);
        for (int i = 0; i < 500 && read_file(s.log_path).find("lost memcached") == std::string::npos; i++)
            std::this_thread::sleep_for(10ms);
        EXPECT_TRUE(s.tb->alive(s.bmcd)) << backend;
        EXPECT_NE(read_file(s.log_path).find("lost memcached"), std::string::npos) << read_file(s.log_path);
        s.start_memcached("memcached2.log");
        auto tcp = s.tcp();
        ASSERT_TRUE(tcp->ok());
        ASSERT_EQ(tcp->call("set dk 0 0 2\r\nup\r\n"), "STORED\r\n");
        // The interface goes down under load and comes back: no crash, service resumes.
        const std::string ns = s.tb->server_ns();
        std::atomic<bool> done{false};
        std::thread load([&] {
            auto udp = s.udp();
            for (int i = 0; i < 100000 && !done; i++) udp->request("get dk\r\n", true, 50);
        });
        std::this_thread::sleep_for(200ms);
        s.tb->run_in(ns, "ip link set dev bmcs0 down");
        std::this_thread::sleep_for(300ms);
        s.tb->run_in(ns, "ip link set dev bmcs0 up");
        std::this_thread::sleep_for(300ms);
        done = true;
        load.join();
        EXPECT_TRUE(s.tb->alive(s.bmcd)) << backend << ": " << read_file(s.log_path);
        auto udp = s.udp();
        std::string got;
        for (int i = 0; i < 50 && got != item("dk", "up") + "END\r\n"; i++) {
            got = udp->request("get dk\r\n", true, 200).text;
            std::this_thread::sleep_for(20ms);
        }
        EXPECT_EQ(got, item("dk", "up") + "END\r\n") << backend;
        // The cache serves again (give fills the guard time a loaded machine may need).
        const auto hits = s.cache_hits();
        for (int i = 0; i < 50; i++) {
            udp->request("get dk\r\n", true);
            std::this_thread::sleep_for(20ms);
        }
        EXPECT_GT(s.cache_hits(), hits) << backend << ": the cache does not serve again";
        EXPECT_EQ(s.tb->stop(s.bmcd, SIGTERM), 0) << backend;
    }
}

// ---- the two backends against each other ------------------------------------------------

TEST(E2EBackends, SameRequestsGiveIdenticalReplies) {
    BMC_REQUIRE_ROOT();
    std::vector<std::string> replies[2];
    std::uint64_t hits[2];
    for (int b = 0; b < 2; b++) {
        Server s("ident", {"--backend", kBackends[b]});
        auto tcp = s.tcp();
        auto udp = s.udp();
        for (int k = 0; k < 10; k++) {
            std::string v(std::size_t(1 + k * 13), char('a' + k));  // small: XDP on veth has room for them
            ASSERT_EQ(tcp->call("set k" + std::to_string(k) + " " + std::to_string(k * 3) + " 0 " +
                                std::to_string(v.size()) + "\r\n" + v + "\r\n"),
                      "STORED\r\n");
        }
        std::this_thread::sleep_for(15ms);  // past the fill guard
        const std::vector<std::string> requests = {"get k0 k1 k2", "get k3", "get nope", "gets k1",
                                                   "get k4 k5", "get k6 k7 k8 k9", "get k9 nope"};
        for (int round = 0; round < 3; round++) {
            for (int k = 0; k < 10; k++) replies[b].push_back(udp->request("get k" + std::to_string(k) + "\r\n", true).text);
            for (auto &r : requests) replies[b].push_back(udp->request(r + "\r\n", true).text);
        }
        hits[b] = s.cache_hits();
    }
    ASSERT_EQ(replies[0].size(), replies[1].size());
    for (std::size_t i = 0; i < replies[0].size(); i++) EXPECT_EQ(replies[0][i], replies[1][i]) << "request " << i;
    EXPECT_GT(hits[0], 20u);  // both runs were mostly answered by the cache
    EXPECT_GT(hits[1], 20u);
}

TEST(E2EBackends, SwitchingUnderLoadServesNoStaleOrWrongValues) {
    BMC_REQUIRE_ROOT();
    Server s("switch");
    auto tcp = s.tcp();
    const int kKeys = 40;
    auto value_of = [](int k) { return "value-of-key-" + std::to_string(k * 7919); };
    for (int k = 0; k < kKeys; k++)
        ASSERT_EQ(tcp->call("set s" + std::to_string(k) + " 0 0 " + std::to_string(value_of(k).size()) + "\r\n" +
                            value_of(k) + "\r\n"),
                  "STORED\r\n");
    ASSERT_EQ(tcp->call("set w 0 0 8\r\n00000000\r\n"), "STORED\r\n");

    std::atomic<bool> done{false};
    std::atomic<int> acked{0}, written{0};
    std::atomic<std::uint64_t> ok{0}, lost{0}, wrong{0}, stale{0};
    // Writer: versions of key w over TCP; `acked` is the newest memcached confirmed.
    std::thread writer([&] {
        auto t = s.tcp();
        for (int v = 1; v <= 100000 && !done; v++) {
            char buf[16];
            std::snprintf(buf, sizeof buf, "%08d", v);
            written = v;
            if (t->call(std::string("set w 0 0 8\r\n") + buf + "\r\n") != "STORED\r\n") break;
            acked = v;
            std::this_thread::sleep_for(3ms);
        }
    });
    auto reader = [&](int seed) {
        auto u = s.udp();
        std::uint32_t x = std::uint32_t(seed);
        auto deadline = std::chrono::steady_clock::now() + 8s;
        for (int i = 0; i < 200000 && !done && std::chrono::steady_clock::now() < deadline; i++) {
            x = x * 1103515245 + 12345;
            const bool versioned = (x >> 16) % 5 == 0;
            const int k = int((x >> 8) % kKeys);
            const int floor = acked;
            auto r = u->request(versioned ? "get w\r\n" : "get s" + std::to_string(k) + "\r\n", true, 300);
            if (!r.complete) {
                lost++;
                continue;
            }
            if (!versioned) {
                (r.text == item("s" + std::to_string(k), value_of(k)) + "END\r\n" ? ok : wrong)++;
                continue;
            }
            int v = r.text.size() > 19 ? std::atoi(r.text.substr(r.text.find("\r\n") + 2, 8).c_str()) : -1;
            if (v < 0 || v > written) wrong++;
            else if (v < floor) stale++;
            else ok++;
        }
    };
    std::thread r1(reader, 1), r2(reader, 2);
    const int kSwitches = 10;
    for (int i = 0; i < kSwitches; i++) {
        std::this_thread::sleep_for(250ms);
        kill(s.bmcd, i % 2 == 0 ? SIGUSR1 : SIGUSR2);
    }
    done = true;
    r1.join();
    r2.join();
    writer.join();
    auto j = s.stats();
    const std::uint64_t xdp = j["counters"]["hit_requests"], afxdp = j["afxdp"]["counters"]["hit_requests"];
    std::printf("switch under load: %d switches, %llu correct, %llu lost (in flight at a switch), %llu stale, "
                "%llu wrong; answered by xdp %llu, by afxdp %llu\n",
                kSwitches, (unsigned long long)ok.load(), (unsigned long long)lost.load(),
                (unsigned long long)stale.load(), (unsigned long long)wrong.load(), (unsigned long long)xdp,
                (unsigned long long)afxdp);
    EXPECT_EQ(wrong, 0u);
    EXPECT_EQ(stale, 0u);
    EXPECT_LE(lost, std::uint64_t(kSwitches * 2));  // at most the two readers' in-flight requests
    EXPECT_GT(ok, 1000u);
    EXPECT_GT(xdp, 100u);  // both paths served during the run
    EXPECT_GT(afxdp, 100u);
}

// ---- writes as memcached reads them (the socket-level observer) ---------------------------
// Each case hides a write from a reader of the wire; memcached applies it, and the cache
// must not serve the old value afterwards.

namespace {

std::string with_nul(const std::string &a, const std::string &b) { return a + std::string(1, '\0') + b; }

// The UDP get's answer equals memcached's own (TCP) answer, read just before or after.
::testing::AssertionResult fresh(E2EBase &, McUdp &udp, McTcp &tcp, const std::string &key) {
    const std::string before = tcp.call("get " + key + "\r\n");
    auto r = udp.request("get " + key + "\r\n", true);
    const std::string after = tcp.call("get " + key + "\r\n");
    if (r.text == before || r.text == after) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "cache said '" << r.text << "', memcached '" << after << "'";
}

}  // namespace

TEST_P(E2E, NulEndsACommandLineAsInMemcached) {
    for (const std::string &cmd : {with_nul("delete nk", "\r\n"), with_nul("md nk", " q\r\n"),
                                  with_nul("flush_all", " 99\r\n")}) {
        ASSERT_TRUE(warm("nk", "old"));
        tcp->call(cmd);
        EXPECT_EQ(truth("nk"), "END\r\n") << "memcached kept the value: the case proves nothing";
        EXPECT_TRUE(fresh(*this, *udp, *tcp, "nk"));
    }
}

TEST_P(E2E, CommandsRightAfterADataBlockAreSeen) {
    // memcached reads 1 + 2 bytes of data ("aXX", a bad data chunk), then runs the delete:
    // a line reader sees one line "aXXdelete dk".
    ASSERT_TRUE(warm("dk", "old"));
    EXPECT_EQ(tcp->call("set x 0 0 1\r\naXXdelete dk\r\n"), "CLIENT_ERROR bad data chunk\r\nDELETED\r\n");
    EXPECT_TRUE(fresh(*this, *udp, *tcp, "dk"));
    // A swallowed item (too large for memcached) is data to the last byte, then commands.
    ASSERT_TRUE(warm("dk", "old"));
    std::string big = "set big 0 0 2000000\r\n" + std::string(2000000, 'x') + "\r\ndelete dk\r\n";
    const std::string r = tcp->call(big);
    EXPECT_NE(r.find("SERVER_ERROR object too large"), std::string::npos) << r;
    EXPECT_NE(r.find("DELETED"), std::string::npos) << r;
    EXPECT_TRUE(fresh(*this, *udp, *tcp, "dk"));
}

TEST_P(E2E, ASetTooLargeDropsTheOldValueBeforeItsDataArrives) {
    ASSERT_TRUE(warm("tl", "old"));
    auto w = server->tcp();
    ASSERT_TRUE(w->send_raw("set tl 0 0 2000000\r\n" + std::string(1000, 'x')));
    // memcached unlinks the old item when it reads the line.
    EXPECT_TRUE(eventually([&] { return truth("tl") == "END\r\n"; }));
    EXPECT_TRUE(fresh(*this, *udp, *tcp, "tl"));
    ASSERT_TRUE(w->send_raw(std::string(2000000 - 1000, 'x') + "\r\n"));
    EXPECT_NE(w->call("").find("SERVER_ERROR"), std::string::npos);
}

TEST_P(E2E, BinaryMagicMidConnectionIsStillText) {
    ASSERT_TRUE(warm("bm", "old"));
    EXPECT_EQ(tcp->call(std::string(1, char(0x80)) + "junk\r\ndelete bm\r\n"), "ERROR\r\nDELETED\r\n");
    EXPECT_TRUE(fresh(*this, *udp, *tcp, "bm"));
}

TEST_P(E2E, WritesSplitAtEveryByteWithGapsLongerThanTheFillGuard) {
    struct W {
        std::string initial, write;
    };
    const W writes[] = {{"old", "set sk 0 0 3\r\nnew\r\n"}, {"old", "ms sk 3\r\nnew\r\n"},
                        {"old", "delete sk\r\n"},         {"10", "incr sk 5\r\n"},
                        {"old", "flush_all\r\n"}};
    int stale = 0, checked = 0;
    for (const auto &w : writes) {
        for (std::size_t at = 1; at < w.write.size(); at++) {
            ASSERT_TRUE(warm("sk", w.initial));
            auto c = server->tcp();
            ASSERT_TRUE(c->send_raw(w.write.substr(0, at)));
            // Gets in the gap, past the fill guard: memcached still has the old value, and
            // misses may fill the cache with it.
            for (int i = 0; i < 2; i++) {
                std::this_thread::sleep_for(12ms);
                udp->request("get sk\r\n", true);
            }
            ASSERT_TRUE(c->send_raw(w.write.substr(at)));
            c->call("");  // memcached has answered the write
            checked++;
            if (!fresh(*this, *udp, *tcp, "sk")) {
                stale++;
                ADD_FAILURE() << "stale after '" << w.write.substr(0, at) << "' | '" << w.write.substr(at) << "'";
            }
        }
    }
    EXPECT_EQ(stale, 0);
    EXPECT_GT(checked, 50);
}

TEST_P(E2E, WritesOverLoopbackOnTheServerHost) {
    ASSERT_TRUE(warm("lo", "old"));
    McTcp local(server->tb->tcp_connect_in(server->tb->server_ns(), "127.0.0.1", 11211));
    ASSERT_TRUE(local.ok());
    EXPECT_EQ(local.call("set lo 0 0 3\r\nnew\r\n"), "STORED\r\n");
    EXPECT_TRUE(fresh(*this, *udp, *tcp, "lo"));
    EXPECT_EQ(truth("lo"), item("lo", "new") + "END\r\n");
}

TEST_P(E2E, UdpWritesInIpFragmentsAreSeen) {
    ASSERT_TRUE(warm("fr", "old"));
    // 3,000 bytes: the sender fragments it; the delete is in the last fragment.
    const std::string pad(2900, 'p');
    auto r = udp->request("set pad 0 0 2900\r\n" + pad + "\r\ndelete fr\r\n", false);
    EXPECT_EQ(r.text, "STORED\r\n");  // memcached answers each command in its own datagram
    EXPECT_EQ(truth("fr"), "END\r\n") << "memcached ran the delete: the case means something";
    EXPECT_TRUE(fresh(*this, *udp, *tcp, "fr"));
}

TEST_P(E2E, Ipv6GetsAreAnsweredAndWritesBehindExtensionHeadersSeen) {
    McUdp udp6(server->tb->client_udp_socket(AF_INET6), Testbed::kServerIp6, 11211);
    ASSERT_TRUE(warm("v6", "old"));
    const auto hits = server->cache_hits();
    for (int i = 0; i < 5; i++) EXPECT_EQ(udp6.request("get v6\r\n", true).text, item("v6", "old") + "END\r\n");
    EXPECT_GE(server->cache_hits(), hits + 5) << "gets over IPv6 are answered by the cache";
    // A writer whose datagrams carry hop-by-hop and destination options, and a fragment
    // header (larger than the MTU).
    int fd = server->tb->client_udp_socket(AF_INET6);
    const std::uint8_t padn[8] = {0, 0, 1, 4, 0, 0, 0, 0};
    ASSERT_EQ(setsockopt(fd, IPPROTO_IPV6, IPV6_HOPOPTS, padn, sizeof padn), 0) << std::strerror(errno);
    ASSERT_EQ(setsockopt(fd, IPPROTO_IPV6, IPV6_DSTOPTS, padn, sizeof padn), 0) << std::strerror(errno);
    McUdp writer(fd, Testbed::kServerIp6, 11211);
    auto r = writer.request("set pad 0 0 2000\r\n" + std::string(2000, 'p') + "\r\ndelete v6\r\n", false);
    EXPECT_EQ(r.text, "STORED\r\n");
    EXPECT_EQ(truth("v6"), "END\r\n");
    EXPECT_TRUE(fresh(*this, udp6, *tcp, "v6"));
}

TEST_P(E2E, UdpWritesLargerThanTheScanWindowAreSeen) {
    // veth allows 3,500 bytes with the XDP programs attached: one 3,300-byte datagram.
    const std::string ns = server->tb->server_ns(), cns = server->tb->client_ns();
    ASSERT_EQ(server->tb->run_in(ns, "ip link set dev bmcs0 mtu 3500"), "");
    ASSERT_EQ(server->tb->run_in(cns, "ip link set dev bmcc0 mtu 3500"), "");
    ASSERT_TRUE(warm("jw", "old"));
    auto r = udp->request("set pad 0 0 3200\r\n" + std::string(3200, 'p') + "\r\ndelete jw\r\n", false);
    EXPECT_EQ(r.text, "STORED\r\n");
    EXPECT_EQ(truth("jw"), "END\r\n");
    EXPECT_TRUE(fresh(*this, *udp, *tcp, "jw"));
    server->tb->run_in(cns, "ip link set dev bmcc0 mtu 1500");
    server->tb->run_in(ns, "ip link set dev bmcs0 mtu 1500");
}

TEST_P(E2E, DelayedFlushNeverServesWhatMemcachedDropped) {
    ASSERT_TRUE(warm("df2", "before"));
    const auto served_before = server->cache_hits();
    ASSERT_EQ(tcp->call("flush_all 4\r\n"), "OK\r\n");
    int violations = 0, checks = 0;
    const auto end = std::chrono::steady_clock::now() + 5500ms;
    while (std::chrono::steady_clock::now() < end) {
        checks++;
        if (!fresh(*this, *udp, *tcp, "df2")) violations++;
        std::this_thread::sleep_for(20ms);
    }
    EXPECT_EQ(truth("df2"), "END\r\n") << "memcached applied the flush";
    EXPECT_EQ(violations, 0) << checks << " checks";
    EXPECT_GT(server->cache_hits(), served_before) << "the cache served until its deadline";
}

TEST_P(E2E, MultiGetRepliesLargerThanMemcachedsDatagramGoToMemcached) {
    // Each item is cached (AF_XDP answers them; XDP on veth lacks the room to grow a frame
    // that much), the four together exceed memcached's 1,400-byte datagram.
    const std::string v(330, 'm');
    for (auto k : {"m1", "m2", "m3", "m4"})
        ASSERT_EQ(tcp->call(std::string("set ") + k + " 0 0 330\r\n" + v + "\r\n"), "STORED\r\n");
    std::this_thread::sleep_for(15ms);  // past the fill guard
    for (auto k : {"m1", "m2", "m3", "m4"})
        udp->request(std::string("get ") + k + "\r\n", true);  // a miss leases; memcached's reply fills
    std::this_thread::sleep_for(5ms);
    const auto hits = server->cache_hits();
    const auto too_big = all_counters_of(*server, "pass_reply_too_big");
    auto r = udp->request("get m1 m2 m3 m4\r\n", true);
    EXPECT_TRUE(r.complete);
    EXPECT_EQ(r.text, item("m1", v) + item("m2", v) + item("m3", v) + item("m4", v) + "END\r\n");
    EXPECT_LE(r.largest, 1400) << "memcached's UDP_MAX_PAYLOAD_SIZE";
    EXPECT_EQ(server->cache_hits(), hits);
    EXPECT_EQ(all_counters_of(*server, "pass_reply_too_big"), too_big + 1) << "left to memcached for its size";
}

TEST_P(E2E, ABurstOfWideMultiGetsIsAnsweredWhole) {
    // memcached answers a get of 30 keys with 31 datagrams (one per item, then END): 64
    // such gets at once make about 2,000 datagrams, more than a default socket buffer
    // holds. None of them may be lost on bmc's side (on AF_XDP, every one goes through the
    // relay), or a client takes the missing items for misses.
    constexpr int kKeys = 30, kGets = 64;
    std::string get = "get", want;
    for (int k = 0; k < kKeys; k++) {
        const std::string key = "wide" + std::to_string(k), value = std::string(32, char('a' + k % 26));
        ASSERT_EQ(tcp->call("set " + key + " 0 0 32\r\n" + value + "\r\n"), "STORED\r\n");
        get += " " + key;
        want += item(key, value);
    }
    get += "\r\n";
    want += "END\r\n";
    const int fd = server->tb->client_udp_socket();
    ASSERT_GE(fd, 0);
    const int rcvbuf = 16 << 20;
    ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf), 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(11211);
    inet_pton(AF_INET, Testbed::kServerIp, &to.sin_addr);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr *>(&to), sizeof to), 0);
    const auto dropped_before = server->stats().value("afxdp", nlohmann::json::object()).value("relay_dropped", 0ull);
    for (int i = 0; i < kGets; i++) {
        std::string d = {char(0x10), char(i), 0, 0, 0, 1, 0, 0};
        d += get;
        ASSERT_EQ(send(fd, d.data(), d.size(), 0), ssize_t(d.size()));
    }
    std::map<int, std::string> replies;
    int ended = 0;
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    std::vector<char> buf(65536);
    while (ended < kGets && std::chrono::steady_clock::now() < deadline) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) continue;
        const ssize_t n = recv(fd, buf.data(), buf.size(), 0);
        if (n < 8 || std::uint8_t(buf[0]) != 0x10) continue;
        std::string &r = replies[std::uint8_t(buf[1])];
        r.append(buf.data() + 8, std::size_t(n - 8));
        if (r.size() >= 5 && r.compare(r.size() - 5, 5, "END\r\n") == 0) ended++;
    }
    close(fd);
    EXPECT_EQ(ended, kGets);
    int whole = 0;
    for (auto &[id, text] : replies) whole += text == want;
    EXPECT_EQ(whole, kGets) << "replies with every item";
    if (GetParam() == "afxdp") {
        EXPECT_EQ(server->stats()["afxdp"]["relay_dropped"].get<std::uint64_t>(), dropped_before);
    }
}

TEST_P(E2E, TcpLossWithAPipeliningWriterServesNothingStale) {
    // Lost on the way in at the server (a sender's own egress drop is no loss to TCP: it
    // just sends again).
    const std::string cns = server->tb->client_ns(), sns = server->tb->server_ns();
    server->tb->run_in(sns, "tc qdisc add dev bmcs0 clsact");
    ASSERT_EQ(server->tb->run_in(sns, "tc filter add dev bmcs0 ingress bpf da obj " BMC_LOSSY_OBJ " sec tc"), "");
    ASSERT_TRUE(warm("lw", "00000000"));
    auto retransmits = [&] {
        std::string out = server->tb->run_in(cns, "nstat -az TcpRetransSegs");
        auto pos = out.find("TcpRetransSegs");
        return pos == std::string::npos ? -1L : std::atol(out.c_str() + pos + 14);
    };
    const long retrans_before = retransmits();
    std::atomic<bool> done{false};
    std::atomic<int> acked{0}, written{0}, batches{0};
    std::thread writer([&] {
        auto t = server->tcp();
        for (int v = 1; v < 2000000 && !done; v += 40) {
            std::string batch;
            for (int i = 0; i < 40; i++) {
                char buf[16];
                std::snprintf(buf, sizeof buf, "%08d", v + i);
                batch += std::string("set lw 0 0 8\r\n") + buf + "\r\n";
            }
            written = v + 39;
            if (t->call(batch).find("ERROR") != std::string::npos) break;
            acked = v + 39;
            batches++;
        }
    });
    std::uint64_t stale = 0, ok = 0, lost = 0;
    const auto end = std::chrono::steady_clock::now() + 4s;
    auto u = server->udp();
    for (int i = 0; i < 400000 && std::chrono::steady_clock::now() < end; i++) {
        const int floor = acked;
        auto r = u->request("get lw\r\n", true, 300);
        if (!r.complete) {
            lost++;
            continue;
        }
        const int v = r.text.size() > 19 ? std::atoi(r.text.substr(r.text.find("\r\n") + 2, 8).c_str()) : -1;
        if (v < floor) stale++;
        else ok++;
    }
    done = true;
    writer.join();
    const long retrans = retransmits() - retrans_before;
    server->tb->run_in(sns, "tc filter del dev bmcs0 ingress");
    std::printf("lossy link: %d batches of 40 sets, %ld retransmitted segments, %llu reads fresh, %llu stale, "
                "%llu timed out\n", batches.load(), retrans, (unsigned long long)ok, (unsigned long long)stale,
                (unsigned long long)lost);
    EXPECT_GT(retrans, 5) << "the link lost nothing: the test proves nothing";
    EXPECT_EQ(stale, 0u);
    EXPECT_GT(batches, 20);
    EXPECT_GT(ok, 1000u);
}

namespace {

// Raw frames from the client namespace, onto its veth.
struct RawClient {
    int fd = -1, ifindex = 0;
    std::array<std::uint8_t, 6> server_mac{}, client_mac{};

    explicit RawClient(Testbed &tb) {
        auto mac_of = [&](const std::string &ns, const std::string &dev) {
            std::string out = tb.run_in(ns, "cat /sys/class/net/" + dev + "/address");
            std::array<std::uint8_t, 6> m{};
            unsigned v[6];
            if (std::sscanf(out.c_str(), "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) == 6)
                for (int i = 0; i < 6; i++) m[i] = std::uint8_t(v[i]);
            return m;
        };
        server_mac = mac_of(tb.server_ns(), Testbed::kServerIf);
        client_mac = mac_of(tb.client_ns(), Testbed::kClientIf);
        ifindex = std::atoi(tb.run_in(tb.client_ns(), std::string("cat /sys/class/net/") + Testbed::kClientIf + "/ifindex").c_str());
        fd = tb.socket_in(tb.client_ns(), AF_PACKET, SOCK_RAW);
    }
    ~RawClient() {
        if (fd >= 0) close(fd);
    }
    // Frames from the packet builder get the testbed's MACs first.
    Bytes addressed(Bytes f) const {
        std::copy(server_mac.begin(), server_mac.end(), f.begin());
        std::copy(client_mac.begin(), client_mac.end(), f.begin() + 6);
        return f;
    }
    bool send(const Bytes &f) const {
        sockaddr_ll a{};
        a.sll_family = AF_PACKET;
        a.sll_ifindex = ifindex;
        a.sll_halen = 6;
        return sendto(fd, f.data(), f.size(), 0, reinterpret_cast<const sockaddr *>(&a), sizeof a) == ssize_t(f.size());
    }
};

void fix_ipv4_checksum(Bytes &f) {
    const std::size_t ihl = (f[14] & 0xf) * 4u;
    f[24] = f[25] = 0;
    std::uint16_t c = bmc::ipv4_header_checksum(f.data() + 14, ihl);
    std::memcpy(f.data() + 24, &c, 2);
}

// An IPv6 get from src to the server, with a correct UDP checksum unless zero_csum.
Bytes ipv6_get(const RawClient &raw, const std::array<std::uint8_t, 16> &src, const std::string &text, bool zero_csum) {
    Bytes payload = mc_udp(text);
    Bytes f(14 + 40 + 8);
    std::copy(raw.server_mac.begin(), raw.server_mac.end(), f.begin());
    std::copy(raw.client_mac.begin(), raw.client_mac.end(), f.begin() + 6);
    bmc::put_be16(&f[12], 0x86dd);
    f[14] = 0x60;
    bmc::put_be16(&f[18], std::uint16_t(8 + payload.size()));
    f[20] = 17;
    f[21] = 64;
    std::copy(src.begin(), src.end(), f.begin() + 22);
    const std::uint8_t dst[16] = {0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    std::copy(dst, dst + 16, f.begin() + 38);
    bmc::put_be16(&f[54], 40001);
    bmc::put_be16(&f[56], 11211);
    bmc::put_be16(&f[58], std::uint16_t(8 + payload.size()));
    f.resize(14 + 40 + 8 + payload.size());
    std::copy(payload.begin(), payload.end(), f.begin() + 14 + 40 + 8);
    std::uint32_t sum = 17 + std::uint32_t(8 + payload.size());
    for (std::size_t i = 22; i < 54; i += 2) sum += std::uint32_t(f[i] << 8 | f[i + 1]);
    for (std::size_t i = 54; i < f.size(); i += 2) sum += std::uint32_t(f[i] << 8 | (i + 1 < f.size() ? f[i + 1] : 0));
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    std::uint16_t c = std::uint16_t(~sum);
    bmc::put_be16(&f[60], zero_csum ? 0 : (c ? c : 0xffff));
    return f;
}

}  // namespace

TEST_P(E2E, PacketsTheStackWouldDropAreNeverAnswered) {
    ASSERT_TRUE(warm("sd", "v"));
    RawClient raw(*server->tb);
    ASSERT_GE(raw.fd, 0);
    const Endpoint client{0xC6120002u, 40001}, srv{0xC6120001u, 11211};
    auto get = [&](Endpoint from, Endpoint to, FrameOptions o = {}) {
        return raw.addressed(udp_frame(from, to, mc_udp("get sd\r\n"), o));
    };
    // The control: a well-formed frame from the same raw socket is answered.
    auto hits = server->cache_hits();
    ASSERT_TRUE(raw.send(get(client, srv)));
    EXPECT_EQ(server->cache_hits(), hits + 1) << "a raw get is answered, so the cases below mean something";

    std::map<std::string, std::uint64_t> want;
    std::vector<std::pair<std::string, Bytes>> frames;
    Bytes f = get(client, srv);
    f[24] ^= 0x55;  // IPv4 header checksum
    frames.push_back({"pass_bad_ip_checksum", f});
    f = get(client, srv);
    bmc::put_be16(&f[40], 0x1234);  // a UDP checksum that does not verify
    frames.push_back({"pass_bad_udp_checksum", f});
    std::array<std::uint8_t, 16> v6client{0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
    frames.push_back({"pass_bad_udp_checksum", ipv6_get(raw, v6client, "get sd\r\n", true)});
    frames.push_back({"pass_not_a_local_destination", get(client, {0xC6120063u, 11211})});  // 198.18.0.99
    f = get(client, srv);
    f[5] ^= 0x40;  // another host's MAC
    frames.push_back({"pass_not_to_our_mac", f});
    f = get(client, srv);
    std::fill(f.begin(), f.begin() + 6, 0xff);
    frames.push_back({"pass_not_to_our_mac", f});
    // Sources outside the allowlist stop there (pass_client_not_allowed), before the
    // source checks: either way, not answered and counted. A v4-mapped IPv6 source is no
    // IPv4 client.
    for (std::uint32_t bad : {0xE0000005u /* multicast */, 0xFFFFFFFFu /* broadcast */, 0x7F000001u /* loopback */,
                              0x00000000u /* unspecified */})
        frames.push_back({"pass_client_not_allowed", get({bad, 40001}, srv)});
    frames.push_back({"pass_bad_source", get({0xC6120001u /* own */, 40001}, srv)});
    std::array<std::uint8_t, 16> mapped{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 2};
    frames.push_back({"pass_client_not_allowed", ipv6_get(raw, mapped, "get sd\r\n", false)});
    f = get(client, srv, {.ip_options = 8});
    f[34] = 0x83, f[35] = 7, f[36] = 4;  // loose source route, one hop
    std::memcpy(f.data() + 37, "\xc6\x12\x00\x01", 4);
    fix_ipv4_checksum(f);
    frames.push_back({"pass_ip_options", f});
    frames.push_back({"pass_unconfigured_vlan", get(client, srv, {.vlan = 42})});

    auto counters = [&] {
        auto j = server->stats();
        std::map<std::string, std::uint64_t> c;
        for (auto &[name, frame] : frames) {
            c[name] = j["counters"][name].get<std::uint64_t>();
            if (j.contains("afxdp")) c[name] += j["afxdp"]["counters"][name].get<std::uint64_t>();
        }
        c["hits"] = j["counters"]["hit_requests"].get<std::uint64_t>() +
                    (j.contains("afxdp") ? j["afxdp"]["counters"]["hit_requests"].get<std::uint64_t>() : 0);
        return c;
    };
    for (auto &[name, frame] : frames) want[name]++;
    auto before = counters();
    for (auto &[name, frame] : frames) ASSERT_TRUE(raw.send(frame)) << name;
    auto after = counters();
    EXPECT_EQ(after["hits"], before["hits"]) << "none of them was answered";
    for (auto &[name, n] : want) EXPECT_EQ(after[name], before[name] + n) << name;
}

// Gets with IPv4 options and over IPv6 are answered on the backend's own path (the
// pollers in AF_XDP mode, XDP otherwise), hits and relayed misses alike, with the
// request's shape kept in the reply.
TEST_P(E2E, GetsWithIpOptionsAndOverIpv6AreAnsweredOnThisBackendsPath) {
    ASSERT_TRUE(warm("shp", "v"));
    auto path_hits = [&] {
        auto j = server->stats();
        const bool afxdp = GetParam() == "afxdp";
        return std::pair{afxdp ? j["afxdp"]["counters"]["hit_requests"].get<std::uint64_t>()
                               : j["counters"]["hit_requests"].get<std::uint64_t>(),
                         afxdp ? j["counters"]["hit_requests"].get<std::uint64_t>() : 0};
    };
    // A client socket for the raw requests' replies.
    const std::uint16_t port = 40077;
    int rfd = server->tb->client_udp_socket();
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, Testbed::kClientIp, &a.sin_addr);
    ASSERT_EQ(bind(rfd, reinterpret_cast<sockaddr *>(&a), sizeof a), 0) << std::strerror(errno);
    timeval tv{2, 0};
    setsockopt(rfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    RawClient raw(*server->tb);
    auto options_get = [&](const std::string &key, std::uint16_t id) {
        Bytes f = raw.addressed(udp_frame({0xC6120002u, port}, {0xC6120001u, 11211}, mc_udp("get " + key + "\r\n", id),
                                          {.ip_options = 8}));
        EXPECT_TRUE(raw.send(f));
        std::uint8_t buf[2048];
        const ssize_t n = recv(rfd, buf, sizeof buf, 0);
        return n > 0 ? Bytes(buf, buf + n) : Bytes{};
    };
    McUdp udp6(server->tb->client_udp_socket(AF_INET6), Testbed::kServerIp6, 11211);
    auto [hits0, other0] = path_hits();
    EXPECT_EQ(options_get("shp", 0x1234), mc_udp("VALUE shp 0 1\r\nv\r\nEND\r\n", 0x1234));
    for (int i = 0; i < 3; i++) EXPECT_EQ(udp6.request("get shp\r\n", true).text, item("shp", "v") + "END\r\n");
    auto [hits1, other1] = path_hits();
    EXPECT_EQ(hits1, hits0 + 4) << "answered on the " << GetParam() << " path";
    EXPECT_EQ(other1, other0) << "and not by XDP";
    // Misses: forwarded over IPv4 (with options) and over IPv6, and the replies relayed
    // (AF_XDP) or sent by memcached.
    ASSERT_EQ(tcp->call("set sho 0 0 2\r\nop\r\n"), "STORED\r\n");
    ASSERT_EQ(tcp->call("set sh6 0 0 2\r\nsx\r\n"), "STORED\r\n");
    std::this_thread::sleep_for(15ms);
    EXPECT_EQ(options_get("sho", 0x2345), mc_udp("VALUE sho 0 2\r\nop\r\nEND\r\n", 0x2345));
    EXPECT_EQ(udp6.request("get sh6\r\n", true).text, item("sh6", "sx") + "END\r\n");
    const auto before = tcp->stat("cmd_get");
    EXPECT_EQ(options_get("sho", 0x3456), mc_udp("VALUE sho 0 2\r\nop\r\nEND\r\n", 0x3456));
    EXPECT_EQ(udp6.request("get sh6\r\n", true).text, item("sh6", "sx") + "END\r\n");
    EXPECT_EQ(tcp->stat("cmd_get"), before) << "the relayed replies filled the cache";
    close(rfd);
}

TEST_P(E2E, ChecksumOffloadOnAndOffAreBothAnswered) {
    ASSERT_TRUE(warm("co", "v"));
    const std::string cns = server->tb->client_ns();
    for (const char *mode : {"off", "on"}) {
        ASSERT_EQ(server->tb->run_in(cns, std::string("ethtool -K bmcc0 tx ") + mode + " >/dev/null; echo $?"), "0\n");
        auto hits = server->cache_hits();
        for (int i = 0; i < 5; i++) EXPECT_EQ(udp->request("get co\r\n", true).text, item("co", "v") + "END\r\n");
        EXPECT_GE(server->cache_hits(), hits + 5) << "tx checksum offload " << mode;
    }
}

TEST(E2EFaults, AConnectionOpenedBeforeBmcdStillInvalidates) {
    BMC_REQUIRE_ROOT();
    for (std::string backend : kBackends) {
        Server s("early", {}, false);
        auto early = s.tcp();
        ASSERT_EQ(early->call("set ek 0 0 3\r\nold\r\n"), "STORED\r\n");
        s.start_bmcd({"--backend", backend});
        auto tcp = s.tcp();
        auto udp = s.udp();
        std::this_thread::sleep_for(15ms);
        for (int i = 0; i < 3; i++) udp->request("get ek\r\n", true);
        ASSERT_GT(s.cache_hits(), 0u) << backend << ": not cached; the test would be void";
        EXPECT_EQ(early->call("set ek 0 0 3\r\nnew\r\n"), "STORED\r\n");
        for (int i = 0; i < 3; i++) EXPECT_EQ(udp->request("get ek\r\n", true).text, item("ek", "new") + "END\r\n") << backend;
        EXPECT_GT(s.stats()["counters"]["inval_unobserved_connection"].get<std::uint64_t>(), 0u) << backend;
    }
}

TEST(E2EFaults, MemcachedRestartWithNoBmcdRunningIsSeenByThePinnedPrograms) {
    BMC_REQUIRE_ROOT();
    const std::string fs = "/tmp/bmct-bpffs-r" + std::to_string(getpid());
    sh("mkdir -p " + fs + " && mount -t bpf bpf " + fs);
    const std::string dir = fs + "/bmc";
    {
        Server s("pinrestart", {"--pin", "--pin-dir", dir});
        auto tcp = s.tcp();
        auto udp = s.udp();
        ASSERT_EQ(tcp->call("set rk 0 0 3\r\nold\r\n"), "STORED\r\n");
        std::this_thread::sleep_for(15ms);
        for (int i = 0; i < 3; i++) udp->request("get rk\r\n", true);
        ASSERT_EQ(s.tb->stop(s.bmcd, SIGTERM), 0);
        s.bmcd = -1;
        auto before = tcp->stat("cmd_get");
        EXPECT_EQ(udp->request("get rk\r\n", true).text, item("rk", "old") + "END\r\n");
        ASSERT_EQ(tcp->stat("cmd_get"), before) << "the pinned cache answers: the test means something";
        tcp.reset();
        s.tb->stop(s.memcached, SIGTERM);
        s.start_memcached("memcached2.log");
        tcp = s.tcp();
        ASSERT_TRUE(tcp->ok());
        for (int i = 0; i < 3; i++) EXPECT_EQ(udp->request("get rk\r\n", true).text, "END\r\n");
        pid_t det = s.tb->spawn(s.tb->server_ns(), {BMC_BMCD_PATH, "--iface", Testbed::kServerIf, "--detach", "--pin-dir", dir},
                                s.dir + "/detach.log");
        EXPECT_EQ(s.tb->stop(det, 0, 10), 0) << read_file(s.dir + "/detach.log");
    }
    sh("umount " + fs + " && rmdir " + fs);
}

// ---- lifecycle bugs that hurt a running deployment -----------------------------------------

namespace {

struct PinFs {
    std::string fs, dir;
    explicit PinFs(const std::string &tag) {
        // A crashed earlier run's file system (its pins keep programs loaded): its
        // process, the digits its name ends with, is gone.
        for (const auto &e : std::filesystem::directory_iterator("/tmp")) {
            const std::string n = e.path().filename().string();
            if (n.rfind("bmct-bpffs-", 0) != 0) continue;
            const auto digits = n.find_last_not_of("0123456789") + 1;
            if (digits < n.size() && kill(pid_t(std::stol(n.substr(digits))), 0) != 0 && errno == ESRCH)
                sh("umount " + e.path().string() + " 2>/dev/null; rmdir " + e.path().string() + " 2>/dev/null");
        }
        fs = "/tmp/bmct-bpffs-" + tag + std::to_string(getpid());
        sh("mkdir -p " + fs + " && mount -t bpf bpf " + fs);
        dir = fs + "/bmc";
    }
    ~PinFs() { sh("umount " + fs + " 2>/dev/null; rmdir " + fs + " 2>/dev/null"); }
};

int run_bmcd(Server &s, const std::vector<std::string> &args, const std::string &log, const std::string &prefix = "") {
    std::vector<std::string> argv;
    if (!prefix.empty()) argv = {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"};
    argv.push_back(BMC_BMCD_PATH);
    argv.insert(argv.end(), args.begin(), args.end());
    pid_t p = s.tb->spawn(s.tb->server_ns(), argv, s.dir + "/" + log);
    return s.tb->stop(p, 0, 15);
}

bool xdp_attached(Server &s) { return s.tb->run_in(s.tb->server_ns(), "ip link show dev bmcs0").find("xdp") != std::string::npos; }

}  // namespace

TEST(E2ELifecycleBugs, ARefusedAdoptionLeavesTheDeploymentServing) {
    BMC_REQUIRE_ROOT();
    PinFs pins("adopt");
    Server s("adopt", {"--pin", "--pin-dir", pins.dir});
    ASSERT_EQ(s.tb->stop(s.bmcd, SIGTERM), 0);
    s.bmcd = -1;
    EXPECT_EQ(run_bmcd(s, {"--iface", "bmcs0", "--pin", "--pin-dir", pins.dir, "--small-buckets", "1024"}, "refused.log"), 1);
    EXPECT_NE(read_file(s.dir + "/refused.log").find("use the same bucket counts"), std::string::npos)
        << read_file(s.dir + "/refused.log");
    EXPECT_TRUE(xdp_attached(s)) << "the refused bmcd detached the running deployment";
    EXPECT_TRUE(bmc::KernelBackend::pinned_at(pins.dir));
    EXPECT_EQ(run_bmcd(s, {"--iface", "bmcs0", "--detach", "--pin-dir", pins.dir}, "detach.log"), 0);
    EXPECT_FALSE(xdp_attached(s));
}

TEST(E2ELifecycleBugs, DetachRefusesWhileABmcdServesAndWithoutPermission) {
    BMC_REQUIRE_ROOT();
    PinFs pins("detach");
    Server s("detach", {"--pin", "--pin-dir", pins.dir});
    EXPECT_EQ(run_bmcd(s, {"--iface", "bmcs0", "--detach", "--pin-dir", pins.dir}, "busy.log"), 1);
    EXPECT_NE(read_file(s.dir + "/busy.log").find("a running bmcd serves"), std::string::npos) << read_file(s.dir + "/busy.log");
    EXPECT_TRUE(bmc::KernelBackend::pinned_at(pins.dir));
    ASSERT_EQ(s.tb->stop(s.bmcd, SIGTERM), 0);
    s.bmcd = -1;
    // Unprivileged: refused, and the deployment stays.
    EXPECT_NE(run_bmcd(s, {"--iface", "bmcs0", "--detach", "--pin-dir", pins.dir}, "noperm.log", "nobody"), 0);
    EXPECT_EQ(read_file(s.dir + "/noperm.log").find("detached"), std::string::npos) << read_file(s.dir + "/noperm.log");
    EXPECT_TRUE(xdp_attached(s));
    EXPECT_TRUE(bmc::KernelBackend::pinned_at(pins.dir));
    EXPECT_EQ(run_bmcd(s, {"--iface", "bmcs0", "--detach", "--pin-dir", pins.dir}, "detach.log"), 0);
    EXPECT_FALSE(xdp_attached(s));
}

TEST(E2ELifecycleBugs, AFailedPinnedStartRemovesWhatItAttached) {
    BMC_REQUIRE_ROOT();
    PinFs pins("netlink");
    Server s("pinnl", {}, false);
    EXPECT_EQ(run_bmcd(s, {"--iface", "bmcs0", "--pin", "--pin-dir", pins.dir, "--tc-attach", "netlink"}, "nl.log"), 1);
    EXPECT_NE(read_file(s.dir + "/nl.log").find("TCX"), std::string::npos) << read_file(s.dir + "/nl.log");
    EXPECT_EQ(s.tb->run_in(s.tb->server_ns(), "tc filter show dev bmcs0 egress"), "");
    EXPECT_FALSE(xdp_attached(s));
    EXPECT_FALSE(bmc::KernelBackend::pinned_at(pins.dir));
    // And the next start works.
    s.start_bmcd({"--tc-attach", "netlink"});
    EXPECT_TRUE(s.tb->alive(s.bmcd));
}

TEST(E2ELifecycleBugs, AReaderGoingAwayDoesNotKillBmcd) {
    BMC_REQUIRE_ROOT();
    Server s("sigpipe", {}, false);
    // bmcd's stdout is a pipe whose reader is gone: each status line meets EPIPE.
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fds[1], 1);
        close(fds[0]);
        execlp("ip", "ip", "netns", "exec", s.tb->server_ns().c_str(), BMC_BMCD_PATH, "--iface", "bmcs0",
               "--tc-attach", "netlink", "--interval", "0.1", "--cgroup", s.tb->cgroup().c_str(), (char *)nullptr);
        _exit(127);
    }
    close(fds[1]);
    char c;
    ASSERT_EQ(read(fds[0], &c, 1), 1);  // started
    close(fds[0]);
    // Five status lines (--interval 0.1) written into the pipe with no reader.
    std::this_thread::sleep_for(500ms);
    int st = 0;
    EXPECT_EQ(waitpid(pid, &st, WNOHANG), 0) << "bmcd died of SIGPIPE";
    kill(pid, SIGTERM);
    waitpid(pid, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
    EXPECT_EQ(s.tb->run_in(s.tb->server_ns(), "tc filter show dev bmcs0 egress"), "");
    EXPECT_FALSE(xdp_attached(s));
}

TEST(E2EObserver, ConnectionTableIsSizedFromMemcachedsLimit) {
    BMC_REQUIRE_ROOT();
    Server s("maxconns");
    // The testbed's memcached runs with its default -c 1024.
    EXPECT_NE(read_file(s.log_path).find("memcached accepts 1024 connections; observing up to 1088"), std::string::npos)
        << read_file(s.log_path);
    s.tb->stop(s.bmcd, SIGTERM);
    s.start_bmcd({"--max-connections", "16"});
    EXPECT_EQ(read_file(s.log_path).find("memcached accepts"), std::string::npos) << "an explicit size wins";
    EXPECT_NE(read_file(s.log_path).find("connection table 16 x"), std::string::npos) << read_file(s.log_path);
}

TEST(E2ELifecycleBugs, ACacheOfAnotherLayoutVersionIsNeverServed) {
    BMC_REQUIRE_ROOT();
    PinFs pins("layout");
    Server s("layout", {"--pin", "--pin-dir", pins.dir});
    auto tcp = s.tcp();
    auto udp = s.udp();
    ASSERT_EQ(tcp->call("set lv 0 0 3\r\nold\r\n"), "STORED\r\n");
    std::this_thread::sleep_for(15ms);
    for (int i = 0; i < 3; i++) udp->request("get lv\r\n", true);
    ASSERT_EQ(s.tb->stop(s.bmcd, SIGTERM), 0);
    s.bmcd = -1;
    // The pinned cache claims an older layout.
    int fd = bpf_obj_get((pins.dir + "/bmc_global_state").c_str());
    ASSERT_GE(fd, 0);
    std::uint32_t zero = 0;
    bmc_global g{};
    ASSERT_EQ(bpf_map_lookup_elem(fd, &zero, &g), 0);
    ASSERT_EQ(g.layout_version, BMC_LAYOUT_VERSION);
    g.layout_version = BMC_LAYOUT_VERSION - 1;
    ASSERT_EQ(bpf_map_update_elem(fd, &zero, &g, BPF_ANY), 0);
    close(fd);
    EXPECT_EQ(run_bmcd(s, {"--iface", "bmcs0", "--pin", "--pin-dir", pins.dir}, "refused.log"), 1);
    EXPECT_NE(read_file(s.dir + "/refused.log").find("layout version"), std::string::npos) << read_file(s.dir + "/refused.log");
    EXPECT_TRUE(xdp_attached(s)) << "a refused adoption leaves the deployment";
    // With --adopt-new-epoch it is adopted, and nothing cached before is served.
    s.start_bmcd({"--pin", "--pin-dir", pins.dir, "--adopt-new-epoch"});
    EXPECT_NE(read_file(s.log_path).find("new epoch"), std::string::npos) << read_file(s.log_path);
    const auto before = tcp->stat("cmd_get");
    EXPECT_EQ(udp->request("get lv\r\n", true).text, item("lv", "old") + "END\r\n");
    EXPECT_EQ(tcp->stat("cmd_get"), before + 1) << "memcached answered: the old entries are dead";
    ASSERT_EQ(s.tb->stop(s.bmcd, SIGTERM), 0);
    s.bmcd = -1;
    EXPECT_EQ(run_bmcd(s, {"--iface", "bmcs0", "--detach", "--pin-dir", pins.dir}, "detach.log"), 0);
}

// ---- bmcctl and the control socket ---------------------------------------------------------

TEST(E2EControl, BmcctlReadsStatsSettingsAndSteersARunningBmcd) {
    BMC_REQUIRE_ROOT();
    Server s("ctl", {"--name", "bmct-ctl-" + std::to_string(getpid())});
    const std::string name = "bmct-ctl-" + std::to_string(getpid());
    auto ctl = [&](const std::string &args, int *status = nullptr) {
        return sh(std::string(BMC_BMCCTL_PATH) + " --name " + name + " " + args + " 2>&1", status);
    };
    auto tcp = s.tcp();
    auto udp = s.udp();
    ASSERT_EQ(tcp->call("set ck 0 0 2\r\nok\r\n"), "STORED\r\n");
    std::this_thread::sleep_for(15ms);
    for (int i = 0; i < 5; i++) udp->request("get ck\r\n", true);
    int st = 0;
    // The control socket answers from bmcd's last tick: wait for one that has the hits.
    ASSERT_TRUE(eventually([&] {
        auto j = nlohmann::json::parse(ctl("--json stats"), nullptr, false);
        return j.is_object() && j.value("hit_requests", 0ull) >= 3;
    }));
    // memcached's STAT format, every counter by name.
    std::string stats = ctl("stats", &st);
    EXPECT_EQ(st, 0) << stats;
    EXPECT_NE(stats.find("STAT hit_requests "), std::string::npos) << stats;
    EXPECT_NE(stats.find("STAT pass_bad_udp_checksum 0"), std::string::npos) << stats;
    EXPECT_NE(stats.find("END"), std::string::npos) << stats;
    auto j = nlohmann::json::parse(ctl("--json stats"));
    EXPECT_GE(j["hit_requests"].get<std::uint64_t>(), 3u);
    EXPECT_EQ(j["backend"], "kernel");
    auto status = nlohmann::json::parse(ctl("--json status"));
    EXPECT_EQ(status["backend"], "kernel");
    EXPECT_EQ(status["xdp_mode"], "native");
    EXPECT_EQ(status["tc_mode"], "tcx");
    EXPECT_EQ(status["memcached_watch"], "198.18.0.1:11211");
    EXPECT_GT(status["uptime_ms"].get<std::uint64_t>(), 0u);
    auto settings = nlohmann::json::parse(ctl("--json settings"));
    EXPECT_EQ(settings["iface"], "bmcs0");
    EXPECT_EQ(settings["port"].get<int>(), 11211);
    // The inspector: where the key is, and whether a get of it is served now.
    std::string d = ctl("dump ck", &st);
    EXPECT_EQ(st, 0) << d;
    EXPECT_NE(d.find("STAT entry small."), std::string::npos) << d;
    EXPECT_NE(d.find("served=yes"), std::string::npos) << d;
    ASSERT_EQ(tcp->call("set ck 0 0 2\r\nok\r\n"), "STORED\r\n");  // a write: the entry is invalidated
    d = ctl("dump ck");
    EXPECT_NE(d.find("served=invalidated"), std::string::npos) << d;
    EXPECT_EQ(nlohmann::json::parse(ctl("--json dump ck"))["key"], "ck");
    sh(std::string(BMC_BMCCTL_PATH) + " --name " + name + " dump 'a b' 2>&1", &st);
    EXPECT_EQ(st, 2);
    // Steering: switch, and flush (what was cached is no longer served).
    EXPECT_EQ(ctl("switch afxdp", &st), "OK\n");
    EXPECT_TRUE(eventually([&] { return nlohmann::json::parse(ctl("--json stats"))["backend"] == "afxdp"; }));
    EXPECT_EQ(nlohmann::json::parse(ctl("--json status"))["afxdp_queues"].get<int>(), 1);
    EXPECT_EQ(ctl("switch kernel"), "OK\n");
    EXPECT_EQ(ctl("flush", &st), "OK\n");
    const auto before = tcp->stat("cmd_get");
    EXPECT_EQ(udp->request("get ck\r\n", true).text, item("ck", "ok") + "END\r\n");
    EXPECT_EQ(tcp->stat("cmd_get"), before + 1) << "after a flush memcached answers";
    // Bad use: one line, non-zero.
    std::string bad = sh(std::string(BMC_BMCCTL_PATH) + " --name no-such-bmcd stats 2>&1", &st);
    EXPECT_EQ(st, 1);
    EXPECT_EQ(std::count(bad.begin(), bad.end(), '\n'), 1) << bad;
    sh(std::string(BMC_BMCCTL_PATH) + " --name " + name + " switch dpdk 2>&1", &st);
    EXPECT_EQ(st, 2);
    // What memcached tooling does: a plain "stats" line on the socket, STAT lines and END back.
    {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        const std::string path = "/run/bmc/" + name + ".sock";
        std::memcpy(a.sun_path, path.c_str(), path.size());
        ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a), 0);
        McTcp raw(fd);
        const std::string r = raw.call("stats\r\n");  // then "mn", answered "MN" as memcached does
        EXPECT_EQ(r.rfind("STAT pid ", 0), 0u) << r;
        EXPECT_NE(r.find("STAT get_requests "), std::string::npos) << r;
        EXPECT_NE(r.find("END\r\n"), std::string::npos) << r;
    }
    ASSERT_EQ(s.tb->stop(s.bmcd, SIGTERM), 0);
    s.bmcd = -1;
    EXPECT_FALSE(std::filesystem::exists("/run/bmc/" + name + ".sock")) << "the socket is removed on exit";
}

// node_exporter's textfile collector: the same metrics in a file, rewritten with the
// stats file and once more at exit; and --log-level error keeps what bmcd does off stdout.
TEST(E2EControl, TextfileHoldsValidPrometheusTextAndLogLevelErrorIsQuiet) {
    BMC_REQUIRE_ROOT();
    Server s("textfile", {}, false);
    const std::string prom = s.dir + "/bmc.prom";
    s.start_bmcd({"--textfile", prom, "--log-level", "error"});
    auto tcp = s.tcp();
    auto udp = s.udp();
    ASSERT_EQ(tcp->call("set tk 0 0 2\r\nok\r\n"), "STORED\r\n");
    std::this_thread::sleep_for(15ms);
    for (int i = 0; i < 5; i++) udp->request("get tk\r\n", true);
    const auto hits = s.stats()["counters"]["hit_requests"].get<std::uint64_t>();
    EXPECT_GE(hits, 3u);
    std::string text;
    for (int i = 0; i < 50 && text.find("backend=\"kernel\"} " + std::to_string(hits)) == std::string::npos; i++) {
        std::this_thread::sleep_for(50ms);
        text = read_file(prom);
    }
    EXPECT_NE(text.find("bmc_hit_requests_total{iface=\"bmcs0\",backend=\"kernel\"} " + std::to_string(hits)),
              std::string::npos) << text.substr(0, 1500);
    int st = 0;
    const std::string check = sh("promtool check metrics < " + prom + " 2>&1", &st);
    EXPECT_EQ(st, 0) << check;
    ASSERT_EQ(s.tb->stop(s.bmcd, SIGTERM), 0);
    s.bmcd = -1;
    const std::string log = read_file(s.log_path);
    EXPECT_EQ(log.find("bmcd: serving"), std::string::npos) << "info lines at --log-level error: " << log;
    EXPECT_EQ(log.find("bmcd: detached"), std::string::npos) << log;
    EXPECT_FALSE(read_file(prom).empty()) << "written once more at exit";
}

// With no bmcd running, bmcctl reads the pinned deployment itself: status, stats,
// settings, dump and flush work, switch is refused, detach removes it.
TEST(E2EControl, BmcctlServesAPinnedDeploymentWithNoBmcd) {
    BMC_REQUIRE_ROOT();
    PinFs pins("ctlpin");
    const std::string name = "bmct-ctlpin-" + std::to_string(getpid());
    Server s("ctlpin", {"--pin", "--pin-dir", pins.dir, "--name", name});
    // bmcctl runs where bmcd would: the interfaces are named in the server's namespace.
    auto ctl = [&](const std::string &args, int *rc) {
        std::string out = s.tb->run_in(s.tb->server_ns(), std::string(BMC_BMCCTL_PATH) + " --name " + name +
                                                            " --pin-dir " + pins.dir + " " + args + " 2>&1; echo rc=$?");
        const auto at = out.rfind("rc=");
        *rc = std::stoi(out.substr(at + 3));
        return out.substr(0, at);
    };
    int rc = -1;
    auto tcp = s.tcp();
    auto udp = s.udp();
    ASSERT_EQ(tcp->call("set pk 0 0 2\r\nok\r\n"), "STORED\r\n");
    std::this_thread::sleep_for(15ms);
    for (int i = 0; i < 5; i++) ASSERT_EQ(udp->request("get pk\r\n", true).text, item("pk", "ok") + "END\r\n");
    std::string out = ctl("detach", &rc);
    EXPECT_EQ(rc, 1) << out;
    EXPECT_NE(out.find("is running"), std::string::npos) << out;
    ASSERT_EQ(s.tb->stop(s.bmcd, SIGTERM), 0);
    s.bmcd = -1;
    const auto before = tcp->stat("cmd_get");
    ASSERT_EQ(udp->request("get pk\r\n", true).text, item("pk", "ok") + "END\r\n");
    ASSERT_EQ(tcp->stat("cmd_get"), before) << "the pinned programs answer with no bmcd";

    auto stats = nlohmann::json::parse(ctl("--json stats", &rc));
    EXPECT_EQ(rc, 0);
    EXPECT_EQ(stats["bmcd"], "not running");
    EXPECT_EQ(stats["backend"], "kernel");
    EXPECT_EQ(stats["hit_requests"].get<std::uint64_t>(), 5u) << stats.dump() << ": counted by the kernel, kept in the pins";
    EXPECT_EQ(stats["get_requests"].get<std::uint64_t>(), 6u) << stats.dump();
    out = ctl("stats", &rc);
    EXPECT_EQ(rc, 0);
    EXPECT_NE(out.find("STAT pass_miss 1\n"), std::string::npos) << out;
    auto status = nlohmann::json::parse(ctl("--json status", &rc));
    EXPECT_EQ(status["iface"], Testbed::kServerIf);
    EXPECT_EQ(status["pinned"], pins.dir);
    EXPECT_EQ(status["port"].get<int>(), 11211);
    auto settings = nlohmann::json::parse(ctl("--json settings", &rc));
    EXPECT_EQ(settings["max_age_ns"].get<std::uint64_t>(), 10000000000ull);
    EXPECT_EQ(settings["small_buckets"].get<std::uint64_t>(), std::uint64_t(BMC_DEFAULT_SMALL_BUCKETS));
    out = ctl("dump pk", &rc);
    EXPECT_EQ(rc, 0);
    EXPECT_NE(out.find("served=yes"), std::string::npos) << out;
    out = ctl("switch afxdp", &rc);
    EXPECT_EQ(rc, 1);
    EXPECT_NE(out.find("only bmcd can switch"), std::string::npos) << out;
    EXPECT_EQ(ctl("flush", &rc), "OK\n");
    out = ctl("dump pk", &rc);
    EXPECT_NE(out.find("served=flushed"), std::string::npos) << out;
    EXPECT_EQ(udp->request("get pk\r\n", true).text, item("pk", "ok") + "END\r\n");
    EXPECT_EQ(tcp->stat("cmd_get"), before + 1) << "after bmcctl flush memcached answers";
    EXPECT_EQ(ctl("detach", &rc), "OK\n");
    EXPECT_FALSE(bmc::KernelBackend::pinned_at(pins.dir));
    EXPECT_FALSE(xdp_attached(s));
    out = ctl("stats", &rc);
    EXPECT_EQ(rc, 1);
    EXPECT_NE(out.find("no deployment is pinned"), std::string::npos) << out;
}

// bmcctl trace: every decision with its precise reason, live, on both paths; tracing
// stops when the last listener leaves.
TEST(E2ETrace, BmcctlTraceShowsEachDecisionWithItsReason) {
    BMC_REQUIRE_ROOT();
    const std::string name = "bmct-trace-" + std::to_string(getpid());
    Server s("trace", {"--name", name, "--max-age", "0.3"});
    auto status = [&] {
        return nlohmann::json::parse(sh(std::string(BMC_BMCCTL_PATH) + " --name " + name + " --json status"));
    };
    const std::string log = s.dir + "/trace.log";
    pid_t tracer = s.tb->spawn(s.tb->server_ns(),
                               {BMC_BMCCTL_PATH, "--name", name, "trace", "--count", "200", "--seconds", "30"}, log);
    for (int i = 0; i < 100 && status()["trace_every"] != 1; i++) std::this_thread::sleep_for(20ms);
    ASSERT_EQ(status()["trace_every"], 1) << read_file(log);
    auto tcp = s.tcp();
    auto udp = s.udp();
    auto get = [&](const std::string &k, const std::string &v) {
        EXPECT_EQ(udp->request("get " + k + "\r\n", true).text, item(k, v) + "END\r\n");
    };
    ASSERT_EQ(tcp->call("set tk 0 0 2\r\nv1\r\n"), "STORED\r\n");
    std::this_thread::sleep_for(15ms);
    get("tk", "v1");  // not cached: memcached answers, its reply fills
    get("tk", "v1");  // a hit
    ASSERT_EQ(tcp->call("set tk 0 0 2\r\nv2\r\n"), "STORED\r\n");  // invalidates
    std::this_thread::sleep_for(15ms);  // past the fill guard, so that this miss fills
    get("tk", "v2");  // invalidated
    get("tk", "v2");  // a hit
    std::this_thread::sleep_for(400ms);
    get("tk", "v2");  // the fill is older than --max-age
    EXPECT_EQ(udp->request("delete tu\r\n", false).text, "NOT_FOUND\r\n");  // a write in a datagram
    kill(s.bmcd, SIGUSR1);
    for (int i = 0; i < 100 && status()["backend"] != "afxdp"; i++) std::this_thread::sleep_for(20ms);
    ASSERT_EQ(tcp->call("set tk2 0 0 2\r\nw1\r\n"), "STORED\r\n");
    std::this_thread::sleep_for(15ms);
    get("tk2", "w1");
    get("tk2", "w1");
    std::string text;
    for (int i = 0; i < 100 && text.find("key=tk2 hit_requests") == std::string::npos; i++) {
        std::this_thread::sleep_for(20ms);
        text = read_file(log);
    }
    s.tb->stop(tracer, SIGTERM);
    for (const std::string want :
         {" xdp get 198.18.0.2:", "key=tk miss_not_cached", " tc fill - key=tk fill_accepted", "key=tk hit_requests",
          " observer invalidate tcp:set hash=0x", " observer invalidate udp:delete hash=0x", "key=tk miss_invalidated", "key=tk miss_expired",
          " afxdp get 198.18.0.2:", "key=tk2 miss_not_cached", "key=tk2 hit_requests",
          " afxdp fill - key=tk2 fill_accepted"})
        EXPECT_NE(text.find(want), std::string::npos) << want << " in:\n" << text;
    EXPECT_EQ(text.find(":11211 "), std::string::npos) << "gets show the client's port, hits too:\n" << text;
    // The listener gone, tracing is off again.
    for (int i = 0; i < 100 && status()["trace_every"] != 0; i++) std::this_thread::sleep_for(20ms);
    EXPECT_EQ(status()["trace_every"], 0);
}

// A pinned deployment of two interfaces is adopted only whole, and detached whole.
TEST(E2EMultiIface, APinnedDeploymentOfTwoInterfacesIsAdoptedAndDetachedWhole) {
    BMC_REQUIRE_ROOT();
    PinFs pins("multipin");
    Server s("multipin", {}, false, 1, 2);
    s.start_bmcd({"--iface", Testbed::kServerIf2, "--pin", "--pin-dir", pins.dir});
    auto tcp = s.tcp();
    auto on_a = s.udp();
    McUdp on_b(s.tb->client_udp_socket(), Testbed::kServerIp2, 11211);
    ASSERT_EQ(tcp->call("set pk 0 0 2\r\nok\r\n"), "STORED\r\n");
    std::this_thread::sleep_for(15ms);
    ASSERT_EQ(on_a->request("get pk\r\n", true).text, item("pk", "ok") + "END\r\n");
    ASSERT_EQ(s.tb->stop(s.bmcd, SIGTERM), 0);
    s.bmcd = -1;
    EXPECT_EQ(bmc::KernelBackend::pinned_extra_ifaces(pins.dir), std::vector<std::string>{Testbed::kServerIf2});
    const auto before = tcp->stat("cmd_get");
    ASSERT_EQ(on_b.request("get pk\r\n", true).text, item("pk", "ok") + "END\r\n");
    EXPECT_EQ(tcp->stat("cmd_get"), before) << "the second interface's pinned program answers";
    // Adopting it without the second interface would leave that one unmanaged: refused.
    EXPECT_EQ(run_bmcd(s, {"--iface", Testbed::kServerIf, "--pin", "--pin-dir", pins.dir}, "partial.log"), 1);
    EXPECT_NE(read_file(s.dir + "/partial.log").find("also serves bmcs1"), std::string::npos)
        << read_file(s.dir + "/partial.log");
    s.start_bmcd({"--iface", Testbed::kServerIf2, "--pin", "--pin-dir", pins.dir});
    EXPECT_NE(read_file(s.log_path).find("adopted"), std::string::npos) << read_file(s.log_path);
    ASSERT_EQ(on_b.request("get pk\r\n", true).text, item("pk", "ok") + "END\r\n");
    EXPECT_EQ(tcp->stat("cmd_get"), before) << "adopted warm";
    ASSERT_EQ(s.tb->stop(s.bmcd, SIGTERM), 0);
    s.bmcd = -1;
    EXPECT_EQ(run_bmcd(s, {"--iface", Testbed::kServerIf, "--detach", "--pin-dir", pins.dir}, "detach.log"), 0);
    for (const char *dev : {Testbed::kServerIf, Testbed::kServerIf2})
        EXPECT_EQ(s.tb->run_in(s.tb->server_ns(), std::string("ip link show dev ") + dev).find("xdp"), std::string::npos)
            << dev;
    EXPECT_FALSE(bmc::KernelBackend::pinned_at(pins.dir));
}

TEST(E2EControl, MetricsEndpointIsValidPrometheusText) {
    BMC_REQUIRE_ROOT();
    Server s("metrics", {"--metrics", "127.0.0.1:9711"});
    auto tcp = s.tcp();
    auto udp = s.udp();
    ASSERT_EQ(tcp->call("set mk 0 0 2\r\nok\r\n"), "STORED\r\n");
    std::this_thread::sleep_for(15ms);
    for (int i = 0; i < 5; i++) udp->request("get mk\r\n", true);
    std::this_thread::sleep_for(300ms);
    const std::string file = s.dir + "/metrics.txt";
    s.tb->run_in(s.tb->server_ns(), "curl -sf http://127.0.0.1:9711/metrics -o " + file);
    const std::string text = read_file(file);
    ASSERT_NE(text.find("# TYPE bmc_hit_requests_total counter"), std::string::npos) << text.substr(0, 500);
    int st = 0;
    const std::string check = sh("promtool check metrics < " + file + " 2>&1", &st);
    EXPECT_EQ(st, 0) << check;
    // The kernel series holds the hits the stats file reports.
    const auto hits = s.stats()["counters"]["hit_requests"].get<std::uint64_t>();
    EXPECT_GE(hits, 3u);
    EXPECT_NE(text.find("bmc_hit_requests_total{iface=\"bmcs0\",backend=\"kernel\"} " + std::to_string(hits)),
              std::string::npos) << text.substr(0, 2000);
}
