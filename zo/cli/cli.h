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

}  // namespace zo::cli
