// Reading JSONL data sets. Every line is untrusted: a malformed one is reported as
// "<file>:<line>: <problem>", never skipped silently.
#pragma once
#include <nlohmann/json.hpp>
#include <istream>
#include <string>
#include <vector>

namespace zo {

// One JSON object per non-empty line. max_rows < 0: all.
std::vector<nlohmann::json> read_jsonl(const std::string& path, long max_rows = -1);
// The same from a stream; `source` names it in errors (tests/fuzz/fuzz_data.cpp feeds it bytes).
std::vector<nlohmann::json> parse_jsonl(std::istream& in, const std::string& source, long max_rows = -1);

// A string field of a JSONL row (numbers are not silently converted). Errors name file and line.
std::string json_string_field(const nlohmann::json& row, const std::string& field, const std::string& where);
// An integer field (a JSON integer, or a string holding one).
long json_int_field(const nlohmann::json& row, const std::string& field, const std::string& where);

}  // namespace zo
