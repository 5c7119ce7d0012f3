#include "kernel_backend.hpp"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <fcntl.h>
#include <sys/socket.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <cerrno>
#include <cstring>
#include <vector>

#include "bmc_cache.h"
#include "bmc_kern.skel.h"
#include "percpu.hpp"

namespace bmc {
namespace {

// Where each global variable of an object's data sections (.bss, .data, .rodata) lies:
// sorted "section name offset size" entries, from its BTF. A variant object
// (KernelOptions::object_file) is written through bmcd's skeleton, whose structs fix
// those offsets; maps are found by name, so their order does not matter.
std::vector<std::string> data_layout(const void *elf, std::size_t size) {
    LIBBPF_OPTS(bpf_object_open_opts, o, .object_name = "bmc_layout");
    bpf_object *obj = bpf_object__open_mem(elf, size, &o);
    if (!obj) return {"(unreadable object)"};
    std::vector<std::string> out;
    if (const btf *b = bpf_object__btf(obj)) {
        for (__u32 id = 1; id < btf__type_cnt(b); id++) {
            const btf_type *t = btf__type_by_id(b, id);
            if (!btf_is_datasec(t)) continue;
            const std::string sec = btf__name_by_offset(b, t->name_off);
            if (!sec.starts_with(".bss") && !sec.starts_with(".data") && !sec.starts_with(".rodata")) continue;
            const btf_var_secinfo *v = btf_var_secinfos(t);
            for (__u16 k = 0; k < btf_vlen(t); k++, v++)
                out.push_back(sec + " " + btf__name_by_offset(b, btf__type_by_id(b, v->type)->name_off) + " " +
                              std::to_string(v->offset) + " " + std::to_string(v->size));
        }
    }
    bpf_object__close(obj);
    std::sort(out.begin(), out.end());
    return out;
}

// BPF_TCX_EGRESS is newer than Debian 12's uapi header; the kernel has it since 6.6.
constexpr int kBpfTcxEgress = 47;

std::string errno_text(int err) { return std::strerror(err < 0 ? -err : err); }

std::string load_hint(int err) {
    if (err == -EPERM || err == -EACCES)
        return " (needs root, or CAP_BPF with CAP_NET_ADMIN and CAP_PERFMON)";
    return "";
}

void *map_region(bpf_map *map, std::size_t &len) {
    len = std::size_t(bpf_map__value_size(map)) * bpf_map__max_entries(map);
    long page = sysconf(_SC_PAGESIZE);
    len = (len + page - 1) / page * page;
    void *p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, bpf_map__fd(map), 0);
    if (p == MAP_FAILED)
        throw Error(std::string("cannot mmap map ") + bpf_map__name(map) + ": " +
                    errno_text(errno));
    return p;
}

// What a pinned deployment consists of: maps that hold state, the two interface links,
// the observer's cgroup links, and the SOCKHASH that carries its stream verdict.
const char *const kPinnedMaps[] = {"bmc_small", "bmc_large", "bmc_global_state", "bmc_stats", "bmc_allow",
                                   "bmc_conns", "bmc_socks", "bmc_listeners"};
constexpr const char *kXdpLink = "link_xdp", *kTcLink = "link_tc_egress";
const char *const kObserverLinks[] = {"link_sockops", "link_sock_ingress", "link_bind4", "link_bind6",
                                      "link_release"};
// An additional interface of the deployment pins its links and these maps in a directory
// of its own (iface_pin_dir); the rest it shares with the first interface.
const char *const kIfaceMaps[] = {"bmc_stats"};
const char *const kSharedMaps[] = {"bmc_small", "bmc_large", "bmc_global_state", "bmc_allow",
                                   "bmc_local", "bmc_conns", "bmc_socks", "bmc_listeners", "bmc_trace_ring"};
constexpr const char *kIfacePinPrefix = "iface-";
constexpr const char *kSettingsPin = "bmc_settings";

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

std::string pin_path(const std::string &dir, const char *name) { return dir + "/" + name; }

}  // namespace

