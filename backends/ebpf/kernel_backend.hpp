// Kernel backend: owns the loaded BPF object (skeleton), its XDP and TC egress
// attachments and the mmapped cache. Everything it attached is detached by the
// destructor; XDP and TCX attachments are bpf_links, which the kernel also removes when
// the process dies.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "datapath.hpp"

struct bmc_kern;  // bpftool skeleton (bpf/bmc.bpf.c)
struct bpf_program;

namespace bmc {

class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

enum class XdpMode { Auto, Native, Generic };
enum class TcAttach { Auto, Tcx, Netlink };

class KernelBackend;

struct KernelOptions {
    std::string iface;
    std::uint16_t port = BMC_DEFAULT_PORT;
    std::uint32_t small_buckets = BMC_DEFAULT_SMALL_BUCKETS;
    std::uint32_t large_buckets = BMC_DEFAULT_LARGE_BUCKETS;
    std::uint64_t max_age_ns = default_config().max_age_ns;
    std::uint64_t fill_guard_ns = default_config().fill_guard_ns;
    std::uint32_t max_amp = BMC_DEFAULT_MAX_AMP;
    // Clients the cache answers; writes from anyone still invalidate.
    Allowlist allow = Allowlist::everyone();
    XdpMode xdp_mode = XdpMode::Auto;
    TcAttach tc_attach = TcAttach::Auto;
    // Load the programs and maps without attaching them (BPF_PROG_TEST_RUN users).
    bool attach = true;
    // Attach the write observer only, no XDP or TC (to measure what it costs memcached).
    bool observer_only = false;
    // What the stack delivers; read from iface when attaching, else this (tests).
    Delivery delivery;
    // Answer a get only if memcached has a UDP socket for it (bpf_sk_lookup_udp). On when
    // attaching; BPF_PROG_TEST_RUN users (no memcached socket) turn it on explicitly.
    bool check_socket = true;
    bool check_socket_unattached = false;
    // How long each CPU remembers the lookup's answer for a destination (0: never), on top
    // of the epochs memcached's binds and releases start (core/bmc_frame.h).
    std::uint64_t sock_memo_ns = default_config().sock_memo_ns;
    // The stack-delivery checks: never off in bmcd, only to measure what they cost.
    bool check_delivery = true;
    // Every get through the general scanner, none through the fast path (to measure it).
    bool general_only = false;
    // A build variant of bmc.bpf.c (same maps and programs) to load instead of the object
    // embedded in this program: benchmarks only (bpf/bmc_kern_no_trace.bpf.o).
    std::string object_file;
    // The write observer watches memcached's sockets in this cgroup (v2) and below; empty:
    // the root of the cgroup2 hierarchy. Only sockets on `port` in bmcd's own network
    // namespace are taken, so observers of other namespaces never meet.
    std::string cgroup;
    // Connections observed at once (sized from memcached's connection limit); one more is
    // not observed, and its data start new epochs.
    std::uint32_t max_conns = BMC_DEFAULT_CONNS;
    // Pinned deployment: links and maps are pinned here (a directory on a BPF file
    // system) and outlive this process; if pins are already there, they are adopted: the
    // new programs take over the pinned links and keep the pinned cache.
    std::string pin_dir;
    // Adopting a pinned cache of another layout version: refused, unless this is set; then
    // it starts a new epoch, so that no entry in a layout this bmcd does not know is served.
    bool adopt_new_epoch = false;
    // Another interface of the same instance (bmcd --iface given again): this backend
    // serves `iface` from share's cache. It reuses share's cache, allowlist, host
    // addresses and write-observer maps and attaches no observer (share's watches
    // memcached); it keeps its own counters, VLANs, AF_XDP sockets and links. Pinned, its
    // links and counters live in iface_pin_dir(share's pin_dir, iface), which share's
    // deployment owns: detaching share's pin_dir detaches it too.
    const KernelBackend *share = nullptr;
};

class KernelBackend {
public:
    // Loads and attaches; throws bmc::Error with a one-line reason.
    explicit KernelBackend(const KernelOptions &opts);
    ~KernelBackend();
    KernelBackend(const KernelBackend &) = delete;
    KernelBackend &operator=(const KernelBackend &) = delete;

    // Sum of the per-CPU counters.
    Counters read_counters() const;
    CacheMemory cache() const { return cache_; }
    const Allowlist &allowlist() const { return opts_.allow; }
    const Delivery &delivery() const { return opts_.delivery; }
    bmc_config config() const;

