// The consistency rule bmc-check holds a cache to, as a pure function for testing.
//
// A key's versions are its values in write order, each with the time its write was sent
// and acknowledged (nullopt: the key was absent). A read sent at s and answered at r may
// return the newest version acknowledged before s, or any later version sent before r.
// Anything older is stale; anything not in the history was never written.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace bmc::bench {

using Value = std::optional<std::string>;

struct Version {
    Value value;
    std::uint64_t send_ns, ack_ns;
};

inline constexpr unsigned kUnparseable = ~0u;

struct Read {
    unsigned key;  // kUnparseable: the reply could not be parsed
    Value value;
    std::uint64_t send_ns, recv_ns;
};

struct CheckReport {
    std::uint64_t checked = 0, stale = 0, never_written = 0;
    struct Example {
        unsigned key;
        std::string text;
    };
    std::vector<Example> examples;
};

inline std::string show(const Value &v) { return v ? "'" + *v + "'" : "<absent>"; }

inline CheckReport check(const std::vector<std::vector<Version>> &history, const std::vector<Read> &reads) {
    CheckReport rep;
    for (const Read &rd : reads) {
        rep.checked++;
        if (rd.key == kUnparseable || rd.key >= history.size()) {
            rep.never_written++;
            if (rep.examples.size() < 10) rep.examples.push_back({rd.key, "unparseable reply " + show(rd.value)});
            continue;
        }
        const auto &h = history[rd.key];
        std::size_t floor = 0;
        for (std::size_t i = 0; i < h.size(); i++)
            if (h[i].ack_ns < rd.send_ns) floor = i;
        bool ok = false, written = false;
        for (std::size_t i = 0; i < h.size(); i++) {
            if (h[i].value != rd.value) continue;
            written = true;
            if (i >= floor && h[i].send_ns < rd.recv_ns) ok = true;
        }
        if (ok) continue;
        (written ? rep.stale : rep.never_written)++;
        if (rep.examples.size() < 10)
            rep.examples.push_back({rd.key, "read " + show(rd.value) + (written ? " (stale)" : " (never written)") +
                                                "; the newest write acknowledged before the read was sent left " +
                                                (h.empty() ? std::string("nothing") : show(h[floor].value))});
    }
    return rep;
}

}  // namespace bmc::bench