std::string cgroup2_root() {
    std::ifstream mounts("/proc/self/mounts");
    std::string dev, dir, type, rest;
    while (mounts >> dev >> dir >> type && std::getline(mounts, rest))
        if (type == "cgroup2") return dir;
    return "";
}

std::uint64_t netns_cookie() {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    std::uint64_t cookie = 0;
    socklen_t len = sizeof cookie;
    int err = fd < 0 ? -1 : getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len);
    if (fd >= 0) close(fd);
    if (err != 0 || cookie == 0)
        throw Error(std::string("cannot read this network namespace's cookie: ") + errno_text(errno));
    return cookie;
}

bool KernelBackend::pinned_at(const std::string &dir) {
    struct stat st;
    return stat(pin_path(dir, kXdpLink).c_str(), &st) == 0;
}

std::string KernelBackend::iface_pin_dir(const std::string &dir, const std::string &iface) {
    return dir + "/" + kIfacePinPrefix + iface;
}

std::vector<std::string> KernelBackend::pinned_extra_ifaces(const std::string &dir) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto &e : std::filesystem::directory_iterator(dir, ec)) {
        const std::string n = e.path().filename().string();
        if (n.rfind(kIfacePinPrefix, 0) == 0 && pinned_at(e.path().string())) out.push_back(n.substr(std::strlen(kIfacePinPrefix)));
    }
    std::sort(out.begin(), out.end());
    return out;
}

void KernelBackend::detach_pinned(const std::string &dir) {
    if (!pinned_at(dir)) throw Error("no pinned bmc deployment in " + dir);
    int lock = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (lock < 0) throw Error("cannot open " + dir + ": " + errno_text(errno));
    if (flock(lock, LOCK_EX | LOCK_NB) != 0) {
        close(lock);
        throw Error("a running bmcd serves the deployment in " + dir +
                    "; stop it first (it leaves the deployment pinned), then --detach");
    }
    // The pins hold the last references: unlinking them detaches the programs and frees
    // the maps once no process has them open. Every removal is checked.
    auto remove = [&](const std::string &d, const char *name) {
        if (unlink(pin_path(d, name).c_str()) != 0 && errno != ENOENT) {
            int e = errno;
            close(lock);
            throw Error("cannot remove " + pin_path(d, name) + ": " + errno_text(e) +
                        (e == EPERM || e == EACCES ? " (needs root)" : ""));
        }
    };
    for (const std::string &iface : pinned_extra_ifaces(dir)) {
        const std::string d = iface_pin_dir(dir, iface);
        remove(d, kXdpLink);
        remove(d, kTcLink);
        for (const char *name : kIfaceMaps) remove(d, name);
        rmdir(d.c_str());
    }
    remove(dir, kXdpLink);
    remove(dir, kTcLink);
    for (const char *name : kObserverLinks) remove(dir, name);
    // Connections already in the SOCKHASH keep its verdict until they leave it.
    if (int fd = bpf_obj_get(pin_path(dir, "bmc_socks").c_str()); fd >= 0) {
        std::uint64_t key;
        while (bpf_map_get_next_key(fd, nullptr, &key) == 0)
            if (bpf_map_delete_elem(fd, &key) != 0) break;
        close(fd);
    }
    for (const char *name : kPinnedMaps) remove(dir, name);
    remove(dir, kSettingsPin);
    close(lock);
    rmdir(dir.c_str());
}

void KernelBackend::discard_new_pins() {
    if (!created_pins_) return;
    if (pin_lock_fd_ >= 0) close(pin_lock_fd_);
    pin_lock_fd_ = -1;
    try {
        detach_pinned(opts_.pin_dir);
    } catch (const Error &) {
    }
    created_pins_ = pinned_ = false;
}

std::vector<const char *> KernelBackend::own_pinned_maps() const {
    if (opts_.share) return {std::begin(kIfaceMaps), std::end(kIfaceMaps)};
    return {std::begin(kPinnedMaps), std::end(kPinnedMaps)};
}

