/* What the benchmark's BPF programs (bench.bpf.c) and its C++ tools share: the generator's
 * template, the per-request state the client keeps, the counters, the reply hash and the
 * latency histogram's buckets. Plain C, included by both sides. */
#ifndef BMC_BENCH_SHARED_H
#define BMC_BENCH_SHARED_H

#include <linux/types.h>

#define BENCH_MAX_FRAME 1024
#define BENCH_MAX_WIDTH 32
#define BENCH_KEY_MAX 32
/* Request ids are memcached's 16-bit frame ids. Request n uses id n mod 2^16 and the keys
 * in sequence slots (n * width + i) mod 2^16, so an id alone names the keys it asked for. */
#define BENCH_IDS 65536
/* The generator spreads its requests over BENCH_PORTS source ports: request n goes from
 * port gen_port + (n >> 16) % BENCH_PORTS, and the client keys its state by that port and
 * the id (bench_slot), so a slot comes round only every 2^20 requests. With one port, a
 * 16-bit id came round every 55 ms at a million requests/s, sooner than an overloaded
 * memcached's socket gives back a reply it queued; the late reply's datagrams were then
 * judged as those of the next request with its id (incomplete, wrong or unexpected). */
#define BENCH_PORTS 16
#define BENCH_SLOTS (BENCH_IDS * BENCH_PORTS)
/* memcached sends at most 1,400 bytes per datagram, frame header included. */
#define BENCH_MAX_PAYLOAD 1392
#define BENCH_HIST_SUB_BITS 4
#define BENCH_HIST_BUCKETS 640

struct bench_template {
    __u8 bytes[BENCH_MAX_FRAME];
    __u32 len;
    __u32 width;
    __u32 key_len;
    __u32 id_off;                   /* offset of the memcached request id */
    __u32 key_off[BENCH_MAX_WIDTH]; /* offsets of the keys in the frame */
};

struct bench_key {
    __u8 name[BENCH_KEY_MAX];
};

/* The client's state slot of a request: its source port's index and its id. */
static inline __u32 bench_slot(__u32 port_index, __u32 id)
{
    return (port_index % BENCH_PORTS) << 16 | (id & (BENCH_IDS - 1));
}

/* One per request slot (bench_slot), written by the generator when it sends, consumed by the sink. */
struct bench_request {
    __u64 sent_ns; /* bpf_ktime_get_ns() when the request was built */
    __u64 sum;     /* sum of the item hashes received so far */
    __u32 items;   /* items received so far */
    __u32 outstanding;
};

/* Per-CPU pacing of the generator: while period is set, a run that is not yet due
 * returns XDP_DROP at once (it spins in the kernel) instead of sending. Times in 1/16 ns,
 * so that the period keeps its fraction. */
struct bench_pace {
    __u64 next;    /* when the next request is due */
    __u64 period;  /* 0: as fast as possible */
    __u64 lagged;  /* times the generator fell more than 1 ms behind and skipped ahead */
};

/* Per-CPU counters (one record, one lookup per packet). */
struct bench_counters {
    __u64 generated;  /* requests built by the generator */
    __u64 echoed;     /* requests bounced by the echo floor */
    __u64 datagrams;  /* datagrams from the server to the generator's port */
    __u64 answered;   /* requests whose reply was complete and exactly right */
    __u64 wrong;      /* replies that were complete but not what memcached would send */
    __u64 missed;     /* replies without any item ("END\r\n" alone) */
    __u64 incomplete; /* replies whose last datagram came with items missing */
    __u64 unexpected; /* datagrams for an id that has no request outstanding */
    __u64 bad_header; /* datagrams with a wrong frame header, address, port or length */
};

/* The reply hash: an item of length len >= 8 is read as little-endian words at 0, 8, ...,
 * and its last word at len - 8 (overlapping the one before it when len is not a multiple
 * of 8). The item's position in the reply seeds its hash, so that a reply with the right
 * items in the wrong order does not match. */
static inline __u64 bench_mix(__u64 h, __u64 w)
{
    h ^= w;
    h *= 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 31);
}

static inline __u64 bench_item_seed(__u32 pos)
{
    return 0x243F6A8885A308D3ULL + (__u64)pos * 0xD6E8FEB86659FD93ULL;
}

static inline __u64 bench_item_final(__u64 h, __u32 len)
{
    return bench_mix(h, len);
}

static inline __u32 bench_words_per_item(__u32 len)
{
    return (len + 7) / 8;
}

/* Word k of an item of length len. */
static inline __u32 bench_word_offset(__u32 k, __u32 len)
{
    return k + 1 < bench_words_per_item(len) ? k * 8 : len - 8;
}

/* Log-linear buckets, 2^BENCH_HIST_SUB_BITS per power of two (6 % wide): values below
 * 16 ns are exact. Branches only, no loop, so that BPF computes it cheaply. */
static inline __u32 bench_log2(__u64 v)
{
    __u32 r = 0;
    if (v >> 32) { v >>= 32; r += 32; }
    if (v >> 16) { v >>= 16; r += 16; }
    if (v >> 8) { v >>= 8; r += 8; }
    if (v >> 4) { v >>= 4; r += 4; }
    if (v >> 2) { v >>= 2; r += 2; }
    if (v >> 1) r += 1;
    return r;
}

static inline __u32 bench_hist_bucket(__u64 v)
{
    const __u32 sub = 1u << BENCH_HIST_SUB_BITS;
    __u32 msb, shift, b;
    if (v < sub)
        return (__u32)v;
    msb = bench_log2(v);
    shift = msb - BENCH_HIST_SUB_BITS;
    b = sub + shift * sub + (__u32)((v >> shift) - sub);
    return b < BENCH_HIST_BUCKETS ? b : BENCH_HIST_BUCKETS - 1;
}

/* The smallest value that lands in bucket b. */
static inline __u64 bench_hist_lower(__u32 b)
{
    const __u32 sub = 1u << BENCH_HIST_SUB_BITS;
    if (b < sub)
        return b;
    return (__u64)((b - sub) % sub + sub) << ((b - sub) / sub);
}

#endif
