#include "zo/defaults.h"

#include <cstdlib>
#include <filesystem>

#include "core/error.h"

namespace zo {

std::string default_model_path() {
  if (const char* p = std::getenv("ZO_DEFAULT_MODEL"); p && *p) return p;
  std::string home;
  if (const char* z = std::getenv("ZO_HOME"); z && *z)
    home = z;
  else if (const char* h = std::getenv("HOME"); h && *h)
    home = std::string(h) + "/.cache/zo";
  else
    home = ".zo";
  return home + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

std::string resolve_model(const std::string& arg) {
  if (!arg.empty() && arg != "default") return arg;
  std::string p = default_model_path();
  if (!std::filesystem::exists(p))
    fail("the default model is not installed at {}: run tools/setup.sh (or pass --model PATH)", p);
  return p;
}

}  // namespace zo