void KernelBackend::adopt_maps() {
    for (const char *name : own_pinned_maps()) {
        bpf_map *map = bpf_object__find_map_by_name(skel_->obj, name);
        int fd = bpf_obj_get(pin_path(opts_.pin_dir, name).c_str());
        if (!map || fd < 0) throw Error("pinned map " + pin_path(opts_.pin_dir, name) + " is missing");
        bpf_map_info info{};
        __u32 len = sizeof info;
        if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && info.max_entries != bpf_map__max_entries(map)) {
            close(fd);
            throw Error(std::string("pinned ") + name + " has " + std::to_string(info.max_entries) +
                        " entries, this bmcd wants " + std::to_string(bpf_map__max_entries(map)) +
                        " (use the same bucket counts, or --detach first)");
        }
        int err = bpf_map__reuse_fd(map, fd);
        close(fd);
        if (err) throw Error(std::string("cannot reuse pinned map ") + name + ": " + errno_text(err));
    }
    adopted_ = true;
}

void KernelBackend::share_maps() {
    for (const char *name : kSharedMaps) {
        bpf_map *map = bpf_object__find_map_by_name(skel_->obj, name);
        bpf_map *theirs = bpf_object__find_map_by_name(opts_.share->skel_->obj, name);
        if (int err = bpf_map__reuse_fd(map, bpf_map__fd(theirs)))
            throw Error(std::string("cannot share map ") + name + " with " + opts_.share->iface() + ": " + errno_text(err));
    }
}

// The effective configuration, pinned beside the cache so that bmcctl can inspect a
// deployment with no bmcd running (entries' ages against max_age, bucket indexes). The
// programs do not read it; every bmcd that serves the deployment writes its own.
void KernelBackend::pin_settings() {
    const std::string path = pin_path(opts_.pin_dir, kSettingsPin);
    int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "bmc_settings", sizeof(__u32), sizeof(bmc_config), 1, nullptr);
    if (fd < 0) throw Error("cannot make the settings map: " + errno_text(errno));
    const __u32 zero = 0;
    const bmc_config cfg = config();
    int err = bpf_map_update_elem(fd, &zero, &cfg, BPF_ANY);
    unlink(path.c_str());
    if (!err) err = bpf_obj_pin(fd, path.c_str());
    int e = errno;
    close(fd);
    if (err) throw Error("cannot pin " + path + ": " + errno_text(e));
}

void KernelBackend::pin_or_adopt_links() {
    const std::string xdp = pin_path(opts_.pin_dir, kXdpLink), tc = pin_path(opts_.pin_dir, kTcLink);
    const bool observer = !opts_.share;
    if (adopted_) {
        // bpf_link_update swaps the program under a live link: no moment without one.
        std::vector<std::pair<std::string, int>> links = {{xdp, xdp_prog_fd()}, {tc, tc_prog_fd()}};
        for (std::size_t i = 0; observer && i < observer_progs().size(); i++)
            links.emplace_back(pin_path(opts_.pin_dir, kObserverLinks[i]), bpf_program__fd(observer_progs()[i]));
        for (auto [path, prog] : links) {
            int fd = bpf_obj_get(path.c_str());
            if (fd < 0 || bpf_link_update(fd, prog, nullptr) != 0) {
                int e = errno;
                if (fd >= 0) close(fd);
                throw Error("cannot take over the pinned link " + path + ": " + errno_text(e));
            }
            close(fd);
        }
        if (observer) attach_verdict();
        pinned_ = true;
        if (observer) pin_settings();
        return;
    }
    if (tcx_link_fd_ < 0) throw Error("--pin needs TC egress as a TCX link (Linux 6.6 or later)");
    created_pins_ = true;
    if (bpf_obj_pin(xdp_link_fd_, xdp.c_str()) || bpf_obj_pin(tcx_link_fd_, tc.c_str()))
        throw Error("cannot pin links in " + opts_.pin_dir + ": " + errno_text(errno));
    for (std::size_t i = 0; i < cgroup_link_fds_.size(); i++)
        if (bpf_obj_pin(cgroup_link_fds_[i], pin_path(opts_.pin_dir, kObserverLinks[i]).c_str()))
            throw Error("cannot pin links in " + opts_.pin_dir + ": " + errno_text(errno));
    for (const char *name : own_pinned_maps()) {
        bpf_map *map = bpf_object__find_map_by_name(skel_->obj, name);
        if (bpf_obj_pin(bpf_map__fd(map), pin_path(opts_.pin_dir, name).c_str()))
            throw Error(std::string("cannot pin ") + name + ": " + errno_text(errno));
    }
    pinned_ = true;
    if (observer) pin_settings();
}

