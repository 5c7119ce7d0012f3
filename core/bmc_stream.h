/* bmc core: memcached's request stream as memcached itself reads it, for the write
 * observer.
 *
 * One definition compiled as C++ and as BPF C. The BPF side runs it on memcached's own
 * sockets: an sk_skb stream verdict sees every TCP connection's bytes in order after
 * reassembly, and a cgroup skb ingress program sees every UDP datagram as delivered to
 * memcached's socket (after defragmentation). The state of a TCP connection persists
 * between chunks (struct bmc_conn, keyed by the socket cookie); a UDP datagram starts
 * from a fresh one.
 *
 * The reading mirrors memcached 1.6 (proto_text.c, proto_bin.c):
 *  - the protocol of a connection is fixed by its first byte (0x80: binary);
 *  - text: lines end at '\n' (a '\r' right before it is dropped), tokens at ' ', and
 *    the tokenizer stops at the first NUL of a line (bmc_scan_step);
 *  - after a storage line memcached consumes exactly <bytes>+2 bytes as data, whatever
 *    they hold, also for an item it rejects or swallows; it does so only for a line with
 *    the right token count, a key it accepts and numbers it can parse (bmc_line_end);
 *  - binary: 24-byte headers framing key and body by their lengths.
 * A write invalidates its key at each point where memcached may change the item: when it
 * has read the command line (or a binary key), and again when a data block or binary
 * body is complete. Not before: a fill leased before carries a value memcached still
 * holds; the fill guard covers memcached's own delay after. Where the reading cannot follow memcached (a number in a form strtol
 * may or may not take, a header that frames nothing), the connection is marked lost:
 * every later chunk of it starts a new epoch.
 *
 * The including side provides the bmc_env of bmc_datapath.h and drives bmc_obs_step
 * over windows of the stream copied into scratch->in, bmc_obs_skip in between.
 */
#ifndef BMC_STREAM_H
#define BMC_STREAM_H

#ifdef __cplusplus
#include "bmc_binary.h"
#include "bmc_datapath.h"
#endif

#define BMC_CONN_NEW 0      /* no byte read yet: the first one picks the protocol */
#define BMC_CONN_TEXT 1
#define BMC_CONN_DATA 2     /* a storage command's data block */
#define BMC_CONN_BIN_HDR 3
#define BMC_CONN_BIN_EXT 4
#define BMC_CONN_BIN_KEY 5
#define BMC_CONN_BIN_BODY 6
#define BMC_CONN_LOST 7

#define BMC_PENDING_NONE 0
#define BMC_PENDING_KEY 1   /* key_hash, pending_family */
#define BMC_PENDING_ALL 2   /* a key the cache cannot hash (meta base64): everything */

/* One connection's reading position. */
struct bmc_conn {
    struct bmc_scan st;
    __u32 left;          /* bytes left in the current data block, extras, key or body */
    __u32 body_left;     /* binary: body bytes after the key */
    __u32 key_left;      /* binary: key bytes after the extras */
    __u32 key_hash;      /* the pending key (binary: FNV-1a so far) */
    __u32 flush_delay;   /* binary flush: the extras' expiration */
    __u8 mode;           /* BMC_CONN_* */
    __u8 cr;             /* text: a '\r' waits for the byte after it */
    __u8 pending;        /* BMC_PENDING_*: invalidated again when the request completes */
    __u8 pending_family;
    __u8 bin_op;
    __u8 bin_ext_len;
    __u8 bin_have;       /* header bytes collected in bin_hdr */
    __u8 pending_cmd;    /* the pending write's command, for the trace (BMC_TRACE_CMD_*) */
    __u8 bin_hdr[32];    /* BMC_BIN_HDR_LEN used; 32 so that a mask bounds the index */
};

/* A window of the stream in scratch->in, and the connection being read. */
struct bmc_obs {
    struct bmc_conn conn;
    __u64 now;
    __u32 pos;   /* next byte of the window */
    __u32 end;   /* window length */
    __u32 path;  /* BMC_TRACE_PATH_TCP or _UDP, for the trace */
};

/* The trace's account of the request being read: its path and command. */
BMC_INLINE __u32 bmc_obs_via(const struct bmc_obs *o, __u32 cmd)
{
    return BMC_VIA(o->path, cmd);
}

/* The command of the text action at hand: the line's, or at its end the line just ended. */
BMC_INLINE __u32 bmc_obs_text_cmd(const struct bmc_conn *c)
{
    __u8 cmd = c->st.cmd < BMC_NUM_CMDS ? c->st.cmd : c->st.line_cmd;

    return cmd < BMC_NUM_CMDS ? cmd : BMC_TRACE_CMD_NONE;
}

BMC_INLINE void bmc_conn_init(struct bmc_conn *c)
{
    __builtin_memset(c, 0, sizeof(*c));
    bmc_scan_init(&c->st, 0, 0);
    c->mode = BMC_CONN_NEW;
}

