// Fuzz target for the safetensors reader: any bytes must either parse into tensors whose every
// byte lies inside the input, or throw zo::Error. Anything else (crash, other exception, sanitizer
// report) is a finding.
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "models/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Copy into an exact-size buffer so AddressSanitizer flags a read one byte past the input.
  std::vector<uint8_t> buf(data, data + size);
  try {
    auto f = zo::SafetensorsFile::parse(buf.data(), buf.size(), "fuzz-input");
    const uint8_t* end = buf.data() + buf.size();
    uint64_t sum = 0, covered = 0;
    for (const auto& t : f.tensors()) {
      if (t.data < buf.data() || t.data > end || t.nbytes > size_t(end - t.data)) __builtin_trap();
      if (f.find(t.name) != &t) __builtin_trap();
      uint64_t numel = 1;
      for (int64_t d : t.shape) {
        if (d < 0) __builtin_trap();
        numel *= uint64_t(d);
      }
      if (numel * zo::dtype_size(t.dtype) != t.nbytes) __builtin_trap();
      for (size_t i = 0; i < t.nbytes; i++) sum += t.data[i];
      covered += t.nbytes;
      f.release(t);
    }
    // The tensors tile the data buffer, which ends at the end of the input.
    if (covered > buf.size()) __builtin_trap();
    for (const auto& [k, v] : f.metadata()) sum += k.size() + v.size();
    volatile uint64_t sink = sum;
    (void)sink;
  } catch (const zo::Error&) {
  }
  return 0;
}