std::uint32_t check_bucket_count(const char *what, std::uint64_t n) {
    if (n == 0 || n > (1u << 24) || (n & (n - 1)))
        throw Error(std::string(what) + " must be a power of two between 1 and 16777216, got " +
                    std::to_string(n));
    return std::uint32_t(n);
}

KernelBackend::KernelBackend(const KernelOptions &opts) : opts_(opts) {
    check_bucket_count("small bucket count", opts.small_buckets);
    check_bucket_count("large bucket count", opts.large_buckets);
    if (opts_.attach && !opts_.observer_only) {
        ifindex_ = int(if_nametoindex(opts_.iface.c_str()));
        if (ifindex_ == 0) throw Error("interface '" + opts_.iface + "' not found");
    }

    if (opts_.object_file.empty()) {
        skel_ = bmc_kern__open();
    } else {
        // The skeleton's maps and programs, found by name in the variant's ELF instead.
        std::ifstream f(opts_.object_file, std::ios::binary);
        object_bytes_.assign(std::istreambuf_iterator<char>(f), {});
        if (!f || object_bytes_.empty()) throw Error("cannot read the BPF object " + opts_.object_file);
        std::size_t own_size = 0;
        const void *own = bmc_kern__elf_bytes(&own_size);
        if (data_layout(own, own_size) != data_layout(object_bytes_.data(), object_bytes_.size()))
            throw Error("the BPF object " + opts_.object_file +
                        " lays out its global variables unlike bmcd's own object, through whose skeleton they are set");
        skel_ = static_cast<bmc_kern *>(calloc(1, sizeof(bmc_kern)));
        if (skel_ && bmc_kern__create_skeleton(skel_) != 0) {
            free(skel_);
            skel_ = nullptr;
            errno = ENOMEM;
        }
        if (skel_) {
            skel_->skeleton->data = object_bytes_.data();
            skel_->skeleton->data_sz = object_bytes_.size();
            if (int err = bpf_object__open_skeleton(skel_->skeleton, nullptr)) {
                bmc_kern__destroy(skel_);
                skel_ = nullptr;
                errno = -err;
            }
        }
    }
    if (!skel_) throw Error("cannot open the BPF object: " + errno_text(errno));
    try {
        bmc_config &cfg = const_cast<bmc_config &>(skel_->rodata->bmc_cfg);
        cfg.port = opts_.port;
        cfg.small_mask = opts_.small_buckets - 1;
        cfg.large_mask = opts_.large_buckets - 1;
        cfg.max_age_ns = opts_.max_age_ns;
        cfg.fill_guard_ns = opts_.fill_guard_ns;
        cfg.clock_margin_ns = coarse_clock_margin_ns();
        cfg.max_amp = opts_.max_amp;
        cfg.netns_cookie = netns_cookie();
        if (opts_.attach && !opts_.observer_only) opts_.delivery = Delivery::of_interface(opts_.iface);
        cfg.loopback = opts_.delivery.loopback;
        std::memcpy(cfg.mac, opts_.delivery.mac.data(), 6);
        cfg.check_socket = (opts_.attach || opts_.check_socket_unattached) && opts_.check_socket;
        cfg.sock_memo_ns = opts_.sock_memo_ns;
        if (opts_.allow.prefixes().size() <= BMC_ALLOW_FAST) {
            bmc_allow_fast &allow = skel_->bss->bmc_allow_fast;
            for (const Prefix &p : opts_.allow.prefixes()) {
                bmc_allow_entry &e = allow.p[allow.n++];
                e.family = p.family;
                std::uint8_t mask[16] = {};
                for (std::uint32_t bit = 0; bit < p.len && bit < 128; bit++) mask[bit / 8] |= std::uint8_t(0x80 >> (bit % 8));
                std::memcpy(e.mask, mask, 16);
                std::uint8_t addr[16];
                for (int b = 0; b < 16; b++) addr[b] = p.addr[b] & mask[b];
                std::memcpy(e.addr, addr, 16);
            }
        }
        bmc_local_fast &fast = skel_->bss->bmc_local_fast;
        for (const auto &[addr, kind] : opts_.delivery.local) {
            const __u32 bit = bmc_local_filter_bit(addr.data()) & 255;
            fast.filter[bit >> 6] |= 1ULL << (bit & 63);
            if (kind == BMC_LOCAL_UNICAST && fast.n_unicast < BMC_LOCAL_FAST)
                std::memcpy(fast.unicast[fast.n_unicast++].b, addr.data(), 16);
        }
        cfg.check_delivery = opts_.check_delivery;
        cfg.general_only = opts_.general_only;
        if (opts_.allow.prefixes().size() > BMC_MAX_ALLOW)
            throw Error("at most " + std::to_string(BMC_MAX_ALLOW) + " allowlist prefixes");
        bpf_map__set_max_entries(skel_->maps.bmc_small, opts_.small_buckets);
        bpf_map__set_max_entries(skel_->maps.bmc_large, opts_.large_buckets);
        if (opts_.max_conns == 0) throw Error("the observer needs room for at least one connection");
        bpf_map__set_max_entries(skel_->maps.bmc_conns, opts_.max_conns);
        bpf_map__set_max_entries(skel_->maps.bmc_socks, opts_.max_conns);
        if (!opts_.pin_dir.empty()) {
            struct statfs fs;
            std::error_code ec;
            std::filesystem::create_directories(opts_.pin_dir, ec);
            if (statfs(opts_.pin_dir.c_str(), &fs) != 0 || fs.f_type != BPF_FS_MAGIC)
                throw Error(opts_.pin_dir + " is not on a BPF file system (mount -t bpf bpf /sys/fs/bpf)");
            // Held while this bmcd serves the deployment: --detach and a second bmcd --pin
            // see it and refuse.
            pin_lock_fd_ = open(opts_.pin_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (pin_lock_fd_ < 0 || flock(pin_lock_fd_, LOCK_EX | LOCK_NB) != 0)
                throw Error("another bmcd serves the deployment in " + opts_.pin_dir);
            if (pinned_at(opts_.pin_dir)) adopt_maps();
        }
        if (opts_.share) share_maps();
        if (int err = bmc_kern__load(skel_))
            throw Error("loading the BPF programs failed: " + errno_text(err) + load_hint(err));
        map_cache();
        const bool first = !opts_.share;  // the cache's owner: layout, allowlist, observer
        if (adopted_ && first) {
            const std::uint32_t v = __atomic_load_n(&cache_.global->layout_version, __ATOMIC_ACQUIRE);
            if (v != BMC_LAYOUT_VERSION && !opts_.adopt_new_epoch)
                throw Error("the pinned cache in " + opts_.pin_dir + " has layout version " + std::to_string(v) +
                            ", this bmcd uses " + std::to_string(BMC_LAYOUT_VERSION) +
                            " (--adopt-new-epoch adopts it with an empty cache, --detach removes it)");
            if (v != BMC_LAYOUT_VERSION) {
                flush_all();
                notice_ += "adopted a cache of layout version " + std::to_string(v) + " with a new epoch. ";
            }
        }
        if (first) __atomic_store_n(&cache_.global->layout_version, BMC_LAYOUT_VERSION, __ATOMIC_RELEASE);
        if (adopted_ && first) {  // the adopted allowlist is replaced by this instance's
            bmc_allow_key key{}, next{};
            while (bpf_map_get_next_key(bpf_map__fd(skel_->maps.bmc_allow), nullptr, &next) == 0) {
                key = next;
                bpf_map_delete_elem(bpf_map__fd(skel_->maps.bmc_allow), &key);
            }
        }
        for (const auto &[addr, kind] : opts_.delivery.local)
            if (bpf_map_update_elem(bpf_map__fd(skel_->maps.bmc_local), addr.data(), &kind, BPF_ANY))
                throw Error("cannot record the host's addresses: " + errno_text(errno));
        for (std::uint32_t vid : opts_.delivery.vlans) {
            std::uint8_t one = 1;
            if (bpf_map_update_elem(bpf_map__fd(skel_->maps.bmc_vlans), &vid, &one, BPF_ANY))
                throw Error("cannot record VLAN " + std::to_string(vid) + ": " + errno_text(errno));
        }
        for (const Prefix &p : first ? opts_.allow.prefixes() : std::vector<Prefix>{}) {
            bmc_allow_key key{};
            key.prefixlen = 8 + p.len;
            key.family = p.family;
            std::memcpy(key.addr, p.addr.data(), 16);
            std::uint8_t one = 1;
            if (bpf_map_update_elem(bpf_map__fd(skel_->maps.bmc_allow), &key, &one, BPF_ANY))
                throw Error("cannot add " + p.str() + " to the allowlist: " + errno_text(errno));
        }
        if (opts_.attach && adopted_) {
            ifindex_ = int(if_nametoindex(opts_.iface.c_str()));
            xdp_mode_ = "pinned";
            tc_mode_ = "tcx, pinned";
            if (first) open_cgroup();
            pin_or_adopt_links();
        } else if (opts_.observer_only) {
            open_cgroup();
            attach_observer();
        } else if (opts_.attach) {
            if (first) {
                open_cgroup();
                attach_observer();
            }
            attach_xdp();
            attach_tc();
            if (!opts_.pin_dir.empty()) pin_or_adopt_links();
        }
    } catch (...) {
        // Only what this instance pinned is removed: a refused adoption leaves the running
        // deployment as it was.
        if (pin_lock_fd_ >= 0) close(pin_lock_fd_);
        pin_lock_fd_ = -1;
        if (created_pins_) {
            try {
                detach_pinned(opts_.pin_dir);
            } catch (const Error &) {
            }
        }
        detach();
        if (cgroup_fd_ >= 0) close(cgroup_fd_);
        bmc_kern__destroy(skel_);
        throw;
    }
}

KernelBackend::~KernelBackend() {
    detach();
    if (pin_lock_fd_ >= 0) close(pin_lock_fd_);
    if (cgroup_fd_ >= 0) close(cgroup_fd_);
    if (small_map_) munmap(small_map_, small_len_);
    if (large_map_) munmap(large_map_, large_len_);
    if (global_map_) munmap(global_map_, global_len_);
    bmc_kern__destroy(skel_);
}

void KernelBackend::map_cache() {
    small_map_ = map_region(skel_->maps.bmc_small, small_len_);
    large_map_ = map_region(skel_->maps.bmc_large, large_len_);
    global_map_ = map_region(skel_->maps.bmc_global_state, global_len_);
    cache_.small = static_cast<bmc_small_bucket *>(small_map_);
    cache_.n_small = opts_.small_buckets;
    cache_.large = static_cast<bmc_large_bucket *>(large_map_);
    cache_.n_large = opts_.large_buckets;
    cache_.global = static_cast<bmc_global *>(global_map_);
}

void KernelBackend::attach_xdp() {
    int prog = bpf_program__fd(skel_->progs.bmc_rx);
    auto try_mode = [&](unsigned flags) {
        LIBBPF_OPTS(bpf_link_create_opts, lo, .flags = flags);
        return bpf_link_create(prog, ifindex_, BPF_XDP, &lo);
    };
    int fd = -1, native_err = 0;
    if (opts_.xdp_mode != XdpMode::Generic) {
        fd = try_mode(XDP_FLAGS_DRV_MODE);
        if (fd >= 0) {
            xdp_mode_ = "native";
        } else {
            native_err = fd;
            if (opts_.xdp_mode == XdpMode::Native)
                throw Error("native XDP attach to " + opts_.iface + " failed: " +
                            errno_text(native_err));
        }
    }
    if (fd < 0) {
        fd = try_mode(XDP_FLAGS_SKB_MODE);
        if (fd < 0)
            throw Error("XDP attach to " + opts_.iface + " failed: " + errno_text(fd) +
                        (fd == -EBUSY || fd == -EEXIST ? " (another XDP program is attached)" : ""));
        xdp_mode_ = "generic";
        if (native_err)
            notice_ += "native XDP unavailable on " + opts_.iface + " (" + errno_text(native_err) +
                       "); using generic XDP, which is slower. ";
    }
    xdp_link_fd_ = fd;
}

void KernelBackend::attach_tc() {
    int prog = bpf_program__fd(skel_->progs.bmc_tx);
    int tcx_err = 0;
    if (opts_.tc_attach != TcAttach::Netlink) {
        int fd = bpf_link_create(prog, ifindex_, static_cast<bpf_attach_type>(kBpfTcxEgress), nullptr);
        if (fd >= 0) {
            tcx_link_fd_ = fd;
            tc_mode_ = "tcx";
            return;
        }
        tcx_err = fd;
        if (opts_.tc_attach == TcAttach::Tcx)
            throw Error("TCX egress attach to " + opts_.iface + " failed: " + errno_text(fd));
    }
    // libbpf's tc hook API: a clsact qdisc and a direct-action filter. Unlike a link it
    // outlives the process if the process is killed; detach() removes it on exit.
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex_, .attach_point = BPF_TC_EGRESS);
    int err = bpf_tc_hook_create(&hook);
    if (err && err != -EEXIST)
        throw Error("creating the clsact qdisc on " + opts_.iface + " failed: " + errno_text(err));
    tc_hook_created_ = (err == 0);
    LIBBPF_OPTS(bpf_tc_opts, to, .prog_fd = prog, .handle = 0xb3c, .priority = 1);
    err = bpf_tc_attach(&hook, &to);
    if (err) {
        if (tc_hook_created_) bpf_tc_hook_destroy(&hook);
        tc_hook_created_ = false;
        throw Error("TC egress attach to " + opts_.iface + " failed: " + errno_text(err));
    }
    tc_netlink_attached_ = true;
    tc_mode_ = "netlink";
    if (tcx_err) notice_ += "TCX unavailable (" + errno_text(tcx_err) + "); using a tc filter. ";
}

