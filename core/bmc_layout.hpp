// bmc core: constants, the cache memory layout, counters and the command table.
//
// This is the single definition shared by userspace and BPF. The generator
// (core/gen/bmc_gen.cpp) instantiates every X-macro below a second time as C for the
// BPF programs, with size and offset asserts computed from this instantiation.
#pragma once

#include <linux/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <initializer_list>

// ---- constants ---------------------------------------------------------------------------
// X(name, value): emitted to BPF as an enum constant of the same name.
#define BMC_CONSTANTS(X)                                                                        \
    X(BMC_DEFAULT_PORT, 11211)                                                                  \
    X(BMC_FRAME_HDR_LEN, 8)         /* memcached UDP frame: id, seq, total, reserved (BE16) */  \
    X(BMC_MAX_KEY_LEN, 250)                                                                     \
    X(BMC_MAX_KEYS, 32)             /* keys per get datagram answered from the cache */         \
    X(BMC_MTU, 1500)                                                                            \
    X(BMC_ETH_HLEN, 14)                                                                         \
    X(BMC_MAX_PAYLOAD, 1472)        /* UDP payload of a 1500-byte IPv4 datagram */              \
    X(BMC_MAX_REPLY, 1400)          /* memcached's UDP_MAX_PAYLOAD_SIZE, frame header included */\
    X(BMC_SCRATCH_MASK, 2047)       /* payload offsets are masked with this for the verifier */ \
    X(BMC_SCRATCH_IN, 2560)         /* >= mask + 1 + max key: a masked key stays in bounds */   \
    X(BMC_SCRATCH_OUT, 4096)        /* >= mask + 1 + BMC_LARGE_DATA */                          \
    X(BMC_HDR_MAX, 256)             /* frame headers parsed: Ethernet to TCP/UDP, a power of 2 */\
    X(BMC_SMALL_WAYS, 4)                                                                        \
    X(BMC_LARGE_WAYS, 2)                                                                        \
    X(BMC_ENTRY_HDR_LEN, 32)                                                                    \
    X(BMC_SMALL_DATA, 96)           /* 128-byte entry: a 16 B key + 32 B value item fits */     \
    X(BMC_LARGE_DATA, 1504)         /* 1536-byte entry: any item that fits one reply */         \
    X(BMC_LEASE_SLOTS, 3)                                                                       \
    X(BMC_MAX_TOKEN_WORD, 16)       /* command names are matched on their first 16 bytes */     \
    X(BMC_MAX_SCAN_CMDS, 64)        /* binary commands walked per packet */                     \
    X(BMC_DEFAULT_MAX_AGE_S, 10)    /* --max-age */                                              \
    X(BMC_DEFAULT_FILL_GUARD_MS, 10) /* --fill-guard-ms */                                       \
    X(BMC_CMD_GET, 0)               /* the command table's row of "get" */                      \
    X(BMC_MODE_KERNEL, 0)           /* XDP answers gets */                                      \
    X(BMC_MODE_AFXDP, 1)            /* XDP hands gets to the AF_XDP socket of their queue */    \
    X(BMC_MAX_QUEUES, 64)                                                                       \
    X(BMC_DEFAULT_MAX_AMP, 10)      /* reply bytes per request byte answered from the cache */  \
    X(BMC_MAX_ALLOW, 256)           /* allowlist prefixes */                                    \
    X(BMC_MAX_RELATIVE_DELAY, 2592000) /* memcached: larger exptimes are Unix times */          \
    X(BMC_DEFAULT_SMALL_BUCKETS, 16384)                                                         \
    X(BMC_DEFAULT_LARGE_BUCKETS, 1024)                                                          \
    X(BMC_LAYOUT_VERSION, 3)        /* bump when the cache's layout or meaning changes */      \
    X(BMC_DEFAULT_CONNS, 4096)      /* observed memcached connections (its -c default: 1024) */ \
    X(BMC_OBS_WINDOW, 2048)         /* stream bytes copied to scratch at a time (mask + 1) */   \
    X(BMC_FLUSH_EARLY_S, 2)         /* memcached may apply flush_all N up to 2 s before N */    \
    X(BMC_LOCAL_UNICAST, 1)         /* bmc_local value: an address of this host */              \
    X(BMC_LOCAL_BROADCAST, 2)       /* bmc_local value: a broadcast address of this host */     \
    X(BMC_LOCAL_FAST, 4)            /* host unicast addresses matched without a map lookup */   \
    X(BMC_SOCK_MEMOS, 4)            /* destinations whose socket lookup is remembered, per CPU */\
    X(BMC_DEFAULT_SOCK_MEMO_MS, 10) /* --socket-memo-ms */                                      \
    X(BMC_ALLOW_FAST, 4)            /* allowlists this short are matched without the trie */    \
    X(BMC_TRACE_KEY, 48)            /* key bytes a trace record keeps */                        \
    X(BMC_TRACE_GET, 1)             /* trace record kinds: a get datagram's decision, */        \
    X(BMC_TRACE_FILL, 2)            /* a fill's outcome, */                                     \
    X(BMC_TRACE_INVAL, 3)           /* an invalidation, */                                      \
    X(BMC_TRACE_EPOCH, 4)           /* a new epoch */                                           \
    X(BMC_TRACE_KERNEL, 1)          /* where: the BPF programs (XDP, TC, the observer) */       \
    X(BMC_TRACE_USER, 2)            /* the C++ core in userspace (the AF_XDP pollers, relay) */ \
    X(BMC_TRACE_PATH_NONE, 0)       /* an invalidation's path: none (no request caused it), */  \
    X(BMC_TRACE_PATH_TCP, 1)        /* a TCP connection's stream, */                            \
    X(BMC_TRACE_PATH_UDP, 2)        /* a UDP datagram */                                        \
    X(BMC_TRACE_CMD_NONE, 0xff)     /* trace cmd: no request, */                                \
    X(BMC_TRACE_CMD_BINARY, 0x80)   /* a binary opcode (or'ed in); else a command table row */

