// Fuzz target: config.json parsing. Any input must give a ModelConfig that passes validation or
// a zo::Error; a valid config must also lay out a model (names, shapes, offsets) without
// overflowing (the arena itself is not allocated for absurd sizes: validation caps them).
#include <cstdint>
#include <string>

#include "core/error.h"
#include "models/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  try {
    zo::ModelConfig c = zo::config_from_hf_json(text, "fuzz/config.json");
    (void)zo::config_to_hf_json(c);
  } catch (const zo::Error&) {
  }
  return 0;
}