std::vector<bpf_program *> KernelBackend::observer_progs() const {
    return {skel_->progs.bmc_sockops, skel_->progs.bmc_sock_ingress, skel_->progs.bmc_bind4,
            skel_->progs.bmc_bind6, skel_->progs.bmc_release};
}

void KernelBackend::open_cgroup() {
    cgroup_ = opts_.cgroup.empty() ? cgroup2_root() : opts_.cgroup;
    if (cgroup_.empty()) throw Error("no cgroup2 hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup/unified)");
    struct statfs fs;
    if (statfs(cgroup_.c_str(), &fs) != 0 || fs.f_type != CGROUP2_SUPER_MAGIC)
        throw Error("--cgroup " + cgroup_ + " is not a cgroup2 directory");
    cgroup_fd_ = open(cgroup_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cgroup_fd_ < 0) throw Error("cannot open cgroup " + cgroup_ + ": " + errno_text(errno));
}

// The stream verdict goes on the SOCKHASH before any socket can enter it: a socket takes
// the programs its map has when it is added.
void KernelBackend::attach_verdict() {
    if (bpf_prog_attach(bpf_program__fd(skel_->progs.bmc_stream), bpf_map__fd(skel_->maps.bmc_socks),
                        BPF_SK_SKB_STREAM_VERDICT, 0))
        throw Error("cannot attach the stream verdict to memcached's connections: " + errno_text(errno));
    verdict_attached_ = true;
}

