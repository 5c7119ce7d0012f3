// Two network namespaces joined by a veth pair, made and removed by a test (and, through
// the bmc-testbed command, by the benchmark harness, the guide's labs and the demo):
//   server ns: <if server_if> 198.18.0.1/30 and 2001:2::1/64, memcached, bmcd
//   client ns: <if client_if> 198.18.0.2/30 and 2001:2::2/64, an XDP_PASS program (XDP_TX
//              on a veth needs one on the peer), the test's sockets
// and with links = 2 a second pair, server_if2 198.18.0.5/30 to client_if2 198.18.0.6/30.
// No address is assigned, and no route added, in the root namespace.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace bmc::test {

class Testbed {
public:
    static constexpr const char *kServerIp = "198.18.0.1";
    static constexpr const char *kClientIp = "198.18.0.2";
    static constexpr const char *kServerIp6 = "2001:2::1";
    static constexpr const char *kClientIp6 = "2001:2::2";
    static constexpr const char *kServerIf = "bmcs0";
    static constexpr const char *kClientIf = "bmcc0";
    static constexpr const char *kServerIp2 = "198.18.0.5";
    static constexpr const char *kClientIp2 = "198.18.0.6";
    static constexpr const char *kServerIf2 = "bmcs1";
    static constexpr const char *kClientIf2 = "bmcc1";

    // queues: RX/TX queues of each veth end; links: veth pairs (1 or 2). The names carry
    // owner's pid: once that process is gone, remove_stale() takes what it left.
    explicit Testbed(const std::string &tag, int queues = 1, int links = 1, pid_t owner = getpid());
    ~Testbed();
    // Leaves the namespaces and the cgroup in place when this object goes (bmc-testbed up).
    void keep() { keep_ = true; }
    // Removes a testbed's namespaces and cgroup, by name; only names a Testbed makes.
    static void remove(const std::string &server_ns, const std::string &client_ns, const std::string &cgroup);
    // The server end's MAC address.
    std::string server_mac() const;
    Testbed(const Testbed &) = delete;
    Testbed &operator=(const Testbed &) = delete;

    const std::string &server_ns() const { return server_ns_; }
    const std::string &client_ns() const { return client_ns_; }
    // A cgroup (v2) of this testbed's own: memcached runs in it, and bmcd observes it, so
    // that the socket-level programs of parallel runs never meet.
    const std::string &cgroup() const { return cgroup_; }

    // Starts argv inside `ns`; the child dies with the test process. Output goes to log.
    // With in_cgroup, the process starts inside cgroup().
    pid_t spawn(const std::string &ns, const std::vector<std::string> &argv, const std::string &log,
                bool in_cgroup = false);
    // Signals a process this testbed started and waits up to timeout_s; returns its exit
    // status (128+signal if killed), or -1 if it had to be killed.
    int stop(pid_t pid, int sig, double timeout_s = 5.0);
    bool alive(pid_t pid);

    // Sockets created inside the client namespace.
    int client_udp_socket(int family = 2 /* AF_INET */);
    int client_tcp_connect(int port, double timeout_s = 5.0);
    // A socket of `type` made inside namespace `ns`; a TCP connection from inside `ns`.
    int socket_in(const std::string &ns, int family, int type);
    int tcp_connect_in(const std::string &ns, const std::string &ip, int port, double timeout_s = 5.0);

    // Runs a shell command inside `ns` and returns its stdout.
    std::string run_in(const std::string &ns, const std::string &cmd);

    // Removes namespaces left by earlier runs whose process is gone.
    static void remove_stale();

private:

    std::string server_ns_, client_ns_, cgroup_;
    std::vector<pid_t> children_;
    bool keep_ = false;
};

std::string read_file(const std::string &path);
std::string sh(const std::string &cmd, int *status = nullptr);

}  // namespace bmc::test
