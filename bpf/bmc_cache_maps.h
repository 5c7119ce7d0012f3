/* The cache's maps: buckets of the small and the large table and the global state, their
 * entries laid out by core/ (bmc_gen.h, included before this). bmcd sizes the tables
 * before load and maps them into its memory. Defined here once for bmc.bpf.c and for
 * programs that read the same cache through bmcd's descriptors (bench/bench_ideal.bpf.c). */
#ifndef BMC_CACHE_MAPS_H
#define BMC_CACHE_MAPS_H

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __uint(max_entries, BMC_DEFAULT_SMALL_BUCKETS);
    __type(key, __u32);
    __type(value, struct bmc_small_bucket);
} bmc_small SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __uint(max_entries, BMC_DEFAULT_LARGE_BUCKETS);
    __type(key, __u32);
    __type(value, struct bmc_large_bucket);
} bmc_large SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct bmc_global);
} bmc_global_state SEC(".maps");

#endif /* BMC_CACHE_MAPS_H */
