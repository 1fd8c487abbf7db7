// Fuzz target: the step log reader. Any bytes must give records (each decoded with its checksum
// verified, steps in order) or a zo::Error; never a crash, hang or out-of-bounds read.
#include <cstdint>
#include <string>

#include "core/error.h"
#include "zo/steplog.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    zo::StepLogContents c = zo::parse_step_log(data, size, "fuzz/steps.zolog");
    for (size_t i = 0; i < c.records.size(); i++)
      if (c.records[i].step != i || c.records[i].seeds.size() != c.records[i].g.size()) __builtin_trap();
    if (c.valid_bytes > size) __builtin_trap();
  } catch (const zo::Error&) {
  }
  return 0;
}