/* The reading lost memcached's place: nothing this connection sends can be placed. */
BMC_INLINE void bmc_obs_lose(struct bmc_env *env, struct bmc_obs *o)
{
    o->conn.mode = BMC_CONN_LOST;
    bmc_rx_flush(env, BMC_STAT_INVAL_LOST, bmc_obs_via(o, BMC_TRACE_CMD_NONE), o->now);
}

/* A request was completely read: memcached applies it now. */
BMC_INLINE void bmc_obs_complete(struct bmc_env *env, struct bmc_obs *o)
{
    struct bmc_conn *c = &o->conn;

    if (c->pending == BMC_PENDING_KEY)
        bmc_rx_invalidate(env, c->key_hash, c->pending_family, bmc_obs_via(o, c->pending_cmd), o->now);
    else if (c->pending == BMC_PENDING_ALL)
        bmc_rx_flush(env, BMC_STAT_INVAL_GLOBAL, bmc_obs_via(o, c->pending_cmd), o->now);
    c->pending = BMC_PENDING_NONE;
}

BMC_INLINE void bmc_obs_text_act(struct bmc_env *env, struct bmc_obs *o, __u32 act, int line_end)
{
    struct bmc_conn *c = &o->conn;

    /* gat/gats only touch: their keys go at once. Any other write goes when complete. */
    if ((act & BMC_ACT_KEY) && c->st.family != BMC_FAM_NONE) {
        if (c->st.cmd < BMC_NUM_CMDS && bmc_cmd_table[c->st.cmd].rule == BMC_RULE_KEYS_FROM) {
            bmc_rx_invalidate(env, c->st.key_hash, c->st.family, bmc_obs_via(o, bmc_obs_text_cmd(c)), o->now);
        } else {
            c->pending = BMC_PENDING_KEY;
            c->key_hash = c->st.key_hash;
            c->pending_family = c->st.family;
            c->pending_cmd = (__u8)bmc_obs_text_cmd(c);
        }
    }
    if (act & BMC_ACT_FLUSH)
        bmc_rx_flush(env, BMC_STAT_INVAL_FLUSH, bmc_obs_via(o, bmc_obs_text_cmd(c)), o->now);
    if (act & BMC_ACT_FLUSH_AT)
        bmc_rx_flush_at(env, c->st.flush_delay, o->now);
    if (act & BMC_ACT_GLOBAL) {
        c->pending = BMC_PENDING_ALL;
        c->pending_cmd = (__u8)bmc_obs_text_cmd(c);
    }
    if (act & BMC_ACT_LOST) {
        bmc_obs_lose(env, o);
        return;
    }
    if (act & BMC_ACT_DATA) {
        /* memcached may change the item when it reads the line (a SET too large for it
         * unlinks the old one at once) and does when the data is in: both times. */
        __u8 pending = c->pending;
        bmc_obs_complete(env, o);
        c->pending = pending;
        c->mode = BMC_CONN_DATA;
        c->left = c->st.data_len;
        return;
    }
    if (line_end)
        bmc_obs_complete(env, o);
}

/* One text byte. A '\r' is held until the next byte says whether it ends the line. */
BMC_INLINE void bmc_obs_text_byte(struct bmc_env *env, struct bmc_obs *o, __u8 b)
{
    struct bmc_conn *c = &o->conn;

    if (c->cr) {
        c->cr = 0;
        bmc_obs_text_act(env, o, bmc_scan_step(&c->st, '\r', b == '\n'), 0);
        if (c->mode != BMC_CONN_TEXT)
            return;
    }
    if (b == '\r' && !c->st.cut) {
        c->cr = 1;
        return;
    }
    bmc_obs_text_act(env, o, bmc_scan_step(&c->st, b, 0), b == '\n');
}

/* Binary: move past parts of the request that are empty. */
BMC_INLINE void bmc_obs_bin_advance(struct bmc_env *env, struct bmc_obs *o)
{
    struct bmc_conn *c = &o->conn;

    if (c->mode == BMC_CONN_BIN_EXT && c->left == 0) {
        c->mode = BMC_CONN_BIN_KEY;
        c->left = c->key_left;
    }
    if (c->mode == BMC_CONN_BIN_KEY && c->left == 0) {
        /* As for text: when memcached has the key (it may unlink then) and when complete. */
        if (bmc_bin_in_map(bmc_bin_mut_map, c->bin_op)) {
            c->pending = BMC_PENDING_KEY;
            c->pending_family = BMC_FAM_BINARY;
            c->pending_cmd = (__u8)(BMC_TRACE_CMD_BINARY | c->bin_op);
            bmc_rx_invalidate(env, c->key_hash, BMC_FAM_BINARY, bmc_obs_via(o, c->pending_cmd), o->now);
        }
        c->mode = BMC_CONN_BIN_BODY;
        c->left = c->body_left;
    }
    if (c->mode == BMC_CONN_BIN_BODY && c->left == 0) {
        if (bmc_bin_in_map(bmc_bin_flush_map, c->bin_op)) {
            bmc_rx_flush(env, BMC_STAT_INVAL_FLUSH, bmc_obs_via(o, BMC_TRACE_CMD_BINARY | c->bin_op), o->now);
            if (c->bin_ext_len == 4 && c->flush_delay)
                bmc_rx_flush_at(env, c->flush_delay, o->now);
        }
        bmc_obs_complete(env, o);
        c->mode = BMC_CONN_BIN_HDR;
        c->bin_have = 0;
    }
}

