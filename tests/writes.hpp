// Every write the cache must see, one fixture per mutating row of the command table
// (core/bmc_layout.hpp: bmc_cmd_specs, bmc_binary_mutating_ops, bmc_binary_flush_ops):
// the request that makes it for a key and a value, what it does to an item memcached
// holds, and what the write observer counts for it. The packet tests, the end-to-end
// tests, the differential test and bmc-check take their writes from here, and
// Writes.EveryMutatingCommandHasAFixture fails for a row without one: adding a command
// of an existing kind is its table row plus its fixture below.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "bmc_layout.hpp"
#include "packet.hpp"

namespace bmc::test {

struct WriteFixture {
    std::string name;     // the command table's name; binary: "bin_" + bmc_binary_op_name
    enum Proto { Text, Meta, Binary } proto;
    // What it does to an item memcached holds (the key exists and holds a number or a
    // word): replaces its value, does arithmetic on it, leaves the value (touch, add),
    // removes it, or removes everything.
    enum Effect { Replaces, Arithmetic, Keeps, Removes, Flushes } effect;
    bmc_stat counter;     // the invalidation counter the observer moves
    unsigned count;       // by how much: a request with a data block or body counts twice
    bool quiet;           // memcached sends nothing back when it succeeds
    // The request for key k with value v (a word of letters and digits); `cas` is the
    // item's CAS unique, for the one command that needs it.
    std::string (*make)(const std::string &k, const std::string &v, const std::string &cas);

