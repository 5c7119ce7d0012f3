// The write observer's scenarios (core/bmc_stream.h), one table run against both of its
// instantiations: the C++ Observer (core_test) and the BPF programs through the
// test-runnable wrapper of the same reading (bpf_test). Each scenario is a connection's
// chunks as memcached's socket would receive them, and what memcached does with them.
#pragma once

#include <string>
#include <vector>

#include "packet.hpp"

namespace bmc::test {

struct StreamCase {
    const char *name;
    std::vector<std::string> chunks;      // one TCP connection's bytes, chunk by chunk
    std::vector<std::string> changed{};     // keys memcached changes: their buckets must move
    std::vector<std::string> unchanged{};   // keys it does not touch (data bytes, say)
    bool flush = false;                   // a flush_all (or a new epoch) must happen
    bool lost = false;                    // the reading cannot follow: the connection is lost
};

inline std::string nul(const std::string &a, const std::string &b) { return a + std::string(1, '\0') + b; }
// A binary request as bytes (the packet builder's, as a string).
inline std::string bin(unsigned char op, const std::string &key, const std::string &extras = "",
                       const std::string &value = "") {
    const Bytes b = bin_request(op, key, extras, value);
    return std::string(b.begin(), b.end());
}

inline std::vector<StreamCase> stream_cases() {
    const std::string ext8(8, '\0');
    return {
        {"set_in_one_chunk", {"set ka 0 0 3\r\nnew\r\n"}, {"ka"}, {"new"}},
        {"data_block_is_not_read_as_commands", {"set ka 0 0 9\r\ndelete kb\r\n"}, {"ka"}, {"kb"}},
        {"rejected_item_data_still_consumed", {"set ka 0 0 9\r\ndelete kbXX\r\ndelete kc\r\n"},
         {"ka", "kc"}, {"kb"}},
        {"too_large_item_data_swallowed", {"set ka 0 0 2000000000\r\n", std::string(2500, 'x') + "delete kb\r\n"},
         {"ka"}, {"kb"}},
        {"bad_storage_line_reads_no_data", {"set ka 0 0 x\r\ndelete kb\r\n"}, {"kb"}},
        {"wrong_token_count_reads_no_data", {"set ka 0 0\r\ndelete kb\r\n"}, {"kb"}},
        {"long_key_reads_no_data", {"set " + std::string(251, 'k') + " 0 0 1\r\ndelete kb\r\n"}, {"kb"}},
        {"negative_length_reads_no_data", {"set ka 0 0 -1\r\ndelete kb\r\n"}, {"kb"}},
        {"negative_flags_read_no_data", {"set ka -1 0 9\r\ndelete kb\r\n"}, {"kb"}},
        {"negative_exptime_is_a_number", {"set ka 0 -1 9\r\ndelete kb\r\n"}, {"ka"}, {"kb"}},
        {"signed_length_cannot_be_followed", {"set ka 0 0 +3\r\nabc\r\n", "delete kb\r\n"}, {}, {}, true, true},
        {"nul_ends_the_command_line", {nul("delete ka", "junk\r\n")}, {"ka"}, {}},
        {"nul_after_meta_delete", {nul("md ka", "\r\n")}, {"ka"}, {}},
        {"nul_after_flush_all", {nul("flush_all", "\r\n")}, {}, {}, true},
        {"nul_hides_the_rest_of_a_storage_line",
         {nul("set ka 0 0 9", " x y\r\n") + "delete kc\r\ndelete kb\r\n"}, {"ka", "kb"}, {"kc"}},
        {"flush_all_split_before_newline", {"flush_all\r", "\n"}, {}, {}, true},
        {"binary_magic_on_a_text_connection_is_text",
         {"get x\r\n", std::string(1, char(0x80)) + "junk\r\ndelete ka\r\n"}, {"ka"}, {}},
        {"binary_set", {bin(0x01, "ka", ext8, "v")}, {"ka"}, {}},
        {"binary_set_then_delete_split", {bin(0x01, "ka", ext8, "v").substr(0, 30),
                                          bin(0x01, "ka", ext8, "v").substr(30) + bin(0x04, "kb")}, {"ka", "kb"}, {}},
        {"binary_value_holding_text_is_not_read", {bin(0x01, "ka", ext8, "delete kb\r\n")}, {"ka"}, {"kb"}},
        {"binary_flush", {bin(0x08, "")}, {}, {}, true},
        {"binary_get_changes_nothing", {bin(0x00, "ka")}, {}, {"ka"}},
        {"meta_set_data_skipped", {"ms ka 11 T0\r\ndelete kb\r\n\r\nmd kc\r\n"}, {"ka", "kc"}, {"kb"}},
        {"pipelined_writes", {"set ka 0 0 1\r\n1\r\nset kb 0 0 1\r\n2\r\nincr kc 1\r\ndecr kd 1\r\ntouch ke 1\r\n"},
         {"ka", "kb", "kc", "kd", "ke"}, {}},
        {"gat_changes_every_key", {"gat 10 ka kb\r\n"}, {"ka", "kb"}, {}},
        {"reads_change_nothing", {"get ka kb\r\ngets ka\r\nmg ka v\r\nstats\r\n"}, {}, {"ka", "kb"}},
    };
}

// Every split of each of these writes into two chunks must invalidate its key.
inline std::vector<std::pair<std::string, std::string>> split_writes() {
    return {{"set ka 0 0 3\r\nnew\r\n", "ka"}, {"ms ka 3 T0\r\nnew\r\n", "ka"},
            {"delete ka\r\n", "ka"},          {"incr ka 5\r\n", "ka"},
            {"md ka q\r\n", "ka"},            {bin(0x01, "ka", std::string(8, '\0'), "new"), "ka"},
            {bin(0x04, "ka"), "ka"}};
}

}  // namespace bmc::test
