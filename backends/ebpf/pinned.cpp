#include "pinned.hpp"

#include <bpf/bpf.h>
#include <net/if.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "bmc_cache.h"

namespace bmc {
namespace {

std::string errno_text(int e) { return std::strerror(e); }

int open_pin(const std::string &path) {
    int fd = bpf_obj_get(path.c_str());
    if (fd < 0)
        throw Error("cannot open " + path + ": " + errno_text(errno) +
                    (errno == EPERM || errno == EACCES ? " (needs root)" : ""));
    return fd;
}

// The interface a pinned XDP link is attached to.
std::string link_iface(const std::string &path) {
    int fd = open_pin(path);
    bpf_link_info info{};
    __u32 len = sizeof info;
    const int err = bpf_obj_get_info_by_fd(fd, &info, &len);
    close(fd);
    char name[IF_NAMESIZE] = "";
    if (err || info.type != BPF_LINK_TYPE_XDP || !if_indextoname(info.xdp.ifindex, name))
        return "(detached)";
    return name;
}

}  // namespace

PinnedDeployment::PinnedDeployment(const std::string &dir) : dir_(dir) {
    if (!KernelBackend::pinned_at(dir)) throw Error("no pinned bmc deployment in " + dir);
    try {
        {
            int fd = open_pin(dir + "/bmc_settings");
            const __u32 zero = 0;
            const int err = bpf_map_lookup_elem(fd, &zero, &config_);
            close(fd);
            if (err) throw Error("cannot read " + dir + "/bmc_settings: " + errno_text(errno));
        }
        auto map = [&](const char *name, std::size_t want_value, std::uint32_t *entries) {
            int fd = open_pin(dir + "/" + name);
            bpf_map_info info{};
            __u32 len = sizeof info;
            if (bpf_obj_get_info_by_fd(fd, &info, &len) || info.value_size != want_value) {
                close(fd);
                throw Error(std::string("pinned ") + name + " is not of this bmc's layout (layout version " +
                            std::to_string(BMC_LAYOUT_VERSION) + ")");
            }
            Region r;
            r.len = std::size_t(info.value_size) * info.max_entries;
            const long page = sysconf(_SC_PAGESIZE);
            r.len = (r.len + page - 1) / page * page;
            r.p = mmap(nullptr, r.len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            const int e = errno;
            close(fd);
            if (r.p == MAP_FAILED) throw Error(std::string("cannot map ") + name + ": " + errno_text(e));
            regions_.push_back(r);
            if (entries) *entries = info.max_entries;
            return r.p;
        };
        cache_.small = static_cast<bmc_small_bucket *>(map("bmc_small", sizeof(bmc_small_bucket), &cache_.n_small));
        cache_.large = static_cast<bmc_large_bucket *>(map("bmc_large", sizeof(bmc_large_bucket), &cache_.n_large));
        cache_.global = static_cast<bmc_global *>(map("bmc_global_state", sizeof(bmc_global), nullptr));
        const std::uint32_t v = __atomic_load_n(&cache_.global->layout_version, __ATOMIC_ACQUIRE);
        if (v != BMC_LAYOUT_VERSION)
            throw Error("the pinned cache in " + dir + " has layout version " + std::to_string(v) + ", this bmcctl reads " +
                        std::to_string(BMC_LAYOUT_VERSION));
        ifaces_.push_back(link_iface(dir + "/link_xdp"));
        stats_fds_.push_back(open_pin(dir + "/bmc_stats"));
        for (const std::string &iface : KernelBackend::pinned_extra_ifaces(dir)) {
            const std::string d = KernelBackend::iface_pin_dir(dir, iface);
            ifaces_.push_back(link_iface(d + "/link_xdp"));
            stats_fds_.push_back(open_pin(d + "/bmc_stats"));
        }
    } catch (...) {
        release();
        throw;
    }
}

PinnedDeployment::~PinnedDeployment() { release(); }

void PinnedDeployment::release() {
    for (auto &r : regions_) munmap(r.p, r.len);
    regions_.clear();
    for (int fd : stats_fds_) close(fd);
    stats_fds_.clear();
}

Counters PinnedDeployment::counters() const {
    Counters total{};
    for (int fd : stats_fds_) {
        const Counters c = read_stats_map(fd);
        for (std::uint32_t i = 0; i < BMC_NUM_STATS; i++) total[i] += c[i];
    }
    return total;
}

std::vector<std::pair<std::string, Counters>> PinnedDeployment::counters_by_iface() const {
    std::vector<std::pair<std::string, Counters>> out;
    for (std::size_t i = 0; i < stats_fds_.size(); i++) out.emplace_back(ifaces_[i], read_stats_map(stats_fds_[i]));
    return out;
}

bool PinnedDeployment::served() const {
    int fd = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool locked = flock(fd, LOCK_SH | LOCK_NB) != 0;
    close(fd);
    return locked;
}

void PinnedDeployment::flush() { bmc_flush(cache_.global, monotonic_ns()); }

}  // namespace bmc
