/* bmc core: the memcached text grammar as seen by the cache (the binary protocol's
 * request header is bmc_binary.h, the frame headers around a request bmc_frame.h).
 *
 * Written once in a C subset that compiles as C++ (core, AF_XDP poller) and as BPF C
 * (the generator pastes it into bmc_gen.h). The text grammar is a byte-at-a-time state
 * machine: the BPF side drives it from one bpf_loop callback, which the verifier checks
 * once instead of once per byte, and the C++ side from a plain loop. Neither side reads
 * a byte twice, so both see the same tokens.
 */
#ifndef BMC_GRAMMAR_H
#define BMC_GRAMMAR_H

#ifdef __cplusplus
#include <cstring>

#include "bmc_layout.hpp"
#define BMC_INLINE static inline
#define BMC_SUBPROG static inline
#define BMC_OPAQUE(x) ((void)0)
#endif

/* Unaligned 16- and 64-bit loads and stores in memory order: plain accesses in BPF (x86-64
 * allows them, and the verifier checks alignment only under BPF_F_STRICT_ALIGNMENT),
 * memcpy in C++ (which compiles to the same single access). */
#ifdef __cplusplus
static inline __u16 bmc_load16(const __u8 *p) { __u16 v; std::memcpy(&v, p, 2); return v; }
static inline void bmc_store16(__u8 *p, __u16 v) { std::memcpy(p, &v, 2); }
static inline __u64 bmc_load64(const __u8 *p) { __u64 v; std::memcpy(&v, p, 8); return v; }
#else
#define bmc_load16(p) (*(const __u16 *)(p))
#define bmc_store16(p, v) (*(__u16 *)(p) = (v))
#define bmc_load64(p) (*(const __u64 *)(p))
#endif

/* BMC_SUBPROG marks steps that the BPF build turns into global functions: the verifier
 * checks those once on their own and treats their results as unknown, instead of
 * following each distinct result (each command table row, say) through the caller.
 * Their pointer arguments may then be NULL as far as it knows, hence NULL checks. */

#define BMC_FNV_OFFSET 2166136261u
#define BMC_FNV_PRIME 16777619u
#define BMC_NO_CMD 0xff

/* Actions returned by bmc_scan_step; several may be set at once (key, then line end). */
#define BMC_ACT_KEY 1u     /* key_hash/key_start/key_len name a key (get or mutation) */
#define BMC_ACT_FLUSH 2u   /* flush_all */
#define BMC_ACT_GLOBAL 4u  /* a mutation whose key cannot be known: invalidate all */
#define BMC_ACT_GET_END 8u /* the answerable get line ended with nkeys >= 1 */
#define BMC_ACT_BAD 16u    /* the answerable get line cannot be answered */
#define BMC_ACT_VALUE 32u  /* a VALUE reply line ended; the data block follows */
#define BMC_ACT_FLUSH_AT 64u /* flush_all with a delay: flush_delay seconds from now */
#define BMC_ACT_DATA 128u  /* a storage line ended: memcached reads data_len bytes as data */
#define BMC_ACT_LOST 256u  /* a storage line whose data length memcached may read differently */

struct bmc_scan {
    __u64 w0, w1;    /* first 16 bytes of the current token, little-endian */
    __u64 num;       /* decimal value of the token while it is all digits */
    __u32 pos;       /* offset of the next byte to consume */
    __u32 line_start;
    __u32 tok_start;
    __u32 tok_len;
    __u32 hash;      /* FNV-1a of the current token */
    __u32 key_hash;  /* valid with BMC_ACT_KEY */
    __u32 key_start;
    __u32 key_len;
    __u32 value_bytes; /* VALUE: the <bytes> field */
    __u32 prev_line_start; /* start of the line that just ended */
    __u32 flush_delay;     /* flush_all <delay>, with BMC_ACT_FLUSH_AT */
    __u8 cmd;        /* command table row of this line, or BMC_NO_CMD */
    __u8 arg;        /* tokens completed in this line */
    __u8 in_tok;
    __u8 tok_digits;
    __u8 tok_ctl;    /* the token holds a control byte */
    __u8 get_line;   /* this line may be answered from the cache */
    __u8 family;     /* family of the last BMC_ACT_KEY */
    __u8 meta_b;     /* meta command with base64 key */
    __u8 meta_mod;   /* mg with a flag that modifies the item */
    __u8 key_pending;
    __u8 nkeys;
    __u8 bad_reason; /* a BMC_STAT_PASS_* with BMC_ACT_BAD */
    __u8 value_cas;
    __u8 lines;
    __u8 first_cmd;  /* command of the first line */
    __u8 cut;        /* a NUL ended the line for memcached's tokenizer (it uses strlen) */
    __u8 num_bad;    /* a token memcached must parse as a number certainly is none */
    __u8 num_unsure; /* a number token in a form strtol may or may not take (sign, spaces) */
    __u8 key_long;   /* the key token is longer than memcached accepts */
    __u8 neg_digits; /* the token is '-' followed by digits only */
    __u8 line_cmd;   /* command of the line that just ended (for actions at its end) */
    __u8 pad;
    __u32 data_len;  /* with BMC_ACT_DATA: data block bytes, "\r\n" included */
};

