// Emits bmc_gen.h, the BPF instantiation of core/: constants, struct layouts with size
// and offset asserts computed from the C++ layout, enums, the command and opcode tables,
// and the shared grammar and cache code.
//
// usage: bmc_gen OUTDIR core/bmc_grammar.h core/bmc_binary.h ... core/bmc_driver.h
#include <cstddef>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string_view>
#include <string>

#include "bmc_layout.hpp"

namespace {

std::ostringstream out;

void emit_constants() {
    out << "enum {\n";
#define EMIT_CONSTANT(name, value) out << "\t" #name " = " << (value) << ",\n";
    BMC_CONSTANTS(EMIT_CONSTANT)
#undef EMIT_CONSTANT
    out << "\tBMC_NUM_CMDS = " << BMC_NUM_CMDS << ",\n";
    out << "};\n\n";
}

void emit_structs() {
#define EMIT_SCALAR(type, name) out << "\t" #type " " #name ";\n";
#define EMIT_ARRAY(type, name, count) out << "\t" #type " " #name "[" << (count) << "];\n";
#define ASSERT_SCALAR(type, name)                                                               \
    out << "_Static_assert(__builtin_offsetof(struct " << sname << ", " #name ") == "          \
        << offsetof(S, name) << ", \"" << sname << "." #name " offset\");\n";
#define ASSERT_ARRAY(type, name, count) ASSERT_SCALAR(type, name)
#define EMIT_STRUCT(sn, FIELDS, align)                                                          \
    {                                                                                           \
        using S = sn;                                                                           \
        const char *sname = #sn;                                                                \
        out << "struct " #sn " {\n";                                                            \
        FIELDS(EMIT_SCALAR, EMIT_ARRAY)                                                         \
        out << "} __attribute__((aligned(" << (align) << ")));\n";                              \
        out << "_Static_assert(sizeof(struct " #sn ") == " << sizeof(S) << ", \"" #sn           \
            << " size\");\n";                                                                   \
        FIELDS(ASSERT_SCALAR, ASSERT_ARRAY)                                                     \
        out << "\n";                                                                            \
    }
    BMC_STRUCTS(EMIT_STRUCT)
#undef EMIT_STRUCT
#undef ASSERT_ARRAY
#undef ASSERT_SCALAR
#undef EMIT_ARRAY
#undef EMIT_SCALAR
}

void emit_enums() {
#define EMIT_ITEM(name) out << "\t" #name ",\n";
#define EMIT_ITEM2(name, text) out << "\t" #name ",\n";
    out << "enum bmc_cmd_kind {\n";
    BMC_CMD_KINDS(EMIT_ITEM)
    out << "\tBMC_NUM_KINDS,\n};\n\nenum bmc_rule {\n";
    BMC_RULES(EMIT_ITEM)
    out << "};\n\nenum bmc_family {\n";
    BMC_FAMILIES(EMIT_ITEM)
    out << "};\n\nenum bmc_stat {\n";
    BMC_STATS(EMIT_ITEM2)
    out << "\tBMC_NUM_STATS,\n};\n\nenum bmc_hit_stage {\n\tBMC_STAGE_NONE,\n";
    BMC_HIT_STAGES(EMIT_ITEM2)
    out << "\tBMC_STAGE_AFTER_LAST,\n};\n\n";
#define EMIT_FLAG(name, value) out << "#define " #name " " << (value) << "\n";
    BMC_KIND_FLAGS(EMIT_FLAG)
#undef EMIT_FLAG
    out << "\n";
#undef EMIT_ITEM
#undef EMIT_ITEM2
}

void emit_tables() {
    char buf[160];
    out << "const struct bmc_cmd bmc_cmd_table[BMC_NUM_CMDS] = {\n";
    for (std::uint32_t i = 0; i < BMC_NUM_CMDS; i++) {
        const bmc_cmd &c = bmc_cmd_table_arr[i];
        std::snprintf(buf, sizeof buf, "\t{ 0x%016llxULL, 0x%016llxULL, %u, %u, %u, %u, %u, %u, %u, %u, %u, %u }, /* %s */\n",
                      static_cast<unsigned long long>(c.w0), static_cast<unsigned long long>(c.w1),
                      c.len, c.kind, c.key_arg, c.family, c.data_arg, c.min_args, c.max_args, c.num_mask, c.rule, c.kflags,
                      std::string(bmc_cmd_specs[i].name).c_str());
        out << buf;
    }
    out << "};\n\n";
    auto bitmap = [&](const char *name, const std::array<__u64, 4> &m) {
        out << "const __u64 " << name << "[4] = {";
        for (int i = 0; i < 4; i++) {
            std::snprintf(buf, sizeof buf, "%s0x%016llxULL", i ? ", " : " ",
                          static_cast<unsigned long long>(m[i]));
            out << buf;
        }
        out << " };\n";
    };
    bitmap("bmc_bin_mut_map", bmc_bin_mut_map_arr);
    bitmap("bmc_bin_flush_map", bmc_bin_flush_map_arr);
    out << "\n";
}

bool paste(std::ostream &os, const char *path) {
    std::ifstream in(path);
    if (!in) {
        std::cerr << "bmc_gen: cannot read " << path << "\n";
        return false;
    }
    // #line points compiler, BTF and verifier line info at the core file a person edits.
    os << "#line 1 \"" << path << "\"\n" << in.rdbuf() << "\n";
    return true;
}

bool write_atomically(const std::string &path, const std::string &text) {
    std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp);
        f << text;
        if (!f) {
            std::cerr << "bmc_gen: cannot write " << tmp << "\n";
            return false;
        }
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::perror("bmc_gen: rename");
        return false;
    }
    return true;
}

}  // namespace

// bmc_gen OUTDIR HEADER... in dependency order:
//   OUTDIR/bmc_gen.h           layout, tables, and the headers before bmc_datapath.h
//                              (grammar, binary, frame, cache rules)
//   OUTDIR/bmc_gen_datapath.h  bmc_datapath.h and those after it but the driver,
//                              included after the BPF environment
//   OUTDIR/bmc_gen_driver.h    bmc_driver.h, the per-packet flow, included after the BPF I/O
int main(int argc, char **argv) {
    if (argc < 3) {
        std::cerr << "usage: bmc_gen OUTDIR HEADER...\n";
        return 2;
    }
    const std::string banner = "/* Generated by core/gen/bmc_gen.cpp from core/. Do not edit. */\n";
    out << banner
        << "#ifndef BMC_GEN_H\n#define BMC_GEN_H\n\n"
           "#ifndef BMC_INLINE\n#define BMC_INLINE static __always_inline\n#endif\n\n";
    emit_constants();
    emit_structs();
    emit_enums();
    emit_tables();
    // The driver (bmc_driver.h) goes into a header of its own: it comes after the I/O
    // functions, which the including side defines on top of the datapath.
    std::ostringstream dp, drv;
    dp << banner;
    drv << banner;
    bool in_datapath = false;
    for (int i = 2; i < argc; i++) {
        const std::string_view h = argv[i];
        in_datapath = in_datapath || h.ends_with("bmc_datapath.h");
        if (!paste(h.ends_with("bmc_driver.h") ? drv : in_datapath ? dp : out, argv[i])) return 1;
    }
    out << "#endif /* BMC_GEN_H */\n";

    std::string dir = argv[1];
    return write_atomically(dir + "/bmc_gen.h", out.str()) &&
                   write_atomically(dir + "/bmc_gen_datapath.h", dp.str()) &&
                   write_atomically(dir + "/bmc_gen_driver.h", drv.str())
               ? 0
               : 1;
}
