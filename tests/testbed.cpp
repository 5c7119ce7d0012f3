#include "testbed.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace bmc::test {
namespace {

constexpr const char *kPrefix = "bmct-";

void must(const std::string &cmd) {
    int st = 0;
    std::string out = sh(cmd + " 2>&1", &st);
    if (st != 0) throw std::runtime_error("testbed: '" + cmd + "' failed: " + out);
}

}  // namespace

std::string sh(const std::string &cmd, int *status) {
    std::string out;
    FILE *p = popen(cmd.c_str(), "r");
    if (!p) throw std::runtime_error("popen failed");
    char buf[4096];
    std::size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int st = pclose(p);
    if (status) *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    return out;
}

std::string read_file(const std::string &path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

namespace {
// The cgroup2 hierarchy, mounted where `ip netns exec` (which remounts /sys) still sees
// it, so that bmcd inside a namespace can open the testbed's cgroup.
constexpr const char *kCgroupMount = "/tmp/bmct-cgroup2";

bool is_cgroup2_mount(const std::string &path) {
    std::ifstream mounts("/proc/self/mounts");
    std::string dev, dir, type, rest;
    while (mounts >> dev >> dir >> type && std::getline(mounts, rest))
        if (type == "cgroup2" && dir == path) return true;
    return false;
}

std::string cgroup_base() {
    static const std::string root = [] {
        if (!is_cgroup2_mount(kCgroupMount)) {
            mkdir(kCgroupMount, 0755);
            sh(std::string("mount -t cgroup2 none ") + kCgroupMount + " 2>/dev/null");
        }
        return is_cgroup2_mount(kCgroupMount) ? std::string(kCgroupMount) : std::string();
    }();
    return root;
}

pid_t owner_of(const std::string &name) { return pid_t(std::atol(name.c_str() + std::strlen(kPrefix))); }
bool gone(pid_t owner) { return owner > 0 && kill(owner, 0) != 0 && errno == ESRCH; }
}  // namespace

void Testbed::remove_stale() {
    if (!cgroup_base().empty()) {
        for (const auto &e : std::filesystem::directory_iterator(cgroup_base())) {
            const std::string name = e.path().filename();
            if (name.rfind(kPrefix, 0) == 0 && gone(owner_of(name))) rmdir(e.path().c_str());
        }
    }
    std::istringstream list(sh("ip netns list 2>/dev/null"));
    std::string line;
    while (std::getline(list, line)) {
        std::string name = line.substr(0, line.find(' '));
        if (name.rfind(kPrefix, 0) != 0) continue;
        // bmct-<owner pid>-<pid>-<n>-<tag>-{s,c}
        if (gone(owner_of(name))) sh("ip netns del " + name + " 2>/dev/null");
    }
}

Testbed::Testbed(const std::string &tag, int queues, int links, pid_t owner) {
    static std::atomic<int> seq{0};
    remove_stale();
    std::string base = std::string(kPrefix) + std::to_string(owner) + "-" + std::to_string(getpid()) + "-" +
                       std::to_string(seq++) + "-" + tag;
    server_ns_ = base + "-s";
    client_ns_ = base + "-c";
    if (cgroup_base().empty()) throw std::runtime_error("testbed: no cgroup2 hierarchy is mounted");
    cgroup_ = cgroup_base() + "/" + base;
    if (mkdir(cgroup_.c_str(), 0755) != 0)
        throw std::runtime_error("testbed: cannot create cgroup " + cgroup_ + ": " + std::strerror(errno));
    try {
        must("ip netns add " + server_ns_);
        must("ip netns add " + client_ns_);
        const std::string q = " numtxqueues " + std::to_string(queues) + " numrxqueues " + std::to_string(queues);
        must("ip link add " + std::string(kServerIf) + " netns " + server_ns_ + q + " type veth peer name " +
             kClientIf + " netns " + client_ns_ + q);
        must("ip -n " + server_ns_ + " addr add " + kServerIp + "/30 brd + dev " + kServerIf);
        must("ip -n " + client_ns_ + " addr add " + kClientIp + "/30 brd + dev " + kClientIf);
        must("ip -n " + server_ns_ + " addr add " + kServerIp6 + "/64 dev " + kServerIf + " nodad");
        must("ip -n " + client_ns_ + " addr add " + kClientIp6 + "/64 dev " + kClientIf + " nodad");
        for (auto &[ns, dev] : {std::pair{server_ns_, kServerIf}, std::pair{client_ns_, kClientIf}}) {
            must("ip -n " + ns + " link set lo up");
            must("ip -n " + ns + " link set " + dev + " up");
        }
        must("ip -n " + client_ns_ + " link set dev " + kClientIf + " xdp obj " BMC_XDP_PASS_OBJ " sec xdp");
        if (links == 2) {
            must("ip link add " + std::string(kServerIf2) + " netns " + server_ns_ + " type veth peer name " + kClientIf2 +
                 " netns " + client_ns_);
            must("ip -n " + server_ns_ + " addr add " + kServerIp2 + "/30 brd + dev " + kServerIf2);
            must("ip -n " + client_ns_ + " addr add " + kClientIp2 + "/30 brd + dev " + kClientIf2);
            must("ip -n " + server_ns_ + " link set " + kServerIf2 + " up");
            must("ip -n " + client_ns_ + " link set " + kClientIf2 + " up");
            must("ip -n " + client_ns_ + " link set dev " + kClientIf2 + " xdp obj " BMC_XDP_PASS_OBJ " sec xdp");
        }
    } catch (...) {
        sh("ip netns del " + server_ns_ + " 2>/dev/null; ip netns del " + client_ns_ + " 2>/dev/null");
        rmdir(cgroup_.c_str());
        throw;
    }
}

Testbed::~Testbed() {
    for (pid_t p : children_)
        if (alive(p)) stop(p, SIGTERM, 3.0);
    if (!keep_) remove(server_ns_, client_ns_, cgroup_);
}

void Testbed::remove(const std::string &server_ns, const std::string &client_ns, const std::string &cgroup) {
    const auto ours = [](const std::string &name) {
        return name.rfind(kPrefix, 0) == 0 && name.find_first_of(" ;'\"$`|&<>/") == std::string::npos;
    };
    if (!ours(server_ns) || !ours(client_ns) ||
        (!cgroup.empty() && cgroup.rfind(std::string(kCgroupMount) + "/" + kPrefix, 0) != 0))
        throw std::runtime_error("testbed: not a testbed's names: " + server_ns + " " + client_ns + " " + cgroup);
    sh("ip netns del " + server_ns + " 2>/dev/null; ip netns del " + client_ns + " 2>/dev/null");
    // A cgroup can be removed once its processes are gone, which takes a moment after wait.
    for (int i = 0; !cgroup.empty() && i < 100 && rmdir(cgroup.c_str()) != 0 && errno == EBUSY; i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

std::string Testbed::server_mac() const {
    std::istringstream f(sh("ip -n " + server_ns_ + " -br link show " + kServerIf));
    std::string name, state, mac;
    f >> name >> state >> mac;
    return mac;
}

pid_t Testbed::spawn(const std::string &ns, const std::vector<std::string> &argv, const std::string &log,
                     bool in_cgroup) {
    std::vector<std::string> full = {"ip", "netns", "exec", ns};
    full.insert(full.end(), argv.begin(), argv.end());
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        if (in_cgroup) {
            int cg = open((cgroup_ + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
            if (cg < 0 || write(cg, "0", 1) != 1) _exit(126);
            close(cg);
        }
        int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        std::vector<char *> args;
        for (auto &a : full) args.push_back(const_cast<char *>(a.c_str()));
        args.push_back(nullptr);
        execvp(args[0], args.data());
        _exit(127);
    }
    children_.push_back(pid);
    return pid;
}

bool Testbed::alive(pid_t pid) {
    int st;
    return waitpid(pid, &st, WNOHANG) == 0;
}

int Testbed::stop(pid_t pid, int sig, double timeout_s) {
    kill(pid, sig);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    int st = 0;
    while (std::chrono::steady_clock::now() < deadline) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (r < 0) return -1;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

int Testbed::client_udp_socket(int family) { return socket_in(client_ns_, family, SOCK_DGRAM); }

int Testbed::socket_in(const std::string &ns, int family, int type) {
    int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int target = open(("/var/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (self < 0 || target < 0 || setns(target, CLONE_NEWNET) != 0)
        throw std::runtime_error("cannot enter " + ns);
    int s = socket(family, type | SOCK_CLOEXEC, 0);
    if (setns(self, CLONE_NEWNET) != 0) std::abort();  // never continue in the wrong namespace
    close(self);
    close(target);
    return s;
}

int Testbed::tcp_connect_in(const std::string &ns, const std::string &ip, int port, double timeout_s) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    const bool v6 = ip.find(':') != std::string::npos;
    for (;;) {
        int s = socket_in(ns, v6 ? AF_INET6 : AF_INET, SOCK_STREAM);
        sockaddr_storage ss{};
        socklen_t len;
        if (v6) {
            auto *a = reinterpret_cast<sockaddr_in6 *>(&ss);
            a->sin6_family = AF_INET6;
            a->sin6_port = htons(std::uint16_t(port));
            inet_pton(AF_INET6, ip.c_str(), &a->sin6_addr);
            len = sizeof *a;
        } else {
            auto *a = reinterpret_cast<sockaddr_in *>(&ss);
            a->sin_family = AF_INET;
            a->sin_port = htons(std::uint16_t(port));
            inet_pton(AF_INET, ip.c_str(), &a->sin_addr);
            len = sizeof *a;
        }
        if (s >= 0 && connect(s, reinterpret_cast<sockaddr *>(&ss), len) == 0) return s;
        if (s >= 0) close(s);
        if (std::chrono::steady_clock::now() > deadline) return -1;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

int Testbed::client_tcp_connect(int port, double timeout_s) {
    return tcp_connect_in(client_ns_, kServerIp, port, timeout_s);
}

std::string Testbed::run_in(const std::string &ns, const std::string &cmd) {
    return sh("ip netns exec " + ns + " " + cmd + " 2>&1");
}

}  // namespace bmc::test
