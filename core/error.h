// Errors. Library code throws zo::Error with a message that names the file (or input) and the
// problem; only the CLI turns it into one line on stderr and a non-zero exit. Checks are never
// compiled out: ZO_CHECK stays on in release builds.
#pragma once
#include <fmt/format.h>
#include <stdexcept>
#include <string>

namespace zo {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace zo

// ZO_CHECK(cond, "fmt", args...): throw zo::Error with the formatted message when cond is false.
#define ZO_CHECK(cond, ...)              \
  do {                                   \
    if (!(cond)) ::zo::fail(__VA_ARGS__); \
  } while (0)
