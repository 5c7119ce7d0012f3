// Big-endian fields of the headers the C++ side builds (replies, test and benchmark
// frames); the shared C core reads them with bmc_h8/bmc_h16 from its scratch copy.
#pragma once

#include <cstdint>

namespace bmc {

inline void put_be16(std::uint8_t *p, std::uint16_t v) {
    p[0] = std::uint8_t(v >> 8);
    p[1] = std::uint8_t(v);
}

inline void put_be32(std::uint8_t *p, std::uint32_t v) {
    put_be16(p, std::uint16_t(v >> 16));
    put_be16(p + 2, std::uint16_t(v));
}

}  // namespace bmc