#define BMC_DECLARE_CONSTANT(name, value) inline constexpr std::uint32_t name = value;
BMC_CONSTANTS(BMC_DECLARE_CONSTANT)
#undef BMC_DECLARE_CONSTANT

// ---- structs -----------------------------------------------------------------------------
// F(type, name) is a scalar field; A(type, name, count) an array field. Field order is
// the wire/memory order; padding is explicit so that C and C++ agree without attributes.

// Per-entry header. An entry is a seqlock: seq is odd while a writer owns it. It is
// servable only while gen equals its index bucket's gen and epoch the global epoch.
#define BMC_ENTRY_HDR_FIELDS(F, A)                                                              \
    F(__u32, seq)                                                                               \
    F(__u32, hash)                                                                              \
    F(__u32, gen)                                                                               \
    F(__u32, epoch)                                                                             \
    F(__u64, fill_ns)                                                                           \
    F(__u16, item_len)        /* bytes of "VALUE <key> <flags> <bytes>\r\n<data>\r\n" */        \
    F(__u8, key_len)                                                                            \
    F(__u8, pad0)                                                                               \
    F(__u32, pad1)

// Bucket header: the invalidation generation of every key hashed to this bucket, and
// the leases handed out on misses. A lease word packs (hash, gen) so that one aligned
// 64-bit store publishes it; lease_ns is when the first outstanding miss was seen.
#define BMC_BUCKET_HDR_FIELDS(F, A)                                                             \
    F(__u32, gen)                                                                               \
    F(__u32, pad0)                                                                              \
    F(__u64, last_inval_ns)                                                                     \
    A(__u64, lease_word, BMC_LEASE_SLOTS)                                                       \
    A(__u64, lease_ns, BMC_LEASE_SLOTS)

#define BMC_SMALL_ENTRY_FIELDS(F, A)                                                            \
    F(struct bmc_entry_hdr, h)                                                                  \
    A(__u8, data, BMC_SMALL_DATA)

#define BMC_LARGE_ENTRY_FIELDS(F, A)                                                            \
    F(struct bmc_entry_hdr, h)                                                                  \
    A(__u8, data, BMC_LARGE_DATA)

#define BMC_SMALL_BUCKET_FIELDS(F, A)                                                           \
    F(struct bmc_bucket_hdr, hdr)                                                               \
    A(struct bmc_small_entry, way, BMC_SMALL_WAYS)

// Large buckets use only their entries; the key's gen and leases live in its small bucket.
#define BMC_LARGE_BUCKET_FIELDS(F, A)                                                           \
    F(struct bmc_bucket_hdr, hdr)                                                               \
    A(struct bmc_large_entry, way, BMC_LARGE_WAYS)

// Global state: flush_all bumps the epoch; mode says which backend answers gets.
#define BMC_GLOBAL_FIELDS(F, A)                                                                 \
    F(__u32, epoch)                                                                             \
    F(__u32, mode)            /* BMC_MODE_KERNEL or BMC_MODE_AFXDP */                           \
    F(__u64, last_flush_ns)                                                                     \
    F(__u64, flush_at_ns)     /* flush_all N: from then on, entries filled before ... */        \
    F(__u64, flush_cutoff_ns) /* ... this moment are dead (flush_at_ns <= flush_cutoff_ns) */ \
    F(__u32, layout_version)  /* BMC_LAYOUT_VERSION of whoever made the cache */               \
    F(__u32, trace_every)     /* trace 1 in this many decisions (0: tracing off) */

// Load-time configuration (BPF .rodata, set before load).
#define BMC_CONFIG_FIELDS(F, A)                                                                 \
    F(__u16, port)                                                                              \
    F(__u16, pad0)                                                                              \
    F(__u32, small_mask)      /* small buckets - 1 (a power of two) */                          \
    F(__u32, large_mask)                                                                        \
    F(__u32, max_amp)         /* a reply is at most this many times its request's payload */   \
    F(__u64, max_age_ns)      /* entries older than this are not served */                      \
    F(__u64, fill_guard_ns)   /* a miss this soon after a write cannot lease a fill */         \
    F(__u64, netns_cookie)    /* memcached's network namespace (0: any): whose sockets are watched */\
    A(__u8, mac, 6)           /* the interface's MAC: only frames sent to it are answered */    \
    F(__u8, loopback)         /* the interface is a loopback device (127/8 sources are fine) */ \
    F(__u8, check_socket)     /* answer only if memcached has a UDP socket for the destination */\
    F(__u8, check_delivery)   /* the stack-delivery checks (off only to measure their cost) */  \
    F(__u8, general_only)     /* no fast path for "get <key>" (to compare and measure the two) */\
    A(__u8, pad1, 6)                                                                            \
    F(__u64, clock_margin_ns) /* how far the receive side's clock may lag (see bmc_rx_live_now) */\
    F(__u64, sock_memo_ns)    /* how long a socket lookup's answer is remembered (0: never) */

