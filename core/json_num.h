// Integers out of JSON numbers without undefined behaviour. nlohmann's get<int>() on a float
// converts it with a cast that C++ leaves undefined out of range (the fuzzer found 4.4e35 in a
// config.json), and on a wide integer it wraps. json_integer accepts an integer, or a float with an
// integral value, that T can hold, and refuses the rest.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>

namespace zo {

template <typename T>
bool json_integer(const nlohmann::json& v, T* out) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (!std::in_range<T>(u)) return false;
    *out = T(u);
    return true;
  }
  if (v.is_number_integer()) {
    const int64_t s = v.get<int64_t>();
    if (!std::in_range<T>(s)) return false;
    *out = T(s);
    return true;
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    // [min, max + 1): both bounds are powers of two or exact, so the comparisons are exact.
    if (!(std::trunc(d) == d && d >= double(std::numeric_limits<T>::min()) &&
          d < double(std::numeric_limits<T>::max()) + 1.0))
      return false;
    *out = T(d);
    return true;
  }
  return false;
}

}  // namespace zo