void KernelBackend::attach_observer() {
    attach_verdict();
    for (bpf_program *prog : observer_progs()) {
        bpf_link *link = bpf_program__attach_cgroup(prog, cgroup_fd_);
        if (!link) {
            int err = errno;
            throw Error(std::string("cannot attach ") + bpf_program__name(prog) + " to cgroup " + cgroup_ + ": " +
                        errno_text(err) + load_hint(-err));
        }
        // Keep the link's file descriptor; the bpf_link object is only a wrapper.
        int fd = dup(bpf_link__fd(link));
        bpf_link__disconnect(link);
        bpf_link__destroy(link);
        if (fd < 0) throw Error("cannot keep a cgroup link: " + errno_text(errno));
        cgroup_link_fds_.push_back(fd);
    }
}

// Connections in the SOCKHASH keep its verdict until they leave it: empty it, and memcached
// reads them as it always did.
void KernelBackend::release_observed() {
    int fd = bpf_map__fd(skel_->maps.bmc_socks);
    std::uint64_t key;
    while (bpf_map_get_next_key(fd, nullptr, &key) == 0)
        if (bpf_map_delete_elem(fd, &key) != 0) break;
}

void KernelBackend::detach() {
    for (int fd : cgroup_link_fds_) close(fd);
    cgroup_link_fds_.clear();
    // A pinned deployment stays; anything attached on the way to a failed one goes.
    const bool keep = !opts_.pin_dir.empty() && pinned_;
    if (verdict_attached_ && !keep) {
        release_observed();
        bpf_prog_detach2(bpf_program__fd(skel_->progs.bmc_stream), bpf_map__fd(skel_->maps.bmc_socks),
                         BPF_SK_SKB_STREAM_VERDICT);
    }
    verdict_attached_ = false;
    // Pinned links stay attached after our file descriptors close.
    if (xdp_link_fd_ >= 0) close(xdp_link_fd_);
    xdp_link_fd_ = -1;
    if (tcx_link_fd_ >= 0) close(tcx_link_fd_);
    tcx_link_fd_ = -1;
    if (tc_netlink_attached_ && !keep) {
        LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex_, .attach_point = BPF_TC_EGRESS);
        LIBBPF_OPTS(bpf_tc_opts, to, .handle = 0xb3c, .priority = 1);
        bpf_tc_detach(&hook, &to);
        if (tc_hook_created_) {
            hook.attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
            bpf_tc_hook_destroy(&hook);
        }
        tc_netlink_attached_ = tc_hook_created_ = false;
    }
}

