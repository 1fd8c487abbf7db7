// Fuzz target: a GGUF file as `zo train --model FILE.gguf` reads it, the model and its tokenizer.
// Any bytes must give a config, a model and a tokenizer, or a zo::Error. The llama.* keys are
// validated (integers that do not fit an int are errors, not truncated), and every tensor is checked
// against the config before the masters are allocated: a loaded model's weights come from tensors
// the input holds, so the model stays small, and a forward over a few tokens and two decoding
// steps (greedy, sampled) run on it. The tokenizer encodes a few texts to ids inside its
// vocabulary and decodes them.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "models/forward.h"
#include "models/gguf.h"
#include "models/load.h"
#include "models/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const zo::GgufFile g = zo::GgufFile::parse(data, size, "fuzz.gguf");
    try {
      const zo::Tokenizer tok = zo::tokenizer_from_gguf(g);
      const int n = tok.vocab_size();
      for (const char* text : {"Hello world, it's 12345!", " a  b\n\t", "h\xc3\xa9llo \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80"}) {
        const std::vector<int32_t> ids = tok.encode(text);
        for (int32_t id : ids)
          if (id < 0 || id >= n) __builtin_trap();
        tok.decode(ids, false);
        tok.decode(ids, true);
      }
    } catch (const zo::Error&) {
    }
    zo::Model m = zo::load_gguf(g);
    // The tensors are in the input (at most 64 KiB under the ctest run; quantized types hold a few
    // weights per byte): a larger model means a tensor was accepted without its bytes.
    if (m.numel() > (size_t(1) << 22)) __builtin_trap();
    const zo::ModelConfig& c = m.cfg;
    std::vector<int32_t> ids;
    for (int t = 0; t < std::min(3, c.max_pos); t++) ids.push_back(int32_t(t % c.vocab_size));
    zo::Engine e(m);
    const zo::Batch b = zo::Batch::from_sequences({ids});
    e.forward(b);
    std::vector<float> logits(size_t(c.vocab_size));
    e.logits(e.hidden(), {int32_t(ids.size()) - 1}, logits.data());
    // Decoding with the KV cache, greedy and sampled (NaN logits must still give ids in range).
    for (float temperature : {0.0f, 0.8f}) {
      zo::GenerateOptions o;
      o.max_new_tokens = std::min(2, c.max_pos - int(ids.size()));
      o.temperature = temperature;
      o.top_k = 5;
      for (int32_t id : zo::generate(e, ids, o))
        if (id < 0 || id >= c.vocab_size) __builtin_trap();
    }
  } catch (const zo::Error&) {
  }
  return 0;
}
