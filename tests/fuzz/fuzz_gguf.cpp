// Fuzz target for the GGUF reader: parse untrusted bytes, read every metadata key through the
// getter its type allows, then dequantize every tensor (capped in total so a valid header that
// describes huge tensors cannot exhaust memory). zo::Error is the expected outcome for bad input.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "models/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    zo::GgufFile f = zo::GgufFile::parse(data, size, "fuzz.gguf");
    for (const std::string& k : f.keys()) {
      try {  // type mismatches and u64 overflow are errors, not crashes
        switch (f.type_of(k)) {
          case zo::GgufValueType::STRING: f.get_string(k); break;
          case zo::GgufValueType::BOOL: f.get_bool(k); break;
          case zo::GgufValueType::ARRAY:
            try { f.get_string_array(k); } catch (const zo::Error&) {}
            try { f.get_int_array(k); } catch (const zo::Error&) {}
            f.get_float_array(k);
            break;
          default: f.get_float(k); f.get_int(k); break;
        }
      } catch (const zo::Error&) {
      }
    }
    constexpr int64_t kCap = int64_t(1) << 22;  // floats dequantized per input
    int64_t budget = kCap;
    std::vector<float> out;
    for (const zo::GgufTensor& t : f.tensors()) {
      int64_t n = t.numel();
      if (n > budget || !zo::ggml_can_dequantize(t.type)) continue;
      budget -= n;
      out.resize(size_t(n));
      f.dequantize(t, out.data());
      f.find(t.name);
    }
  } catch (const zo::Error&) {
  }
  return 0;
}
