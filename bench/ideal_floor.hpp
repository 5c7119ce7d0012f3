// The floor of a hit (bench/bench_ideal.bpf.c) loaded on a KernelBackend's cache maps.
#pragma once

#include <bpf/libbpf.h>

#include <cstring>

#include "kernel_backend.hpp"
#include "percpu.hpp"
#include "bmc_cache.h"
#include "bmc_bench_ideal.skel.h"

namespace bmc::bench {

// The ideal-hit floor (bench/bench_ideal.bpf.c) on the cache maps of be, configured as be.
struct IdealFloor {
    bmc_bench_ideal *skel = nullptr;
    explicit IdealFloor(const bmc::KernelBackend &be) {
        skel = bmc_bench_ideal__open();
        if (!skel) throw bmc::Error("cannot open the ideal-hit floor's object");
        const bmc_config cfg = be.config();
        std::memcpy(const_cast<bmc_config *>(&skel->rodata->ideal_cfg), &cfg, sizeof cfg);
        if (bpf_map__reuse_fd(skel->maps.bmc_small, be.small_map_fd()) ||
            bpf_map__reuse_fd(skel->maps.bmc_large, be.large_map_fd()) ||
            bpf_map__reuse_fd(skel->maps.bmc_global_state, be.global_map_fd()) || bmc_bench_ideal__load(skel)) {
            bmc_bench_ideal__destroy(skel);
            throw bmc::Error("cannot load the ideal-hit floor on the cache's maps");
        }
    }
    ~IdealFloor() { bmc_bench_ideal__destroy(skel); }
    IdealFloor(const IdealFloor &) = delete;
    IdealFloor &operator=(const IdealFloor &) = delete;
    int fd() const { return bpf_program__fd(skel->progs.bench_ideal_hit); }
    std::uint64_t answered() const { return percpu_sum<std::uint64_t>(bpf_map__fd(skel->maps.ideal_answered), 0); }
};

}  // namespace bmc::bench