/* Ingress state for one payload. */
struct bmc_rx {
    struct bmc_scan st;
    __u64 now;
    __u32 end;        /* payload length in scratch->in */
    __u32 out_len;    /* reply bytes built in scratch->out so far (frame header included) */
    __u16 hits;
    __u16 misses;
    __u8 get_done;    /* the answerable get line ended */
    __u8 trailing;    /* bytes followed the get line */
    __u8 too_big;     /* the reply would not fit one datagram */
    __u8 miss_reason; /* the first missing key's cause (a BMC_STAT_MISS_* or _RACE) */
    __u16 client_port; /* the request's UDP source port (for the trace) */
    __u16 pad;
    __u32 pad2;
};

/* Egress state for one payload. */
struct bmc_tx {
    struct bmc_scan st;
    __u64 now;
    __u32 end;
    __u32 pad;
};

BMC_INLINE void bmc_scan_init(struct bmc_scan *st, __u32 start, int get_allowed)
{
    __builtin_memset(st, 0, sizeof(*st));
    st->pos = start;
    st->line_start = start;
    st->cmd = BMC_NO_CMD;
    st->line_cmd = BMC_NO_CMD;
    st->first_cmd = BMC_NO_CMD;
    st->get_line = get_allowed ? 1 : 0;
}

BMC_INLINE __u32 bmc_hash_update(__u32 h, __u8 c)
{
    return (h ^ c) * BMC_FNV_PRIME;
}

/* Control bytes are not allowed in keys the cache answers; memcached gets those. */
BMC_INLINE int bmc_is_key_byte(__u8 c)
{
    return c > 0x20 && c != 0x7f;
}

/* The command table row of cmd, or NULL (BMC_NO_CMD). The bound is checked on the very
 * register that indexes, and the index is computed after the check: clang would
 * otherwise check a copy or hoist the index, which the verifier cannot connect. */
BMC_INLINE const struct bmc_cmd *bmc_cmd_row(__u32 cmd)
{
    BMC_OPAQUE(cmd);
    if (cmd >= BMC_NUM_CMDS)
        return 0;
    BMC_OPAQUE(cmd);
    return &bmc_cmd_table[cmd];
}

BMC_SUBPROG int bmc_cmd_lookup(__u64 w0, __u64 w1, __u32 len)
{
    __u32 i;
    if (len > BMC_MAX_TOKEN_WORD)
        return BMC_NO_CMD;
    for (i = 0; i < BMC_NUM_CMDS; i++) {
        if (bmc_cmd_table[i].len == len && bmc_cmd_table[i].w0 == w0 && bmc_cmd_table[i].w1 == w1)
            return (int)i;
    }
    return BMC_NO_CMD;
}

BMC_INLINE __u32 bmc_set_key(struct bmc_scan *st, __u8 family)
{
    st->key_hash = st->hash;
    st->key_start = st->tok_start;
    st->key_len = st->tok_len;
    st->family = family;
    return BMC_ACT_KEY;
}

BMC_INLINE __u32 bmc_bad_get(struct bmc_scan *st, __u8 reason)
{
    st->get_line = 0;
    st->bad_reason = reason;
    return BMC_ACT_BAD;
}

/* A token of a storage line, as memcached's safe_strtol/safe_strtoul would take it. Pure
 * digits (at most 18, so no overflow) are a number, and so is '-' before them where
 * memcached takes a negative (the exptime of set/add/replace/append/prepend/cas, the
 * token before their length); a nonzero negative flags, length or CAS is refused. A
 * token strtol cannot start on is certainly no number; anything else (a '+', leading
 * whitespace, bytes after a whitespace byte) is left undecided. */
