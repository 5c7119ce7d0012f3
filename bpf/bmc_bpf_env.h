/* The BPF side's environment for the core (bmc.bpf.c, and programs that read bmc's cache
 * through bmcd's map descriptors: bench/bench_ideal.bpf.c): what the shared code expects
 * defined, the generated core (bmc_gen.h), the cache's maps and the coarse clock a hit
 * judges ages by. Included once, after the BPF helper headers. */
#ifndef BMC_BPF_ENV_H
#define BMC_BPF_ENV_H

/* Environment for the shared code. Ordering: see core/bmc_cache.h (x86-64 TSO). */
#define BMC_READ_ONCE(x) (*(volatile __typeof__(x) *)&(x))
#define BMC_WRITE_ONCE(x, v) (*(volatile __typeof__(x) *)&(x) = (v))
/* The source of every copy is a map value the caller already validated; the helper
 * copies a variable length in one call where a byte loop would cost verifier states. An
 * item that fits a small entry (the common case) is copied whole, BMC_SMALL_DATA bytes
 * in words, without the helper: every entry has that many data bytes, and the reply
 * uses only len of them. */
#define BMC_COPY_FROM_ENTRY(dst, src, len)                                                       \
    do {                                                                                         \
        if ((len) <= BMC_SMALL_DATA)                                                             \
            bmc_copy_small((dst), (src));                                                        \
        else                                                                                     \
            bpf_probe_read_kernel((dst), (len), (src));                                          \
    } while (0)
#define BMC_COPY_TO_ENTRY(dst, src, len) bpf_probe_read_kernel((dst), (len), (src))

#define BMC_SUBPROG __attribute__((noinline))
/* Hides a value's range from clang, so that the masks the verifier needs are emitted. */
#define BMC_OPAQUE(x) asm volatile("" : "+r"(x))
#include "bmc_gen.h"

static __always_inline void bmc_copy_small(void *dst, const void *src)
{
    __u32 i;

#pragma unroll
    for (i = 0; i < BMC_SMALL_DATA / 8; i++)
        ((__u64 *)dst)[i] = ((const __u64 *)src)[i];
}

/* The cache's maps: buckets of the small and the large table and the global state, their
 * entries laid out by core/. bmcd sizes the tables before load and maps them. */
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

struct bmc_coarse_clock {
    __u64 jiffies, ns; /* bmc_coarse_now's reading and the tick it was taken in */
};

/* The coarse clock for a hit, read once per tick per CPU rather than once per get (the
 * helper call cost a hit 25 to 35 ns). The coarse clock changes only at a tick, just after
 * jiffies does, and jiffies is free to read (the verifier inlines bpf_jiffies64 as a
 * load): a reading is reused while jiffies is unchanged. It may have been taken between
 * the two updates, still holding the previous tick's time, so it lags real time by up
 * to a tick more than the coarse clock itself: bmcd's clock_margin_ns covers three ticks
 * (coarse_clock_margin_ns). */
static __always_inline __u64 bmc_coarse_now(struct bmc_coarse_clock *c)
{
    __u64 j = bpf_jiffies64();

    if (j != c->jiffies || !c->ns) {
        c->ns = bpf_ktime_get_coarse_ns();
        c->jiffies = j;
    }
    return c->ns;
}

#endif /* BMC_BPF_ENV_H */
