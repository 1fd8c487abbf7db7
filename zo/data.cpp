#include "zo/data.h"

#include <fstream>

#include "core/error.h"

namespace zo {

std::vector<nlohmann::json> read_jsonl(const std::string& path, long max_rows) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("{}: cannot open", path);
  return parse_jsonl(f, path, max_rows);
}

std::vector<nlohmann::json> parse_jsonl(std::istream& f, const std::string& path, long max_rows) {
  std::vector<nlohmann::json> rows;
  std::string line;
  long lineno = 0;
  while (std::getline(f, line)) {
    lineno++;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) fail("{}:{}: not valid JSON", path, lineno);
    if (!j.is_object()) fail("{}:{}: expected a JSON object, got {}", path, lineno, j.type_name());
    j["__line"] = lineno;
    rows.push_back(std::move(j));
    if (max_rows >= 0 && long(rows.size()) >= max_rows) break;
  }
  if (f.bad()) fail("{}: read error", path);
  if (rows.empty()) fail("{}: no data rows", path);
  return rows;
}

std::string json_string_field(const nlohmann::json& row, const std::string& field, const std::string& where) {
  auto it = row.find(field);
  if (it == row.end()) fail("{}: field '{}' missing", where, field);
  if (!it->is_string()) fail("{}: field '{}' is a {}, expected a string", where, field, it->type_name());
  return it->get<std::string>();
}

long json_int_field(const nlohmann::json& row, const std::string& field, const std::string& where) {
  auto it = row.find(field);
  if (it == row.end()) fail("{}: field '{}' missing", where, field);
  if (it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(LONG_MAX))
    fail("{}: field '{}' is out of range ({})", where, field, it->dump());
  if (it->is_number_integer()) return it->get<long>();
  if (it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    size_t pos = 0;
    long v = 0;
    try {
      v = std::stol(s, &pos);
    } catch (...) {
      pos = 0;
    }
    if (pos == s.size() && !s.empty()) return v;
  }
  fail("{}: field '{}' is not an integer", where, field);
}

}  // namespace zo