Counters KernelBackend::read_counters() const { return read_stats_map(bpf_map__fd(skel_->maps.bmc_stats)); }

Counters read_stats_map(int fd) {
    Counters total{};
    for (std::uint32_t i = 0; i < BMC_NUM_STATS; i++) total[i] = percpu_sum<std::uint64_t>(fd, i);
    return total;
}

bmc_config KernelBackend::config() const {
    return const_cast<const bmc_config &>(skel_->rodata->bmc_cfg);
}

int KernelBackend::stats_map_fd() const { return bpf_map__fd(skel_->maps.bmc_stats); }
int KernelBackend::trace_ring_fd() const { return bpf_map__fd(skel_->maps.bmc_trace_ring); }
int KernelBackend::xsks_map_fd() const { return bpf_map__fd(skel_->maps.bmc_xsks); }
int KernelBackend::small_map_fd() const { return bpf_map__fd(skel_->maps.bmc_small); }
int KernelBackend::large_map_fd() const { return bpf_map__fd(skel_->maps.bmc_large); }
int KernelBackend::global_map_fd() const { return bpf_map__fd(skel_->maps.bmc_global_state); }

void KernelBackend::set_mode(std::uint32_t mode) {
    __atomic_store_n(&cache_.global->mode, mode, __ATOMIC_SEQ_CST);
}

void KernelBackend::flush_all() { bmc_flush(cache_.global, monotonic_ns()); }

std::uint32_t KernelBackend::mode() const {
    return __atomic_load_n(&cache_.global->mode, __ATOMIC_SEQ_CST);
}

int KernelBackend::xdp_prog_fd() const { return bpf_program__fd(skel_->progs.bmc_rx); }
int KernelBackend::stream_test_prog_fd() const { return bpf_program__fd(skel_->progs.bmc_stream_test); }
int KernelBackend::sock_ingress_prog_fd() const { return bpf_program__fd(skel_->progs.bmc_sock_ingress); }
int KernelBackend::conns_map_fd() const { return bpf_map__fd(skel_->maps.bmc_conns); }
int KernelBackend::tc_prog_fd() const { return bpf_program__fd(skel_->progs.bmc_tx); }

}  // namespace bmc
