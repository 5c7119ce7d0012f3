// bmc-verifier: what the verifier does with each program of BPF objects: processed
// instructions (log level 4, statistics), or the reason it refuses one. Each program is
// loaded on its own, so that one refusal does not hide the others. One JSON object per
// program on stdout.
#include <bpf/libbpf.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

int main(int argc, char **argv) {
    CLI::App app{"bmc-verifier: processed instructions per program of BPF objects (as root)"};
    std::vector<std::string> objects;
    app.add_option("objects", objects, "BPF object files")->required()->check(CLI::ExistingFile);
    CLI11_PARSE(app, argc, argv);
    libbpf_set_print([](libbpf_print_level, const char *, va_list) { return 0; });
    int failures = 0;
    for (const auto &path : objects) {
        std::vector<std::string> names;
        {
            bpf_object *obj = bpf_object__open_file(path.c_str(), nullptr);
            if (!obj) {
                std::fprintf(stderr, "bmc-verifier: cannot open %s\n", path.c_str());
                return 1;
            }
            bpf_program *p;
            bpf_object__for_each_program(p, obj) names.push_back(bpf_program__name(p));
            bpf_object__close(obj);
        }
        for (const auto &name : names) {
            bpf_object *obj = bpf_object__open_file(path.c_str(), nullptr);
            auto log = std::make_unique<char[]>(1 << 22);
            bpf_program *p;
            bpf_object__for_each_program(p, obj) {
                const bool it = name == bpf_program__name(p);
                bpf_program__set_autoload(p, it);
                if (it) {
                    bpf_program__set_log_level(p, 4);
                    bpf_program__set_log_buf(p, log.get(), 1 << 22);
                }
            }
            const int err = bpf_object__load(obj);
            const std::string text = log.get();
            nlohmann::json j = {{"object", path.substr(path.rfind('/') + 1)}, {"program", name}, {"loaded", err == 0}};
            std::smatch m;
            if (std::regex_search(text, m, std::regex("processed (\\d+) insns"))) j["processed_insns"] = std::stol(m[1]);
            if (std::regex_search(text, m, std::regex("verification time (\\d+) usec"))) j["verification_us"] = std::stol(m[1]);
            if (err) {
                failures++;
                // The verifier's own words: the last line that is not its statistics.
                std::string why;
                std::size_t end = text.size();
                while (end > 0) {
                    const std::size_t start = text.rfind('\n', end - 1);
                    const std::string line = text.substr(start == std::string::npos ? 0 : start + 1,
                                                         end - (start == std::string::npos ? 0 : start + 1));
                    if (!line.empty() && line.rfind("processed ", 0) != 0 && line.rfind("verification time", 0) != 0 &&
                        line.rfind("stack depth", 0) != 0) {
                        why = line;
                        break;
                    }
                    if (start == std::string::npos) break;
                    end = start;
                }
                j["refused"] = why.empty() ? std::string("error ") + std::to_string(err) : why;
            }
            std::printf("%s\n", j.dump().c_str());
            bpf_object__close(obj);
        }
    }
    return failures ? 3 : 0;
}
