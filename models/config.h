// Model hyper-parameters, read from a Hugging Face config.json or from GGUF metadata.
#pragma once
#include <string>

namespace zo {

enum class Arch { OPT, Llama };  // Llama covers LlamaForCausalLM, Qwen2ForCausalLM and GGUF "llama"

struct ModelConfig {
  Arch arch = Arch::Llama;
  std::string model_type;  // "opt", "llama", "qwen2"
  int vocab_size = 0;
  int hidden = 0;          // residual width C
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;      // grouped-query attention: n_heads % n_kv_heads == 0
  int head_dim = 0;
  int ffn_dim = 0;
  int max_pos = 0;         // max_position_embeddings
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  // OPT
  bool pre_ln = true;      // do_layer_norm_before (false for opt-350m: post-LN)
  int embed_dim = 0;       // word_embed_proj_dim for OPT (== hidden unless project_in/out exist)
  bool final_norm = true;  // OPT: do_layer_norm_before and not _remove_final_layer_norm
  bool ln_bias = false;    // LayerNorm with bias (OPT)
  // bias flags
  bool qkv_bias = false;
  bool o_bias = false;
  bool mlp_bias = false;
  bool tie_embeddings = false;
  int bos_id = -1, eos_id = -1, pad_id = -1;

  bool has_projection() const { return arch == Arch::OPT && embed_dim != hidden; }
  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
};

// Parse config.json text. `source` names the file in error messages. Unsupported features
// (rope_scaling, sliding windows, other activations) are refused with a clear error.
ModelConfig config_from_hf_json(const std::string& text, const std::string& source);
// config.json text that transformers loads unchanged for this config.
std::string config_to_hf_json(const ModelConfig& c);
// Checks internal consistency (positive sizes, divisibility); throws zo::Error naming `source`.
void validate_config(const ModelConfig& c, const std::string& source);

}  // namespace zo