// Command table row: a name packed little-endian into two words, what it does (its
// kind, and the kind's rule and flags from bmc_kind_specs) and which argument holds its
// key.
#define BMC_CMD_FIELDS(F, A)                                                                    \
    F(__u64, w0)                                                                                \
    F(__u64, w1)                                                                                \
    F(__u8, len)                                                                                \
    F(__u8, kind)                                                                               \
    F(__u8, key_arg)                                                                            \
    F(__u8, family)                                                                             \
    F(__u8, data_arg)         /* storage command: the token giving the data block's length */   \
    F(__u8, min_args)         /* tokens a storage line needs for memcached to read its data */  \
    F(__u8, max_args)                                                                           \
    F(__u8, num_mask)         /* tokens memcached parses as numbers before reading the data */\
    F(__u8, rule)             /* bmc_kind_specs[kind].rule: how the grammar reads its tokens */ \
    F(__u8, kflags)           /* bmc_kind_specs[kind].flags (BMC_KF_*) */                       \
    A(__u8, pad0, 6)

// Per-CPU scratch: the L4 payload being parsed, and the reply being built. Offsets into
// both are masked with BMC_SCRATCH_MASK, which keeps every access provably in bounds.
#define BMC_SCRATCH_FIELDS(F, A)                                                                \
    A(__u8, in, BMC_SCRATCH_IN)                                                                 \
    A(__u8, out, BMC_SCRATCH_OUT)                                                               \
    A(__u8, hdr, BMC_HDR_MAX)                                                                   \
    F(__u32, trace_count)       /* decisions since the last one traced (per CPU, per poller) */ \
    F(__u32, pad0)

// One decision, for the trace (bmcctl trace): what happened, and the counter that says
// why. Gets carry the client and their (last) key; fills their key; invalidations the
// key's hash, and with epochs the request that caused them: its path and command.
#define BMC_TRACE_FIELDS(F, A)                                                                  \
    F(__u64, time_ns)                                                                           \
    F(__u32, hash)                                                                              \
    F(__u16, reason)          /* a BMC_STAT_*: hit_requests, pass_*, miss_*, fill_*, inval_* */ \
    F(__u16, port)            /* the client's UDP port (gets) */                                \
    F(__u8, what)             /* BMC_TRACE_GET, _FILL, _INVAL, _EPOCH */                        \
    F(__u8, where)            /* BMC_TRACE_KERNEL or _USER */                                   \
    F(__u8, key_len)          /* the key's length (its first BMC_TRACE_KEY bytes are kept) */   \
    F(__u8, family)           /* the client's: 4 or 6 */                                        \
    F(__u8, cmd)              /* invalidations, epochs: BMC_TRACE_CMD_* or a command table row */ \
    F(__u8, path)             /* invalidations, epochs: BMC_TRACE_PATH_* */                     \
    A(__u8, addr, 16)         /* the client, IPv4 as ::ffff:a.b.c.d */                          \
    A(__u8, key, BMC_TRACE_KEY)

// Where a frame's L4 payload is, as bmc_parse_frame() found it.
#define BMC_FRAME_FIELDS(F, A)                                                                  \
    F(__u32, l4_off)                                                                            \
    F(__u32, payload_off)                                                                       \
    F(__u32, payload_len)     /* payload bytes present in this frame */                         \
    F(__u8, proto)            /* 6 (TCP), 17 (UDP), or 0: not for the cache */                  \
    F(__u8, plain)            /* untagged Ethernet, IPv4 without options, unfragmented */       \
    F(__u8, to_server)        /* destination port is memcached's */                             \
    F(__u8, from_server)      /* source port is memcached's */                                  \
    F(__u8, malformed)        /* lengths that contradict each other */                          \
    F(__u8, complete)         /* the whole UDP datagram is in this frame */                     \
    F(__u8, answerable)       /* 4: IPv4 (options allowed), 6: IPv6 without extension headers; \
                                 at most one VLAN tag, unfragmented; 0: not answered */         \
    F(__u8, l3_off)           /* offset of the IP header */                                     \
    A(__u8, src, 16)          /* source address; IPv4 as ::ffff:a.b.c.d */

// Allowlist (LPM trie) key: prefix length in bits over the family byte (4 or 6: what the
// client speaks) and a 16-byte address, IPv4 mapped into ::ffff:0:0/96; so an IPv6 prefix
// admits IPv6 clients only. The trailing pad is never within a prefix.
#define BMC_ALLOW_KEY_FIELDS(F, A)                                                              \
    F(__u32, prefixlen)                                                                         \
    F(__u8, family)                                                                             \
    A(__u8, addr, 16)                                                                           \
    A(__u8, pad, 3)