    const std::string &xdp_mode() const { return xdp_mode_; }  // "native" or "generic"
    const std::string &tc_mode() const { return tc_mode_; }    // "tcx" or "netlink"
    // Notes for the operator, e.g. a fallback that was taken.
    const std::string &notice() const { return notice_; }

    // Whether this instance took over an earlier pinned deployment.
    bool adopted() const { return adopted_; }
    // Removes a pinned deployment: unpinning its links detaches them. Throws if pin_dir
    // holds no bmc deployment.
    static void detach_pinned(const std::string &pin_dir);
    static bool pinned_at(const std::string &pin_dir);
    // Where an additional interface of a pinned deployment keeps its pins, and the
    // interfaces a pinned deployment serves besides its first.
    static std::string iface_pin_dir(const std::string &pin_dir, const std::string &iface);
    static std::vector<std::string> pinned_extra_ifaces(const std::string &pin_dir);
    // A deployment this instance pinned anew is removed again (a later step failed); an
    // adopted one stays as it was.
    void discard_new_pins();
    int stats_map_fd() const;
    // The decision trace's BPF ring buffer (shared by every interface of the instance).
    int trace_ring_fd() const;

    int xdp_prog_fd() const;
    int tc_prog_fd() const;
    // The observer's test wrapper (tc): a frame's bytes after Ethernet are a chunk of
    // connection skb->mark. And the cgroup skb ingress program (IP packets).
    int stream_test_prog_fd() const;
    int sock_ingress_prog_fd() const;
    const std::string &cgroup() const { return cgroup_; }
    // Observed connections' reading state, by socket cookie (tests).
    int conns_map_fd() const;
    int xsks_map_fd() const;
    // The cache's maps (small buckets, large buckets, global state), for another program
    // to read the same cache (the benchmark's ideal-hit floor, bench/bench_ideal.bpf.c).
    int small_map_fd() const;
    int large_map_fd() const;
    int global_map_fd() const;
    const std::string &iface() const { return opts_.iface; }
    std::uint16_t port() const { return opts_.port; }

    // Which datapath answers gets: BMC_MODE_KERNEL (XDP) or BMC_MODE_AFXDP (the XDP
    // program hands them to the AF_XDP socket of their queue). One store in the shared
    // global state; the cache is untouched, so it stays warm across a switch.
    void set_mode(std::uint32_t mode);
    // flush_all for the whole cache (a new epoch), e.g. when memcached restarts.
    void flush_all();
    std::uint32_t mode() const;

private:
    void attach_xdp();
    void attach_tc();
    void attach_observer();
    void attach_verdict();
    void open_cgroup();
    std::vector<::bpf_program *> observer_progs() const;
    void release_observed();
    void detach();
    void map_cache();
    void adopt_maps();
    void share_maps();
    void pin_settings();
    std::vector<const char *> own_pinned_maps() const;
    void pin_or_adopt_links();

    KernelOptions opts_;
    ::bmc_kern *skel_ = nullptr;
    std::vector<char> object_bytes_;  // KernelOptions::object_file's, while skel_ uses them
    int ifindex_ = 0;
    int xdp_link_fd_ = -1;
    int tcx_link_fd_ = -1;
    int cgroup_fd_ = -1;
    bool verdict_attached_ = false;
    // The observer's cgroup links, in kObserverLinks order.
    std::vector<int> cgroup_link_fds_;
    std::string cgroup_;
    bool tc_netlink_attached_ = false;
    bool tc_hook_created_ = false;
    bool adopted_ = false;
    bool created_pins_ = false;  // this instance made the pins (removed again if it fails)
    bool pinned_ = false;        // the deployment is pinned and outlives this instance
    int pin_lock_fd_ = -1;
    std::string xdp_mode_, tc_mode_, notice_;
    CacheMemory cache_;
    void *small_map_ = nullptr, *large_map_ = nullptr, *global_map_ = nullptr;
    std::size_t small_len_ = 0, large_len_ = 0, global_len_ = 0;
};

// The root of the cgroup2 hierarchy (from /proc/self/mounts), or "" if none is mounted.
std::string cgroup2_root();
// The cookie of this process's network namespace (SO_NETNS_COOKIE).
std::uint64_t netns_cookie();

// The counters in a bmc_stats map (per-CPU), summed.
Counters read_stats_map(int fd);

// A power of two >= 1, or throws.
std::uint32_t check_bucket_count(const char *what, std::uint64_t n);

}  // namespace bmc
