// What bmcd's control socket and bmcctl (reading a pinned deployment with no bmcd) both
// answer, in memcached's "STAT name value" lines: the counters, and a key's place in the
// cache.
#pragma once

#include <string>

#include "datapath.hpp"

namespace bmc {

// Every counter by name, then hit_ratio; no END.
std::string counter_stat_lines(const Counters &sum);

// A key's place in the cache: its buckets, their generation and lease, every entry with
// its hash, and whether a get would be served from it now. Ends with END, or is one
// CLIENT_ERROR line for a key memcached would refuse.
std::string dump_key(const bmc_config &cfg, const CacheMemory &cache, const std::string &key);

// One trace record as a line: seconds since start_ns (CLOCK_MONOTONIC), the path
// (xdp, tc, observer, afxdp), what was decided, the client, the key (or its hash), and
// the counter that says why.
std::string trace_line(const bmc_trace &t, std::uint64_t start_ns);

}  // namespace bmc
