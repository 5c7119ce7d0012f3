// libFuzzer: the text grammar over arbitrary bytes, as the datapath drives it.
#include <cstddef>
#include <cstdint>

#include "bmc_grammar.h"

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
    bmc_scan_finish(&st);
    bmc_bin_req r;
    if (size >= BMC_BIN_HDR_LEN) bmc_bin_parse(data, &r);
    return 0;
}
