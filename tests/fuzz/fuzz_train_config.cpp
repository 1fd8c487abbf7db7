// Fuzz target: a training config (zo train --config FILE, and the config in a run log's header).
// Any bytes must give a TrainConfig, or a zo::Error naming the problem. A config that passes
// validation must survive a round trip through its JSON unchanged.
#include <cstdint>
#include <string>

#include "core/error.h"
#include "zo/train.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  try {
    const zo::TrainConfig c = zo::TrainConfig::from_json(j, "fuzz/config.json");
    c.validate();
    const nlohmann::json once = c.to_json();
    if (zo::TrainConfig::from_json(once, "fuzz/round-trip").to_json() != once) __builtin_trap();
  } catch (const zo::Error&) {
  }
  return 0;
}
