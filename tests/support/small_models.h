// Small model configurations the tests build with random or synthetic weights (no fixture needed).
#pragma once
#include "models/model.h"

namespace zo::testing_support {

// A LLaMA with hidden 128, 4 heads over 2 KV heads of 32, untied head: n_layers blocks of
// about (3 + 3 ffn_dim / 128) x 64 KiB each in f32.
inline ModelConfig small_llama(int n_layers, int ffn_dim, int max_pos) {
  ModelConfig c;
  c.arch = Arch::Llama;
  c.vocab_size = 256;
  c.hidden = c.embed_dim = 128;
  c.n_layers = n_layers;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 32;
  c.ffn_dim = ffn_dim;
  c.max_pos = max_pos;
  c.norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.final_norm = true;
  c.tie_embeddings = false;
  return c;
}

}  // namespace zo::testing_support