    bool needs_cas() const { return name == "cas"; }
};

namespace writes_detail {
inline std::string n(const std::string &v) { return std::to_string(v.size()); }
inline std::string binary(std::uint8_t op, const std::string &k, const std::string &extras, const std::string &v) {
    const Bytes b = bin_request(op, k, extras, v);
    return std::string(b.begin(), b.end());
}
inline const std::string ext8(8, '\0');  // flags, expiration
inline const std::string ext4(4, '\0');  // expiration
// delta 1, initial 0, expiration 0
inline const std::string ext20 = std::string("\0\0\0\0\0\0\0\x01", 8) + std::string(12, '\0');
}  // namespace writes_detail

inline const std::vector<WriteFixture> &write_fixtures() {
    using W = WriteFixture;
    using S = const std::string &;
    using namespace writes_detail;
    static const std::vector<WriteFixture> t = {
        {"set", W::Text, W::Replaces, BMC_STAT_INVAL_TEXT, 2, false,
         [](S k, S v, S) { return "set " + k + " 0 0 " + n(v) + "\r\n" + v + "\r\n"; }},
        {"add", W::Text, W::Keeps, BMC_STAT_INVAL_TEXT, 2, false,
         [](S k, S v, S) { return "add " + k + " 0 0 " + n(v) + "\r\n" + v + "\r\n"; }},
        {"replace", W::Text, W::Replaces, BMC_STAT_INVAL_TEXT, 2, false,
         [](S k, S v, S) { return "replace " + k + " 0 0 " + n(v) + "\r\n" + v + "\r\n"; }},
        {"append", W::Text, W::Replaces, BMC_STAT_INVAL_TEXT, 2, false,
         [](S k, S v, S) { return "append " + k + " 0 0 " + n(v) + "\r\n" + v + "\r\n"; }},
        {"prepend", W::Text, W::Replaces, BMC_STAT_INVAL_TEXT, 2, false,
         [](S k, S v, S) { return "prepend " + k + " 0 0 " + n(v) + "\r\n" + v + "\r\n"; }},
        {"cas", W::Text, W::Replaces, BMC_STAT_INVAL_TEXT, 2, false,
         [](S k, S v, S cas) { return "cas " + k + " 0 0 " + n(v) + " " + cas + "\r\n" + v + "\r\n"; }},
        {"incr", W::Text, W::Arithmetic, BMC_STAT_INVAL_TEXT, 1, false,
         [](S k, S, S) { return "incr " + k + " 5\r\n"; }},
        {"decr", W::Text, W::Arithmetic, BMC_STAT_INVAL_TEXT, 1, false,
         [](S k, S, S) { return "decr " + k + " 5\r\n"; }},
        {"delete", W::Text, W::Removes, BMC_STAT_INVAL_TEXT, 1, false,
         [](S k, S, S) { return "delete " + k + "\r\n"; }},
        {"touch", W::Text, W::Keeps, BMC_STAT_INVAL_TEXT, 1, false,
         [](S k, S, S) { return "touch " + k + " 100\r\n"; }},
        {"gat", W::Text, W::Keeps, BMC_STAT_INVAL_TEXT, 1, false,
         [](S k, S, S) { return "gat 100 " + k + "\r\n"; }},
        {"gats", W::Text, W::Keeps, BMC_STAT_INVAL_TEXT, 1, false,
         [](S k, S, S) { return "gats 100 " + k + "\r\n"; }},
        {"flush_all", W::Text, W::Flushes, BMC_STAT_INVAL_FLUSH, 1, false,
         [](S, S, S) { return std::string("flush_all\r\n"); }},
        {"ms", W::Meta, W::Replaces, BMC_STAT_INVAL_META, 2, false,
         [](S k, S v, S) { return "ms " + k + " " + n(v) + "\r\n" + v + "\r\n"; }},
        {"md", W::Meta, W::Removes, BMC_STAT_INVAL_META, 1, false,
         [](S k, S, S) { return "md " + k + "\r\n"; }},
        {"ma", W::Meta, W::Arithmetic, BMC_STAT_INVAL_META, 1, false,
         [](S k, S, S) { return "ma " + k + "\r\n"; }},
        {"mg", W::Meta, W::Keeps, BMC_STAT_INVAL_META, 1, false,  // with T: a touch
         [](S k, S, S) { return "mg " + k + " T100 v\r\n"; }},
        {"bin_set", W::Binary, W::Replaces, BMC_STAT_INVAL_BINARY, 2, false,
         [](S k, S v, S) { return binary(0x01, k, ext8, v); }},
        {"bin_add", W::Binary, W::Keeps, BMC_STAT_INVAL_BINARY, 2, false,
         [](S k, S v, S) { return binary(0x02, k, ext8, v); }},
        {"bin_replace", W::Binary, W::Replaces, BMC_STAT_INVAL_BINARY, 2, false,
         [](S k, S v, S) { return binary(0x03, k, ext8, v); }},
        {"bin_delete", W::Binary, W::Removes, BMC_STAT_INVAL_BINARY, 2, false,
         [](S k, S, S) { return binary(0x04, k, "", ""); }},
        {"bin_increment", W::Binary, W::Arithmetic, BMC_STAT_INVAL_BINARY, 2, false,
         [](S k, S, S) { return binary(0x05, k, ext20, ""); }},
        {"bin_decrement", W::Binary, W::Arithmetic, BMC_STAT_INVAL_BINARY, 2, false,
         [](S k, S, S) { return binary(0x06, k, ext20, ""); }},
        {"bin_append", W::Binary, W::Replaces, BMC_STAT_INVAL_BINARY, 2, false,
         [](S k, S v, S) { return binary(0x0e, k, "", v); }},
        {"bin_prepend", W::Binary, W::Replaces, BMC_STAT_INVAL_BINARY, 2, false,
         [](S k, S v, S) { return binary(0x0f, k, "", v); }},
        {"bin_setq", W::Binary, W::Replaces, BMC_STAT_INVAL_BINARY, 2, true,
         [](S k, S v, S) { return binary(0x11, k, ext8, v); }},
        {"bin_addq", W::Binary, W::Keeps, BMC_STAT_INVAL_BINARY, 2, false,  // on an existing key: an error
         [](S k, S v, S) { return binary(0x12, k, ext8, v); }},
        {"bin_replaceq", W::Binary, W::Replaces, BMC_STAT_INVAL_BINARY, 2, true,
         [](S k, S v, S) { return binary(0x13, k, ext8, v); }},
        {"bin_deleteq", W::Binary, W::Removes, BMC_STAT_INVAL_BINARY, 2, true,
         [](S k, S, S) { return binary(0x14, k, "", ""); }},
        {"bin_incrementq", W::Binary, W::Arithmetic, BMC_STAT_INVAL_BINARY, 2, true,
         [](S k, S, S) { return binary(0x15, k, ext20, ""); }},
        {"bin_decrementq", W::Binary, W::Arithmetic, BMC_STAT_INVAL_BINARY, 2, true,
         [](S k, S, S) { return binary(0x16, k, ext20, ""); }},
        {"bin_appendq", W::Binary, W::Replaces, BMC_STAT_INVAL_BINARY, 2, true,
         [](S k, S v, S) { return binary(0x19, k, "", v); }},
        {"bin_prependq", W::Binary, W::Replaces, BMC_STAT_INVAL_BINARY, 2, true,
         [](S k, S v, S) { return binary(0x1a, k, "", v); }},
        {"bin_touch", W::Binary, W::Keeps, BMC_STAT_INVAL_BINARY, 2, false,
         [](S k, S, S) { return binary(0x1c, k, ext4, ""); }},
        {"bin_gat", W::Binary, W::Keeps, BMC_STAT_INVAL_BINARY, 2, false,
         [](S k, S, S) { return binary(0x1d, k, ext4, ""); }},
        {"bin_gatq", W::Binary, W::Keeps, BMC_STAT_INVAL_BINARY, 2, false,  // a hit is answered
         [](S k, S, S) { return binary(0x1e, k, ext4, ""); }},
        {"bin_gatk", W::Binary, W::Keeps, BMC_STAT_INVAL_BINARY, 2, false,
         [](S k, S, S) { return binary(0x23, k, ext4, ""); }},
        {"bin_gatkq", W::Binary, W::Keeps, BMC_STAT_INVAL_BINARY, 2, false,
         [](S k, S, S) { return binary(0x24, k, ext4, ""); }},
        {"bin_flush", W::Binary, W::Flushes, BMC_STAT_INVAL_FLUSH, 1, false,
         [](S, S, S) { return binary(0x08, "", "", ""); }},
        {"bin_flushq", W::Binary, W::Flushes, BMC_STAT_INVAL_FLUSH, 1, true,
         [](S, S, S) { return binary(0x18, "", "", ""); }},
    };
    return t;
}

inline const WriteFixture *write_fixture(std::string_view name) {
    for (const auto &w : write_fixtures())
        if (w.name == name) return &w;
    return nullptr;
}

// The rows of the command table that write (bmc_cmd_specs of a mutating kind, then the
// mutating and flushing binary opcodes), by the name their fixture carries.
inline std::vector<std::string> mutating_commands() {
    std::vector<std::string> names;
    for (const auto &s : bmc_cmd_specs)
        if (bmc_kind_specs[s.kind].flags & BMC_KF_MUTATES)
            names.emplace_back(s.name);
    for (__u8 op : bmc_binary_mutating_ops) names.push_back("bin_" + std::string(bmc_binary_op_name(op)));
    for (__u8 op : bmc_binary_flush_ops) names.push_back("bin_" + std::string(bmc_binary_op_name(op)));
    return names;
}

}  // namespace bmc::test
