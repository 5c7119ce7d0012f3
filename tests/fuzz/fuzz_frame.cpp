// libFuzzer: the frame-header parser over arbitrary frames.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "bmc_frame.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    static bmc_scratch sc;
    bmc_frame f;
    const std::uint32_t hlen = std::uint32_t(size < BMC_HDR_MAX ? size : BMC_HDR_MAX);
    std::memcpy(sc.hdr, data, hlen);
    bmc_parse_frame(&sc, std::uint32_t(size), hlen, 11211, &f);
    // What the parser reports must lie inside the frame.
    if (f.proto && (f.payload_off > size || f.payload_off + f.payload_len > size)) __builtin_trap();
    return 0;
}
