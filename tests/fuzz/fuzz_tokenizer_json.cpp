// Fuzz target for tokenizer.json: parse untrusted bytes; if they make a tokenizer, encode a few
// strings (and the input's own tail as text), decode the ids, and decode ids at the edges of the
// vocabulary. zo::Error is the expected outcome for bad input; anything else is a finding.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "models/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    zo::Tokenizer tok = zo::Tokenizer::from_json(bytes, "", "fuzz-tokenizer.json");
    const std::string texts[] = {"", "Hello world, it's 12345 <s> </s>!", "  \n\t\r\n  x",
                                 "héllo 日本語 😀👨‍👩‍👧",
                                 std::string(bytes.substr(size > 64 ? size - 64 : 0))};
    for (const std::string& t : texts) {
      try {  // the input's tail is often not valid UTF-8: an error, not a crash
        std::vector<int32_t> ids = tok.encode(t, true);
        tok.decode(ids, false);
        tok.decode(ids, true);
        tok.encode(t, false);
      } catch (const zo::Error&) {
      }
    }
    int n = tok.vocab_size();
    std::vector<int32_t> edge = {-1, 0, 1, n - 1, n, n + 1, 0x7fffffff};
    tok.decode(edge, false);
    for (int32_t id : edge) tok.token_to_id(tok.id_to_token(id));
  } catch (const zo::Error&) {
  }
  return 0;
}
