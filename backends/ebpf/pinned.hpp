// A pinned deployment read without bmcd (bmcctl): the cache memory, the counters, the
// configuration the last bmcd pinned, and the interfaces its links serve. It takes no
// lock and attaches nothing; flush() is the one write, the same bmc_flush bmcd does.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernel_backend.hpp"

namespace bmc {

class PinnedDeployment {
public:
    // Opens the pins in pin_dir; throws bmc::Error if it holds no bmc deployment.
    explicit PinnedDeployment(const std::string &pin_dir);
    ~PinnedDeployment();
    PinnedDeployment(const PinnedDeployment &) = delete;
    PinnedDeployment &operator=(const PinnedDeployment &) = delete;

    const bmc_config &config() const { return config_; }
    CacheMemory cache() const { return cache_; }
    // Every interface's counters, summed; and each interface's.
    Counters counters() const;
    std::vector<std::pair<std::string, Counters>> counters_by_iface() const;
    // The interfaces the pinned XDP links are attached to, the first one first.
    const std::vector<std::string> &ifaces() const { return ifaces_; }
    // Whether a bmcd serves the deployment now (it holds the directory's lock).
    bool served() const;
    void flush();
    const std::string &dir() const { return dir_; }

private:
    void release();
    std::string dir_;
    bmc_config config_{};
    CacheMemory cache_;
    std::vector<std::string> ifaces_;
    std::vector<int> stats_fds_;
    struct Region {
        void *p = nullptr;
        std::size_t len = 0;
    };
    std::vector<Region> regions_;
};

}  // namespace bmc
