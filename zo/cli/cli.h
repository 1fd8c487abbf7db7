// The zo command line: one file per command, each registering a CLI11 subcommand.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "core/dtype.h"

namespace zo::cli {

// A command's body runs after parsing; it returns the process exit code.
using Runner = std::function<int()>;

void add_inspect(CLI::App& app, Runner& run);
void add_eval(CLI::App& app, Runner& run);
void add_generate(CLI::App& app, Runner& run);
void add_bench(CLI::App& app, Runner& run);
void add_convert(CLI::App& app, Runner& run);
void add_train(CLI::App& app, Runner& run);  // train, replay, export

// --dtype f32|bf16 -> DType
DType parse_storage(const std::string& s);
// Prints the result object as one line on stdout: the last line of every --json run.
void print_json(const nlohmann::json& j);

// A byte count with suffixes K, M, G (binary): CLI11's AsSizeValue, after a check of the sign (its
// unsigned parse reads "-5G" as 2^64 - 5 and then reports an overflow of that number).
inline CLI::Option* byte_size(CLI::Option* o) {
  return o->transform(CLI::AsSizeValue(false))->transform(CLI::Validator(
      [](std::string& v) {
        const size_t at = v.find_first_not_of(" \t");
        return at != std::string::npos && v[at] == '-' ? "a byte count can't be negative: " + v : std::string();
      },
      ""));
}

}  // namespace zo::cli