BMC_INLINE void bmc_storage_token(struct bmc_scan *st, __u32 arg, __u32 key_arg, __u32 data_arg,
                                  __u32 num_mask)
{
    __u8 c0 = (__u8)(st->w0 & 0xff);
    int negative = c0 == '-' && st->tok_len >= 2 && st->tok_len <= 19 && st->neg_digits;
    __u64 v;

    if (arg == key_arg && st->tok_len > BMC_MAX_KEY_LEN)
        st->key_long = 1;
    if (arg >= 8 || !((num_mask >> arg) & 1))
        return;
    if (negative) {
        if (st->num != 0 && !(data_arg == 4 && arg == 3))
            st->num_bad = 1;
        else if (arg == data_arg)
            st->data_len = 2;
        return;
    }
    if (!(st->tok_digits && st->tok_len <= 18)) {
        if ((c0 >= '0' && c0 <= '9') || c0 == '+' || c0 == '-' || c0 == '\t' || c0 == '\v' ||
            c0 == '\f' || c0 == '\r')
            st->num_unsure = 1;
        else
            st->num_bad = 1;
        return;
    }
    if (arg != data_arg)
        return;
    /* memcached stores strtol's long in an int32_t, then refuses < 0 and > INT_MAX - 2. */
    v = st->num & 0xffffffffu;
    if (v > 0x7ffffffdu)
        st->num_bad = 1;
    else
        st->data_len = (__u32)v + 2;
}

BMC_SUBPROG __u32 bmc_token_end(struct bmc_scan *st)
{
    __u32 arg, act;
    __u8 rule, kflags, key_arg, family, cmd;
    const struct bmc_cmd *row;

    if (!st)
        return 0;
    arg = st->arg;
    if (st->arg < 0xff)
        st->arg++;
    if (arg == 0) {
        cmd = (__u8)bmc_cmd_lookup(st->w0, st->w1, st->tok_len);
        st->cmd = cmd;
        st->flush_delay = 0; /* kept past the line end for BMC_ACT_FLUSH_AT */
        if (st->lines == 0)
            st->first_cmd = cmd;
        row = bmc_cmd_row(cmd);
        if (!row) {
            if (st->get_line)
                return bmc_bad_get(st, BMC_STAT_PASS_NOT_GET);
            return 0;
        }
        act = 0;
        if (st->get_line && row->rule != BMC_RULE_GET_KEYS)
            act = bmc_bad_get(st, BMC_STAT_PASS_NOT_GET);
        if (row->kflags & BMC_KF_FAMILY_AT_CMD)
            st->family = row->family;
        return act;
    }
    cmd = st->cmd;
    if (cmd >= BMC_NUM_CMDS)
        return 0;
    row = &bmc_cmd_table[cmd];
    rule = row->rule;
    kflags = row->kflags;
    key_arg = row->key_arg;
    family = row->family;
    if (row->data_arg)
        bmc_storage_token(st, arg, key_arg, row->data_arg, row->num_mask);

    if (rule == BMC_RULE_GET_KEYS) {
        if (!st->get_line)
            return 0;
        st->nkeys++;
        if (st->nkeys > BMC_MAX_KEYS)
            return bmc_bad_get(st, BMC_STAT_PASS_TOO_MANY_KEYS);
        if (st->tok_len > BMC_MAX_KEY_LEN || st->tok_ctl)
            return bmc_bad_get(st, BMC_STAT_PASS_MALFORMED);
        if (!(kflags & BMC_KF_ANSWERED))
            return 0;
        return bmc_set_key(st, BMC_FAM_NONE);
    } else if (rule == BMC_RULE_KEY_AT) {
        return arg == key_arg ? bmc_set_key(st, family) : 0;
    } else if (rule == BMC_RULE_KEYS_FROM) {
        return arg >= key_arg ? bmc_set_key(st, family) : 0;
    } else if (rule == BMC_RULE_META_KEY) {
        if (arg == key_arg) {
            st->key_pending = 1;
            bmc_set_key(st, family);
        } else if (arg > key_arg) {
            __u8 flag = (__u8)(st->w0 & 0xff);
            if (flag == 'b')
                st->meta_b = 1;
            if (flag == 'N' || flag == 'T')
                st->meta_mod = 1;
        }
        return 0;
    } else if (rule == BMC_RULE_FLUSH) {
        if (arg == 1 && st->tok_digits && st->tok_len <= 9)
            st->flush_delay = (__u32)st->num;
        return 0;
    } else if (rule == BMC_RULE_VALUE) {
        if (arg == 1) {
            bmc_set_key(st, BMC_FAM_NONE);
        } else if (arg == 3) {
            if (!st->tok_digits || st->tok_len > 7)
                st->value_bytes = 0xffffffffu;
            else
                st->value_bytes = (__u32)st->num;
        } else if (arg == 4) {
            st->value_cas = 1;
        }
        return 0;
    }
    return 0;
}