BMC_INLINE void bmc_obs_bin_header(struct bmc_env *env, struct bmc_obs *o)
{
    struct bmc_conn *c = &o->conn;
    struct bmc_bin_req r;

    /* memcached closes a connection on a bad magic; a header whose lengths frame nothing
     * cannot be followed either. */
    if (bmc_bin_parse(c->bin_hdr, &r)) {
        bmc_obs_lose(env, o);
        return;
    }
    c->bin_op = r.opcode;
    c->bin_ext_len = r.ext_len;
    c->key_left = r.key_len;
    c->body_left = r.body_len - r.key_len - r.ext_len;
    c->key_hash = BMC_FNV_OFFSET;
    c->flush_delay = 0;
    c->pending = BMC_PENDING_NONE;
    c->mode = BMC_CONN_BIN_EXT;
    c->left = r.ext_len;
    bmc_obs_bin_advance(env, o);
}

/* Pass over a data block or binary body without reading it: up to avail bytes of the
 * stream at the current position. Returns how many it passed over (0: bytes must be
 * read here). */
BMC_INLINE __u32 bmc_obs_skip(struct bmc_env *env, struct bmc_obs *o, __u32 avail)
{
    struct bmc_conn *c = &o->conn;
    __u32 n;

    if (c->mode != BMC_CONN_DATA && c->mode != BMC_CONN_BIN_BODY)
        return 0;
    n = c->left < avail ? c->left : avail;
    c->left -= n;
    if (c->left == 0) {
        if (c->mode == BMC_CONN_DATA) {
            bmc_obs_complete(env, o);
            c->mode = BMC_CONN_TEXT;
        } else {
            bmc_obs_bin_advance(env, o);
        }
    }
    return n;
}

/* One step over the window in scratch->in: a byte, or a run of data. Returns 1 once the
 * window is consumed. */
BMC_SUBPROG int bmc_obs_step(struct bmc_env *env, struct bmc_scratch *sc, struct bmc_obs *o)
{
    struct bmc_conn *c;
    __u32 pos;
    __u8 b;

    if (!sc || !o)
        return 1;
    c = &o->conn;
    pos = o->pos;
    if (pos >= o->end || pos > BMC_SCRATCH_MASK)
        return 1;
    if (c->mode == BMC_CONN_LOST) {
        o->pos = o->end;
        return 1;
    }
    if (c->mode == BMC_CONN_DATA || c->mode == BMC_CONN_BIN_BODY) {
        o->pos = pos + bmc_obs_skip(env, o, o->end - pos);
        return 0;
    }
    b = sc->in[pos & BMC_SCRATCH_MASK];
    o->pos = pos + 1;
    if (c->mode == BMC_CONN_NEW)
        c->mode = b == BMC_BIN_MAGIC_REQ ? BMC_CONN_BIN_HDR : BMC_CONN_TEXT;
    if (c->mode == BMC_CONN_TEXT) {
        bmc_obs_text_byte(env, o, b);
    } else if (c->mode == BMC_CONN_BIN_HDR) {
        c->bin_hdr[c->bin_have & 31] = b;
        if (++c->bin_have >= BMC_BIN_HDR_LEN)
            bmc_obs_bin_header(env, o);
    } else if (c->mode == BMC_CONN_BIN_EXT) {
        c->flush_delay = c->flush_delay << 8 | b;
        c->left--;
        bmc_obs_bin_advance(env, o);
    } else if (c->mode == BMC_CONN_BIN_KEY) {
        c->key_hash = bmc_hash_update(c->key_hash, b);
        c->left--;
        bmc_obs_bin_advance(env, o);
    }
    return 0;
}

/* A UDP datagram to memcached's port, as its socket received it (payload after the UDP
 * header, in a fresh bmc_obs). memcached reads only single-datagram requests, each on
 * its own. Returns whether it is one. */
BMC_INLINE int bmc_obs_udp_begin(struct bmc_obs *o, const __u8 *frame_hdr, __u32 payload_len, __u64 now)
{
    bmc_conn_init(&o->conn);
    o->now = now;
    o->path = BMC_TRACE_PATH_UDP;
    return payload_len >= BMC_FRAME_HDR_LEN && bmc_frame_single(frame_hdr);
}

/* The datagram ended. A request cut in its data or binary body is one memcached may
 * complete from whatever it reads next: nothing can be trusted. */
BMC_INLINE void bmc_obs_udp_end(struct bmc_env *env, struct bmc_obs *o)
{
    __u8 m = o->conn.mode;

    if (m == BMC_CONN_DATA || m == BMC_CONN_BIN_EXT || m == BMC_CONN_BIN_KEY || m == BMC_CONN_BIN_BODY ||
        (m == BMC_CONN_BIN_HDR && o->conn.bin_have))
        bmc_obs_lose(env, o);
}

#endif /* BMC_STREAM_H */
