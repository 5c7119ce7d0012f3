// bmc-jitlines: where each source line of a loaded BPF program lies in its JIT image, so
// that a perf profile's sample addresses (perf script -F ip) can be charged to source
// lines (bench/harness.py's line profile). For every program with the given name, one
// JSON object per line: {"prog", "id", "addr" (kernel address where the line's
// instructions start), "file", "line", "text"}, from the kernel's jited line info and the
// program's BTF.
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace {

// Lines of one program, or an empty list with *why set.
nlohmann::json lines_of(int fd, const bpf_prog_info &first, std::string *why) {
    nlohmann::json out = nlohmann::json::array();
    const __u32 n = std::min(first.nr_line_info, first.nr_jited_line_info);
    if (n == 0 || first.btf_id == 0) {
        *why = "no line info (loaded without BTF?)";
        return out;
    }
    std::vector<bpf_line_info> li(first.nr_line_info);
    std::vector<__u64> jli(first.nr_jited_line_info);
    bpf_prog_info info{};
    info.nr_line_info = first.nr_line_info;
    info.line_info_rec_size = sizeof(bpf_line_info);
    info.line_info = reinterpret_cast<__u64>(li.data());
    info.nr_jited_line_info = first.nr_jited_line_info;
    info.jited_line_info_rec_size = sizeof(__u64);
    info.jited_line_info = reinterpret_cast<__u64>(jli.data());
    __u32 len = sizeof info;
    if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) {
        *why = std::string("bpf_obj_get_info_by_fd: ") + std::strerror(errno);
        return out;
    }
    btf *b = btf__load_from_kernel_by_id(first.btf_id);
    if (!b) {
        *why = "cannot load the program's BTF";
        return out;
    }
    for (__u32 i = 0; i < n; i++) {
        const char *file = btf__name_by_offset(b, li[i].file_name_off);
        const char *text = btf__name_by_offset(b, li[i].line_off);
        out.push_back({{"addr", jli[i]},
                       {"file", file ? file : ""},
                       {"line", BPF_LINE_INFO_LINE_NUM(li[i].line_col)},
                       {"text", text ? text : ""}});
    }
    btf__free(b);
    return out;
}

}  // namespace

int main(int argc, char **argv) {
    CLI::App app{"bmc-jitlines: the JIT address of every source line of the loaded BPF programs with a name (as root)"};
    std::string name = "bmc_rx";
    app.add_option("name", name, "the programs' name")->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    int found = 0;
    for (__u32 id = 0;;) {
        if (bpf_prog_get_next_id(id, &id) != 0) break;
        const int fd = bpf_prog_get_fd_by_id(id);
        if (fd < 0) continue;
        bpf_prog_info info{};
        __u32 len = sizeof info;
        if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && name == info.name) {
            std::string why;
            nlohmann::json lines = lines_of(fd, info, &why);
            if (lines.empty()) {
                std::fprintf(stderr, "bmc-jitlines: program %u: %s\n", id, why.c_str());
            } else {
                for (auto &l : lines) {
                    l["prog"] = name;
                    l["id"] = id;
                    std::printf("%s\n", l.dump().c_str());
                }
                found++;
            }
        }
        close(fd);
    }
    if (!found) {
        std::fprintf(stderr, "bmc-jitlines: no loaded program named %s with line info (run as root)\n", name.c_str());
        return 1;
    }
    return 0;
}
