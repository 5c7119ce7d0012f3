/* bmc core: memcached's binary protocol as the write observer reads it (the text grammar
 * is bmc_grammar.h). One definition compiled as C++ and as BPF C, like the grammar.
 */
#ifndef BMC_BINARY_H
#define BMC_BINARY_H

#ifdef __cplusplus
#include "bmc_grammar.h"
#endif

/* Request header, 24 bytes, big-endian: magic 0x80, opcode, key length (2), extras
 * length, data type, vbucket (2), total body length (4), opaque (4), cas (8). The key
 * follows the extras. */
#define BMC_BIN_MAGIC_REQ 0x80
#define BMC_BIN_HDR_LEN 24

struct bmc_bin_req {
    __u32 body_len;
    __u16 key_len;
    __u8 opcode;
    __u8 ext_len;
};

BMC_INLINE int bmc_bin_parse(const __u8 *h, struct bmc_bin_req *r)
{
    if (h[0] != BMC_BIN_MAGIC_REQ)
        return -1;
    r->opcode = h[1];
    r->key_len = (__u16)((h[2] << 8) | h[3]);
    r->ext_len = h[4];
    r->body_len = ((__u32)h[8] << 24) | ((__u32)h[9] << 16) | ((__u32)h[10] << 8) | h[11];
    if ((__u32)r->key_len + r->ext_len > r->body_len)
        return -1;
    return 0;
}

BMC_INLINE int bmc_bin_in_map(const __u64 *map, __u8 op)
{
    return (map[op >> 6] >> (op & 63)) & 1;
}

#endif /* BMC_BINARY_H */