BMC_INLINE __u32 bmc_line_end(struct bmc_scan *st)
{
    __u32 act = 0;
    __u8 cmd = st->cmd, rule;
    const struct bmc_cmd *row;

    if (cmd < BMC_NUM_CMDS) {
        row = &bmc_cmd_table[cmd];
        rule = row->rule;
        if (rule == BMC_RULE_META_KEY && st->key_pending &&
            (st->meta_mod || !(row->kflags & BMC_KF_NEEDS_FLAG)))
            act |= st->meta_b ? BMC_ACT_GLOBAL : BMC_ACT_KEY;
        if (rule == BMC_RULE_GET_KEYS && st->get_line)
            act |= st->nkeys ? BMC_ACT_GET_END : bmc_bad_get(st, BMC_STAT_PASS_MALFORMED);
        if (rule == BMC_RULE_VALUE && st->arg >= 4 && st->value_bytes != 0xffffffffu &&
            st->key_len <= BMC_MAX_KEY_LEN)
            act |= BMC_ACT_VALUE;
        /* at the line end, when memcached runs it */
        if (rule == BMC_RULE_FLUSH)
            act |= st->flush_delay ? BMC_ACT_FLUSH | BMC_ACT_FLUSH_AT : BMC_ACT_FLUSH;
        if (row->data_arg && st->arg >= row->min_args && st->arg <= row->max_args && !st->key_long &&
            !st->num_bad)
            act |= st->num_unsure ? BMC_ACT_LOST : BMC_ACT_DATA;
    } else if (st->get_line) {
        act |= bmc_bad_get(st, BMC_STAT_PASS_MALFORMED);
    }
    st->line_cmd = cmd;
    st->cmd = BMC_NO_CMD;
    st->arg = 0;
    st->meta_b = 0;
    st->meta_mod = 0;
    st->key_pending = 0;
    st->get_line = 0;
    st->cut = 0;
    st->num_bad = 0;
    st->num_unsure = 0;
    st->key_long = 0;
    if (st->lines < 0xff)
        st->lines++;
    st->prev_line_start = st->line_start;
    st->line_start = st->pos + 1;
    return act;
}

/* Consume one byte. A '\r' ends a line only when a '\n' follows; anywhere else it is a
 * byte of the token, as memcached's tokenizer treats it. */
BMC_INLINE __u32 bmc_scan_step(struct bmc_scan *st, __u8 c, int next_is_lf)
{
    __u32 act = 0;

    /* memcached tokenizes the line up to its first NUL (strlen): the rest is not read,
     * though the line still ends at '\n'. A get line holding one is left to memcached. */
    if (st->cut && c != '\n') {
        st->pos++;
        return 0;
    }
    if (c == 0) {
        if (st->in_tok)
            act |= bmc_token_end(st);
        st->in_tok = 0;
        st->cut = 1;
        if (st->get_line)
            act |= bmc_bad_get(st, BMC_STAT_PASS_MALFORMED);
        st->pos++;
        return act;
    }
    if (c == ' ' || c == '\n' || (c == '\r' && next_is_lf)) {
        if (st->in_tok)
            act |= bmc_token_end(st);
        st->in_tok = 0;
        if (c == '\n')
            act |= bmc_line_end(st);
    } else {
        if (!st->in_tok) {
            st->in_tok = 1;
            st->tok_start = st->pos;
            st->tok_len = 0;
            st->hash = BMC_FNV_OFFSET;
            st->w0 = 0;
            st->w1 = 0;
            st->num = 0;
            st->tok_digits = 1;
            st->tok_ctl = 0;
        }
        st->hash = bmc_hash_update(st->hash, c);
        if (st->tok_len < 8)
            st->w0 |= (__u64)c << (8 * st->tok_len);
        else if (st->tok_len < 16)
            st->w1 |= (__u64)c << (8 * (st->tok_len - 8));
        if (c >= '0' && c <= '9' && st->tok_len < 19)
            st->num = st->num * 10 + (c - '0');
        else
            st->tok_digits = 0;
        /* "-<digits>": num holds the digits' value */
        if (st->tok_len == 0)
            st->neg_digits = c == '-';
        else if (c < '0' || c > '9')
            st->neg_digits = 0;
        if (!bmc_is_key_byte(c))
            st->tok_ctl = 1;
        if (st->tok_len < 0xffff)
            st->tok_len++;
    }
    st->pos++;
    return act;
}

BMC_INLINE __u32 bmc_hash_bytes(const __u8 *p, __u32 len)
{
    __u32 h = BMC_FNV_OFFSET, i;
    for (i = 0; i < BMC_MAX_KEY_LEN; i++) {
        if (i >= len)
            break;
        h = bmc_hash_update(h, p[i]);
    }
    return h;
}

#endif /* BMC_GRAMMAR_H */