// A key's bytes, as seen by the key comparison (256 >= BMC_MAX_KEY_LEN).
#define BMC_KEYBYTES_FIELDS(F, A) A(__u8, b, 256)
// An address (IPv4 mapped into ::ffff:0:0/96): the bmc_local map's key.
#define BMC_KEYBYTES16_FIELDS(F, A) A(__u8, b, 16)

// The host's addresses, in front of the bmc_local map for the two lookups every answered
// get makes: bit bmc_local_filter_bit(a) of filter is set for every host address a, so a
// clear bit rules a source out without a map lookup; the first BMC_LOCAL_FAST unicast
// addresses are matched in place. Written with bmc_local, by whoever writes that map.
// An allowlist of at most BMC_ALLOW_FAST prefixes, matched in place of the bmc_allow LPM
// trie (n = 0: longer lists use the trie): a client is allowed if its family is family
// and its address (as bmc_frame.src, in 32-bit words) equals addr under mask.
#define BMC_ALLOW_ENTRY_FIELDS(F, A)                                                            \
    F(__u32, family)                                                                            \
    A(__u32, addr, 4)                                                                           \
    A(__u32, mask, 4)

#define BMC_ALLOW_FAST_FIELDS(F, A)                                                             \
    F(__u32, n)                                                                                 \
    A(struct bmc_allow_entry, p, BMC_ALLOW_FAST)

// The socket lookup's answer for one destination address (bmc_sock_memo_find): valid
// while the global epoch is the one it was looked up in and the clock is before until_ns.
#define BMC_SOCK_MEMO_FIELDS(F, A)                                                              \
    A(__u32, addr, 4)         /* the destination, IPv4 as ::ffff:a.b.c.d (as bmc_frame.src) */  \
    F(__u64, until_ns)                                                                          \
    F(__u32, epoch)                                                                             \
    F(__u8, family)           /* 4 or 6; 0: empty */                                            \
    F(__u8, deliverable)                                                                        \
    A(__u8, pad0, 2)

#define BMC_LOCAL_FAST_FIELDS(F, A)                                                             \
    A(__u64, filter, 4)                                                                         \
    A(struct bmc_keybytes16, unicast, BMC_LOCAL_FAST)                                           \
    F(__u32, n_unicast)                                                                         \
    F(__u32, pad0)

// Every struct, in dependency order: X(name, FIELDS, alignment).
#define BMC_STRUCTS(X)                                                                          \
    X(bmc_entry_hdr, BMC_ENTRY_HDR_FIELDS, 8)                                                   \
    X(bmc_bucket_hdr, BMC_BUCKET_HDR_FIELDS, 64)                                                \
    X(bmc_small_entry, BMC_SMALL_ENTRY_FIELDS, 64)                                              \
    X(bmc_large_entry, BMC_LARGE_ENTRY_FIELDS, 64)                                              \
    X(bmc_small_bucket, BMC_SMALL_BUCKET_FIELDS, 64)                                            \
    X(bmc_large_bucket, BMC_LARGE_BUCKET_FIELDS, 64)                                            \
    X(bmc_global, BMC_GLOBAL_FIELDS, 8)                                                         \
    X(bmc_config, BMC_CONFIG_FIELDS, 8)                                                         \
    X(bmc_cmd, BMC_CMD_FIELDS, 8)                                                               \
    X(bmc_trace, BMC_TRACE_FIELDS, 8)                                                           \
    X(bmc_scratch, BMC_SCRATCH_FIELDS, 8)                                                       \
    X(bmc_frame, BMC_FRAME_FIELDS, 4)                                                           \
    X(bmc_keybytes, BMC_KEYBYTES_FIELDS, 1)                                                     \
    X(bmc_keybytes16, BMC_KEYBYTES16_FIELDS, 1)                                                 \
    X(bmc_local_fast, BMC_LOCAL_FAST_FIELDS, 8)                                                 \
    X(bmc_sock_memo, BMC_SOCK_MEMO_FIELDS, 8)                                                   \
    X(bmc_allow_entry, BMC_ALLOW_ENTRY_FIELDS, 4)                                               \
    X(bmc_allow_fast, BMC_ALLOW_FAST_FIELDS, 4)                                                 \
    X(bmc_allow_key, BMC_ALLOW_KEY_FIELDS, 4)

#define BMC_FIELD_SCALAR(type, name) type name;
#define BMC_FIELD_ARRAY(type, name, count) type name[count];
#define BMC_DECLARE_STRUCT(sname, FIELDS, align)                                                \
    struct alignas(align) sname {                                                               \
        FIELDS(BMC_FIELD_SCALAR, BMC_FIELD_ARRAY)                                               \
    };
BMC_STRUCTS(BMC_DECLARE_STRUCT)
#undef BMC_DECLARE_STRUCT

