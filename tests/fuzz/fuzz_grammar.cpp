// libFuzzer: the text grammar over arbitrary bytes, as the datapath drives it, and the
// write observer's reading of a stream cut into arbitrary chunks.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "bmc_binary.h"
#include "bmc_grammar.h"
#include "datapath.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    if (size == 0) return 0;
    bmc_scan st;
    bmc_scan_init(&st, 0, data[0] & 1);
    for (std::size_t i = 1; i < size; i++) {
        const int next_lf = i + 1 < size && data[i + 1] == '\n';
        const std::uint32_t act = bmc_scan_step(&st, data[i], next_lf);
        // A key the datapath is told about always lies inside what was scanned.
        if ((act & BMC_ACT_KEY) && st.family == BMC_FAM_NONE &&
            (st.key_len > BMC_MAX_KEY_LEN || st.key_start + st.key_len > st.pos))
            __builtin_trap();
    }
    static std::vector<bmc_small_bucket> small(8);
    static std::vector<bmc_large_bucket> large(2);
    static bmc_global global{};
    static bmc::Observer &obs = *[] {
        bmc_config cfg = bmc::default_config();
        cfg.small_mask = 7;
        cfg.large_mask = 1;
        return new bmc::Observer({small.data(), 8, large.data(), 2, &global}, cfg);
    }();
    static std::uint64_t conn = 0, now = 1000000000;
    conn++;
    // data[0] picks the chunk size; the same bytes also go as one UDP datagram.
    const std::size_t step = 1 + data[0] % 64;
    std::span<const std::uint8_t> rest(data + 1, size - 1);
    for (std::size_t at = 0; at < rest.size(); at += step)
        obs.chunk(conn, rest.subspan(at, std::min(step, rest.size() - at)), now += 1000);
    obs.datagram(rest, now += 1000);
    bmc_bin_req r;
    if (size >= BMC_BIN_HDR_LEN) bmc_bin_parse(data, &r);
    return 0;
}