// Sizes the rest of the design depends on: the cache line, and a small item far below
// BMC's 1320-byte slot.
static_assert(sizeof(bmc_entry_hdr) == BMC_ENTRY_HDR_LEN);
static_assert(sizeof(bmc_bucket_hdr) == 64);
static_assert(sizeof(bmc_sock_memo) == 32);
static_assert((BMC_SOCK_MEMOS & (BMC_SOCK_MEMOS - 1)) == 0, "the memo slot is a mask");
static_assert(sizeof(bmc_small_entry) == 128);
static_assert(sizeof(bmc_large_entry) == 1536);
static_assert(sizeof(bmc_small_bucket) % 64 == 0 && sizeof(bmc_large_bucket) % 64 == 0);
static_assert(BMC_SCRATCH_IN >= BMC_SCRATCH_MASK + 1 + BMC_MAX_KEY_LEN + 8);
static_assert(BMC_SCRATCH_OUT >= BMC_SCRATCH_MASK + 1 + BMC_LARGE_DATA);
static_assert(BMC_MAX_PAYLOAD <= BMC_SCRATCH_MASK);
static_assert(BMC_SCRATCH_IN >= BMC_SCRATCH_MASK + 1 + 256);
static_assert(BMC_SCRATCH_OUT >= BMC_SCRATCH_MASK + 7 + 256);

// ---- enums -------------------------------------------------------------------------------
// Command kinds (what a matched first token means).
#define BMC_CMD_KINDS(X)                                                                        \
    X(BMC_KIND_GET)         /* get: answerable */                                               \
    X(BMC_KIND_GETS)        /* gets: parsed, passed (memcached owns CAS values) */              \
    X(BMC_KIND_KEYED)       /* mutation of the key at key_arg */                                \
    X(BMC_KIND_MULTIKEY)    /* mutation of every key from key_arg on (gat, gats) */             \
    X(BMC_KIND_META)        /* meta mutation: key at key_arg, base64 flag 'b' possible */       \
    X(BMC_KIND_META_GET)    /* mg: a mutation only with flag N (vivify) or T (touch) */         \
    X(BMC_KIND_FLUSH)       /* flush_all */                                                     \
    X(BMC_KIND_VALUE)       /* VALUE reply line (egress) */

// How the grammar reads a command's tokens after the first, and what it does at the
// line's end: every kind has one rule (bmc_kind_specs), and the grammar branches on the
// rule alone, so a kind that reads like an existing one is a table row, not code.
#define BMC_RULES(X)                                                                            \
    X(BMC_RULE_GET_KEYS)    /* every token a key of an answerable get line */                   \
    X(BMC_RULE_KEY_AT)      /* the token at key_arg is the key */                               \
    X(BMC_RULE_KEYS_FROM)   /* every token from key_arg on is a key */                          \
    X(BMC_RULE_META_KEY)    /* key at key_arg, known at the line's end with the flags after it */\
    X(BMC_RULE_FLUSH)       /* an optional delay at 1; flushes at the line's end */             \
    X(BMC_RULE_VALUE)       /* a reply's VALUE line: key at 1, length at 3, CAS at 4 */

// Invalidation families, counted separately.
#define BMC_FAMILIES(X)                                                                         \
    X(BMC_FAM_NONE)                                                                             \
    X(BMC_FAM_TEXT)                                                                             \
    X(BMC_FAM_META)                                                                             \
    X(BMC_FAM_BINARY)                                                                           \
    X(BMC_FAM_FLUSH)

// Per-CPU counters: X(enum name, display name).
#define BMC_STATS(X)                                                                            \
    X(BMC_STAT_GET_REQS, "get_requests")                                                        \
    X(BMC_STAT_GET_KEYS, "get_keys")                                                            \
    X(BMC_STAT_HIT_REQS, "hit_requests")                                                        \
    X(BMC_STAT_HIT_KEYS, "hit_keys")                                                            \
    X(BMC_STAT_MISS_KEYS, "miss_keys")                                                          \
    X(BMC_STAT_MISS_ABSENT, "miss_not_cached")          /* no entry of the key's hash */        \
    X(BMC_STAT_MISS_INVALIDATED, "miss_invalidated")    /* a write moved its bucket's gen on */ \
    X(BMC_STAT_MISS_FLUSHED, "miss_flushed")            /* a flush_all or restart: new epoch */ \
    X(BMC_STAT_MISS_EXPIRED, "miss_expired")            /* older than --max-age */              \
    X(BMC_STAT_MISS_DELAYED_FLUSH, "miss_delayed_flush") /* dead after a flush_all N */         \
    X(BMC_STAT_MISS_OTHER_KEY, "miss_other_key")        /* another key with the same hash */    \
    X(BMC_STAT_PASS_MISS, "pass_miss")                                                          \
    X(BMC_STAT_PASS_PARTIAL, "pass_partial")                                                    \
    X(BMC_STAT_PASS_GETS, "pass_gets")                                                          \
    X(BMC_STAT_PASS_MALFORMED, "pass_malformed")                                                \
    X(BMC_STAT_PASS_TOO_MANY_KEYS, "pass_too_many_keys")                                        \
    X(BMC_STAT_PASS_TOO_BIG, "pass_reply_too_big")                                              \
    X(BMC_STAT_PASS_MULTI_DGRAM, "pass_multi_datagram")                                         \
    X(BMC_STAT_PASS_NOT_GET, "pass_not_get")                                                    \
    X(BMC_STAT_PASS_NOT_PLAIN, "pass_unanswerable_headers")                                  \
    X(BMC_STAT_PASS_NOT_ALLOWED, "pass_client_not_allowed")                                     \
    X(BMC_STAT_PASS_AMPLIFICATION, "pass_over_max_amplification")                              \
    X(BMC_STAT_PASS_NO_ROOM, "pass_no_room")                                                    \
    X(BMC_STAT_PASS_NOT_OUR_MAC, "pass_not_to_our_mac")                                         \
    X(BMC_STAT_PASS_NOT_LOCAL, "pass_not_a_local_destination")                                  \
    X(BMC_STAT_PASS_NO_SOCKET, "pass_no_memcached_socket")                                      \
    X(BMC_STAT_PASS_IP_CSUM, "pass_bad_ip_checksum")                                            \
    X(BMC_STAT_PASS_UDP_CSUM, "pass_bad_udp_checksum")                                          \
    X(BMC_STAT_PASS_BAD_SOURCE, "pass_bad_source")                                              \
    X(BMC_STAT_PASS_SOURCE_ROUTE, "pass_ip_options")                                            \
    X(BMC_STAT_PASS_VLAN, "pass_unconfigured_vlan")                                             \
    X(BMC_STAT_RACE, "seqlock_retries")                                                         \
    X(BMC_STAT_REDIRECT, "redirect_afxdp")                                                      \
    X(BMC_STAT_FILL_OK, "fill_accepted")                                                        \
    X(BMC_STAT_FILL_NO_LEASE, "fill_rejected_no_lease")                                         \
    X(BMC_STAT_FILL_GUARD, "fill_rejected_guard")                                               \
    X(BMC_STAT_FILL_BUSY, "fill_rejected_busy")                                                 \
    X(BMC_STAT_FILL_TOO_BIG, "fill_rejected_too_big")                                           \
    X(BMC_STAT_FILL_CAS, "fill_skipped_cas")                                                    \
    X(BMC_STAT_FILL_MALFORMED, "fill_rejected_malformed")                                       \
    X(BMC_STAT_INVAL_TEXT, "inval_text")                                                        \
    X(BMC_STAT_INVAL_META, "inval_meta")                                                        \
    X(BMC_STAT_INVAL_BINARY, "inval_binary")                                                    \
    X(BMC_STAT_INVAL_FLUSH, "inval_flush")                                                      \
    X(BMC_STAT_INVAL_GLOBAL, "inval_conservative_global")                                       \
    X(BMC_STAT_INVAL_UNOBSERVED, "inval_unobserved_connection")                                 \
    X(BMC_STAT_INVAL_LOST, "inval_stream_not_followed")                                         \
    X(BMC_STAT_INVAL_RESTART, "inval_memcached_restart")                                        \
    X(BMC_STAT_OBS_CONNS, "observed_connections")                                               \
    X(BMC_STAT_OBS_FULL, "unobserved_connections_map_full")                                     \
    X(BMC_STAT_OBS_CHUNKS, "observed_chunks")

// The stages of a hit in the order the receive side runs them (core/bmc_driver.h),
// numbered from 1: a benchmark build with BMC_BENCH_STAGE n answers every get unfinished
// once stage n is done (bmc-hitcost's stage rows, bpf/CMakeLists.txt builds one object
// per stage). X(enum name, what is done when the stage ends).
#define BMC_HIT_STAGES(X)                                                                       \
    X(BMC_STAGE_ENTERED, "program entered")               /* its per-CPU memory found */        \
    X(BMC_STAGE_PARSED, "headers parsed")                 /* copied and parsed */               \
    X(BMC_STAGE_LOADED, "client judged, payload copied")  /* and the clock read */              \
    X(BMC_STAGE_FOUND, "key found, item copied")          /* hashed, found, copied */           \
    X(BMC_STAGE_CHECKED, "delivery checked, counted")     /* the stack-delivery checks, memo */ \
    X(BMC_STAGE_BUILT, "reply built in scratch")          /* the reply's headers built */

#define BMC_ENUM_ITEM(name) name,
#define BMC_ENUM_ITEM2(name, text) name,
enum bmc_cmd_kind : __u8 { BMC_CMD_KINDS(BMC_ENUM_ITEM) BMC_NUM_KINDS };
enum bmc_rule : __u8 { BMC_RULES(BMC_ENUM_ITEM) };
enum bmc_family : __u8 { BMC_FAMILIES(BMC_ENUM_ITEM) };
enum bmc_stat : __u32 { BMC_STATS(BMC_ENUM_ITEM2) BMC_NUM_STATS };
enum bmc_hit_stage : __u32 { BMC_STAGE_NONE, BMC_HIT_STAGES(BMC_ENUM_ITEM2) BMC_STAGE_AFTER_LAST };
#undef BMC_ENUM_ITEM
#undef BMC_ENUM_ITEM2

inline constexpr std::array<std::string_view, BMC_NUM_STATS> bmc_stat_names = {
#define BMC_STAT_NAME(name, text) text,
    BMC_STATS(BMC_STAT_NAME)
#undef BMC_STAT_NAME
};

inline constexpr std::array<std::string_view, BMC_STAGE_AFTER_LAST - 1> bmc_hit_stage_names = {
#define BMC_STAGE_NAME(name, text) text,
    BMC_HIT_STAGES(BMC_STAGE_NAME)
#undef BMC_STAGE_NAME
};

// ---- command kinds ------------------------------------------------------------------------
// Flags of a kind (bmc_kind_spec.flags, copied into each command row as kflags).
#define BMC_KIND_FLAGS(X)                                                                       \
    X(BMC_KF_MUTATES, 1)    /* memcached changes or drops items for it */                       \
    X(BMC_KF_ANSWERED, 2)   /* a get line of it is answered from the cache */                  \
    X(BMC_KF_NEEDS_FLAG, 4) /* mutates only with meta flag N (vivify) or T (touch) */           \
    X(BMC_KF_FAMILY_AT_CMD, 8) /* the line's family is set by the command itself */

#define BMC_DECLARE_KF(name, value) inline constexpr __u8 name = value;
BMC_KIND_FLAGS(BMC_DECLARE_KF)
#undef BMC_DECLARE_KF

struct bmc_kind_spec {
    bmc_cmd_kind kind;
    bmc_rule rule;
    __u8 flags;
};

// What each kind means to the grammar, one row per kind in enum order (asserted below).
inline constexpr bmc_kind_spec bmc_kind_specs[] = {
    {BMC_KIND_GET, BMC_RULE_GET_KEYS, BMC_KF_ANSWERED},
    {BMC_KIND_GETS, BMC_RULE_GET_KEYS, 0},
    {BMC_KIND_KEYED, BMC_RULE_KEY_AT, BMC_KF_MUTATES},
    {BMC_KIND_MULTIKEY, BMC_RULE_KEYS_FROM, BMC_KF_MUTATES},
    {BMC_KIND_META, BMC_RULE_META_KEY, BMC_KF_MUTATES},
    {BMC_KIND_META_GET, BMC_RULE_META_KEY, BMC_KF_MUTATES | BMC_KF_NEEDS_FLAG},
    {BMC_KIND_FLUSH, BMC_RULE_FLUSH, BMC_KF_MUTATES | BMC_KF_FAMILY_AT_CMD},
    {BMC_KIND_VALUE, BMC_RULE_VALUE, 0},
};
static_assert(sizeof(bmc_kind_specs) / sizeof(bmc_kind_specs[0]) == BMC_NUM_KINDS, "a row for every command kind");
constexpr bool bmc_kind_specs_in_order() {
    for (std::uint32_t i = 0; i < BMC_NUM_KINDS; i++)
        if (bmc_kind_specs[i].kind != i) return false;
    return true;
}
static_assert(bmc_kind_specs_in_order(), "bmc_kind_specs rows in bmc_cmd_kind order");

// ---- command table -----------------------------------------------------------------------
struct bmc_cmd_spec {
    std::string_view name;
    bmc_cmd_kind kind;
    __u8 key_arg;
    bmc_family family;
    // Storage commands, as memcached 1.6 reads them (proto_text.c): with a token count in
    // [min_args, max_args] (the command included), a key of at most BMC_MAX_KEY_LEN and
    // every token of num_mask a number, memcached consumes exactly <data_arg's value> + 2
    // bytes after the line as data, whether it stores the item or rejects it.
    __u8 data_arg = 0;
    __u8 min_args = 0;
    __u8 max_args = 0;
    __u8 num_mask = 0;
};

inline constexpr __u8 bmc_bits(std::initializer_list<int> bits) {
    __u8 m = 0;
    for (int b : bits) m |= __u8(1u << b);
    return m;
}

// The text and meta commands the cache recognises. Anything not listed is neither
// answered nor invalidating (stats, version, verbosity, mn, me, ...).
inline constexpr bmc_cmd_spec bmc_cmd_specs[] = {
    {"get", BMC_KIND_GET, 1, BMC_FAM_NONE},
    {"gets", BMC_KIND_GETS, 1, BMC_FAM_NONE},
    {"set", BMC_KIND_KEYED, 1, BMC_FAM_TEXT, 4, 5, 6, bmc_bits({2, 3, 4})},
    {"add", BMC_KIND_KEYED, 1, BMC_FAM_TEXT, 4, 5, 6, bmc_bits({2, 3, 4})},
    {"replace", BMC_KIND_KEYED, 1, BMC_FAM_TEXT, 4, 5, 6, bmc_bits({2, 3, 4})},
    {"append", BMC_KIND_KEYED, 1, BMC_FAM_TEXT, 4, 5, 6, bmc_bits({2, 3, 4})},
    {"prepend", BMC_KIND_KEYED, 1, BMC_FAM_TEXT, 4, 5, 6, bmc_bits({2, 3, 4})},
    {"cas", BMC_KIND_KEYED, 1, BMC_FAM_TEXT, 4, 6, 7, bmc_bits({2, 3, 4, 5})},
    {"incr", BMC_KIND_KEYED, 1, BMC_FAM_TEXT},
    {"decr", BMC_KIND_KEYED, 1, BMC_FAM_TEXT},
    {"delete", BMC_KIND_KEYED, 1, BMC_FAM_TEXT},
    {"touch", BMC_KIND_KEYED, 1, BMC_FAM_TEXT},
    {"gat", BMC_KIND_MULTIKEY, 2, BMC_FAM_TEXT},
    {"gats", BMC_KIND_MULTIKEY, 2, BMC_FAM_TEXT},
    {"flush_all", BMC_KIND_FLUSH, 0, BMC_FAM_FLUSH},
    {"ms", BMC_KIND_META, 1, BMC_FAM_META, 2, 3, 19, bmc_bits({2})},
    {"md", BMC_KIND_META, 1, BMC_FAM_META},
    {"ma", BMC_KIND_META, 1, BMC_FAM_META},
    {"mg", BMC_KIND_META_GET, 1, BMC_FAM_META},
    {"VALUE", BMC_KIND_VALUE, 1, BMC_FAM_NONE},
};
inline constexpr std::uint32_t BMC_NUM_CMDS = sizeof(bmc_cmd_specs) / sizeof(bmc_cmd_specs[0]);

constexpr __u64 bmc_pack_word(std::string_view s, std::size_t from) {
    __u64 w = 0;
    for (std::size_t i = 0; i < 8 && from + i < s.size(); i++)
        w |= __u64(static_cast<unsigned char>(s[from + i])) << (8 * i);
    return w;
}

constexpr std::array<bmc_cmd, BMC_NUM_CMDS> bmc_make_cmd_table() {
    std::array<bmc_cmd, BMC_NUM_CMDS> t{};
    for (std::uint32_t i = 0; i < BMC_NUM_CMDS; i++) {
        const auto &s = bmc_cmd_specs[i];
        t[i] = bmc_cmd{bmc_pack_word(s.name, 0), bmc_pack_word(s.name, 8),
                       static_cast<__u8>(s.name.size()), s.kind, s.key_arg, s.family,
                       s.data_arg, s.min_args, s.max_args, s.num_mask,
                       static_cast<__u8>(bmc_kind_specs[s.kind].rule), bmc_kind_specs[s.kind].flags, {}};
    }
    return t;
}
inline constexpr std::array<bmc_cmd, BMC_NUM_CMDS> bmc_cmd_table_arr = bmc_make_cmd_table();
// bmc_pick_way bounds its loop by the small table's ways.
static_assert(BMC_SMALL_WAYS >= BMC_LARGE_WAYS);
// bmc_find masks way indexes with ways - 1.
static_assert((BMC_SMALL_WAYS & (BMC_SMALL_WAYS - 1)) == 0 && (BMC_LARGE_WAYS & (BMC_LARGE_WAYS - 1)) == 0);
static_assert(bmc_cmd_specs[BMC_CMD_GET].name == "get" && bmc_cmd_specs[BMC_CMD_GET].kind == BMC_KIND_GET);
inline constexpr const bmc_cmd *bmc_cmd_table = bmc_cmd_table_arr.data();

// Binary protocol opcodes that change an item (quiet variants included). Flush and
// FlushQ are global.
inline constexpr __u8 bmc_binary_mutating_ops[] = {
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0e, 0x0f, 0x11, 0x12, 0x13, 0x14,
    0x15, 0x16, 0x19, 0x1a, 0x1c, 0x1d, 0x1e, 0x23, 0x24};
inline constexpr __u8 bmc_binary_flush_ops[] = {0x08, 0x18};

// Their names in memcached's protocol_binary.h, for people (bmcctl trace).
constexpr std::string_view bmc_binary_op_name(__u8 op) {
    switch (op) {
    case 0x01: return "set";       case 0x02: return "add";        case 0x03: return "replace";
    case 0x04: return "delete";    case 0x05: return "increment";  case 0x06: return "decrement";
    case 0x08: return "flush";     case 0x0e: return "append";     case 0x0f: return "prepend";
    case 0x11: return "setq";      case 0x12: return "addq";       case 0x13: return "replaceq";
    case 0x14: return "deleteq";   case 0x15: return "incrementq"; case 0x16: return "decrementq";
    case 0x18: return "flushq";    case 0x19: return "appendq";    case 0x1a: return "prependq";
    case 0x1c: return "touch";     case 0x1d: return "gat";        case 0x1e: return "gatq";
    case 0x23: return "gatk";      case 0x24: return "gatkq";
    default: return {};
    }
}

constexpr std::array<__u64, 4> bmc_make_op_bitmap(const __u8 *ops, std::size_t n) {
    std::array<__u64, 4> m{};
    for (std::size_t i = 0; i < n; i++) m[ops[i] >> 6] |= __u64(1) << (ops[i] & 63);
    return m;
}
inline constexpr std::array<__u64, 4> bmc_bin_mut_map_arr =
    bmc_make_op_bitmap(bmc_binary_mutating_ops, sizeof(bmc_binary_mutating_ops));
inline constexpr std::array<__u64, 4> bmc_bin_flush_map_arr =
    bmc_make_op_bitmap(bmc_binary_flush_ops, sizeof(bmc_binary_flush_ops));
inline constexpr const __u64 *bmc_bin_mut_map = bmc_bin_mut_map_arr.data();
inline constexpr const __u64 *bmc_bin_flush_map = bmc_bin_flush_map_arr.data();
