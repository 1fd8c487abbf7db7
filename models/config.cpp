#include "models/config.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_num.h"

namespace zo {

using json = nlohmann::json;

namespace {

template <typename T>
T get_or(const json& j, const char* key, T dflt, const std::string& src) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    T v{};
    if (!json_integer(*it, &v)) fail("{}: config key '{}' is not an integer in range ({})", src, key, it->dump());
    return v;
  }
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    fail("{}: config key '{}' has the wrong type ({})", src, key, it->type_name());
  }
}

template <typename T>
T get_req(const json& j, const char* key, const std::string& src) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) fail("{}: config key '{}' missing", src, key);
  return get_or<T>(j, key, T{}, src);
}

int token_id_or(const json& j, const char* key, const std::string& src) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return -1;
  if (it->is_array()) {  // LLaMA-3 configs list several eos ids: the first is the canonical one
    int id = -1;
    if (it->empty() || !(*it)[0].is_number_integer() || !json_integer((*it)[0], &id))
      fail("{}: config key '{}' is not a token id", src, key);
    return id;
  }
  int id = -1;
  if (!it->is_number_integer() || !json_integer(*it, &id)) fail("{}: config key '{}' is not a token id", src, key);
  return id;
}

}  // namespace

void validate_config(const ModelConfig& c, const std::string& src) {
  ZO_CHECK(c.vocab_size > 0 && c.vocab_size < (1 << 24), "{}: vocab_size {} out of range", src, c.vocab_size);
  ZO_CHECK(c.hidden > 0 && c.hidden <= 65536, "{}: hidden_size {} out of range", src, c.hidden);
  ZO_CHECK(c.n_layers > 0 && c.n_layers <= 1024, "{}: num_hidden_layers {} out of range", src, c.n_layers);
  ZO_CHECK(c.n_heads > 0 && c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0,
           "{}: num_attention_heads {} must be a positive multiple of num_key_value_heads {}", src,
           c.n_heads, c.n_kv_heads);
  // (Bounded before any product: q_dim() = heads x head_dim is an int.)
  ZO_CHECK(c.n_heads <= 65536, "{}: num_attention_heads {} out of range", src, c.n_heads);
  ZO_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0 && c.head_dim <= 1024, "{}: head_dim {} must be even and positive",
           src, c.head_dim);
  ZO_CHECK(c.arch != Arch::OPT || c.n_heads * c.head_dim == c.hidden,
           "{}: hidden_size {} is not divisible by num_attention_heads {}", src, c.hidden, c.n_heads);
  ZO_CHECK(c.ffn_dim > 0 && c.ffn_dim <= (1 << 20), "{}: ffn size {} out of range", src, c.ffn_dim);
  ZO_CHECK(c.max_pos > 0 && c.max_pos <= (1 << 24), "{}: max_position_embeddings {} out of range", src, c.max_pos);
  ZO_CHECK(c.embed_dim > 0 && c.embed_dim <= 65536, "{}: embedding width {} out of range", src, c.embed_dim);
  ZO_CHECK(c.norm_eps > 0 && c.norm_eps < 1, "{}: norm epsilon {} out of range", src, c.norm_eps);
  ZO_CHECK(c.rope_theta > 0, "{}: rope_theta {} must be positive", src, c.rope_theta);
}

ModelConfig config_from_hf_json(const std::string& text, const std::string& src) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) fail("{}: not valid JSON", src);
  if (!j.is_object()) fail("{}: expected a JSON object", src);
  ModelConfig c;
  c.model_type = get_or<std::string>(j, "model_type", "", src);
  if (c.model_type.empty() && j.contains("architectures") && j["architectures"].is_array() &&
      !j["architectures"].empty() && j["architectures"][0].is_string()) {
    std::string a = j["architectures"][0].get<std::string>();
    if (a.rfind("OPT", 0) == 0) c.model_type = "opt";
    if (a.rfind("Llama", 0) == 0) c.model_type = "llama";
    if (a.rfind("Qwen2", 0) == 0) c.model_type = "qwen2";
  }
  if (c.model_type != "opt" && c.model_type != "llama" && c.model_type != "qwen2" && c.model_type != "mistral")
    fail("{}: model_type '{}' is not supported (supported: opt, llama, qwen2, mistral)", src, c.model_type);
  c.vocab_size = get_req<int>(j, "vocab_size", src);
  c.hidden = get_req<int>(j, "hidden_size", src);
  c.n_layers = get_req<int>(j, "num_hidden_layers", src);
  c.n_heads = get_req<int>(j, "num_attention_heads", src);
  c.max_pos = get_or<int>(j, "max_position_embeddings", 2048, src);
  c.bos_id = token_id_or(j, "bos_token_id", src);
  c.eos_id = token_id_or(j, "eos_token_id", src);
  c.pad_id = token_id_or(j, "pad_token_id", src);
  if (c.model_type == "opt") {
    c.arch = Arch::OPT;
    c.n_kv_heads = c.n_heads;
    ZO_CHECK(c.n_heads > 0 && c.hidden % c.n_heads == 0, "{}: hidden_size {} not divisible by num_attention_heads {}",
             src, c.hidden, c.n_heads);
    c.head_dim = c.hidden / c.n_heads;
    c.ffn_dim = get_req<int>(j, "ffn_dim", src);
    c.norm_eps = 1e-5f;  // OPT's nn.LayerNorm default
    c.pre_ln = get_or<bool>(j, "do_layer_norm_before", true, src);
    c.final_norm = c.pre_ln && !get_or<bool>(j, "_remove_final_layer_norm", false, src);
    c.embed_dim = get_or<int>(j, "word_embed_proj_dim", c.hidden, src);
    c.ln_bias = true;
    ZO_CHECK(get_or<bool>(j, "layer_norm_elementwise_affine", true, src),
             "{}: layer_norm_elementwise_affine=false is not supported", src);
    bool bias = get_or<bool>(j, "enable_bias", true, src);
    c.qkv_bias = c.o_bias = c.mlp_bias = bias;
    c.tie_embeddings = get_or<bool>(j, "tie_word_embeddings", true, src);
    std::string act = get_or<std::string>(j, "activation_function", "relu", src);
    ZO_CHECK(act == "relu", "{}: activation_function '{}' is not supported (OPT uses relu)", src, act);
  } else if (c.model_type == "llama" || c.model_type == "qwen2" || c.model_type == "mistral") {
    c.arch = Arch::Llama;
    c.n_kv_heads = get_or<int>(j, "num_key_value_heads", c.n_heads, src);
    ZO_CHECK(c.n_heads > 0, "{}: num_attention_heads must be positive", src);
    c.head_dim = get_or<int>(j, "head_dim", c.n_heads > 0 ? c.hidden / c.n_heads : 0, src);
    c.ffn_dim = get_req<int>(j, "intermediate_size", src);
    c.norm_eps = float(get_or<double>(j, "rms_norm_eps", 1e-6, src));
    c.rope_theta = float(get_or<double>(j, "rope_theta", 10000.0, src));
    c.embed_dim = c.hidden;
    c.tie_embeddings = get_or<bool>(j, "tie_word_embeddings", false, src);
    if (c.model_type == "qwen2") {
      c.qkv_bias = true;  // Qwen2 always has q/k/v biases, never an o bias
      ZO_CHECK(!get_or<bool>(j, "use_sliding_window", false, src), "{}: sliding-window attention is not supported", src);
    } else {
      c.qkv_bias = c.o_bias = get_or<bool>(j, "attention_bias", false, src);
      c.mlp_bias = get_or<bool>(j, "mlp_bias", false, src);
    }
    if (c.model_type == "mistral")
      ZO_CHECK(get_or<json>(j, "sliding_window", json(), src).is_null(), "{}: sliding-window attention is not supported", src);
    // transformers >= 5 writes {"rope_parameters": {"rope_theta": .., "rope_type": "default"}};
    // older configs have a top-level rope_theta and an optional rope_scaling.
    for (const char* key : {"rope_parameters", "rope_scaling"}) {
      auto rp = j.find(key);
      if (rp == j.end() || rp->is_null()) continue;
      ZO_CHECK(rp->is_object(), "{}: '{}' must be an object", src, key);
      std::string type = get_or<std::string>(*rp, "rope_type", get_or<std::string>(*rp, "type", "default", src), src);
      ZO_CHECK(type == "default", "{}: {} of type '{}' is not supported yet (only plain RoPE)", src, key, type);
      if (rp->contains("rope_theta")) c.rope_theta = float(get_or<double>(*rp, "rope_theta", 10000.0, src));
    }
    std::string act = get_or<std::string>(j, "hidden_act", "silu", src);
    ZO_CHECK(act == "silu", "{}: hidden_act '{}' is not supported (expected silu)", src, act);
  } else {
    fail("{}: model_type '{}' is not supported (supported: opt, llama, qwen2, mistral)", src, c.model_type);
  }
  validate_config(c, src);
  return c;
}

std::string config_to_hf_json(const ModelConfig& c) {
  json j;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden;
  j["num_hidden_layers"] = c.n_layers;
  j["num_attention_heads"] = c.n_heads;
  j["max_position_embeddings"] = c.max_pos;
  j["tie_word_embeddings"] = c.tie_embeddings;
  j["torch_dtype"] = "float32";
  if (c.bos_id >= 0) j["bos_token_id"] = c.bos_id;
  if (c.eos_id >= 0) j["eos_token_id"] = c.eos_id;
  if (c.pad_id >= 0) j["pad_token_id"] = c.pad_id;
  if (c.arch == Arch::OPT) {
    j["architectures"] = {"OPTForCausalLM"};
    j["model_type"] = "opt";
    j["ffn_dim"] = c.ffn_dim;
    j["do_layer_norm_before"] = c.pre_ln;
    j["_remove_final_layer_norm"] = c.pre_ln && !c.final_norm;
    j["word_embed_proj_dim"] = c.embed_dim;
    j["activation_function"] = "relu";
    j["enable_bias"] = c.qkv_bias;
  } else {
    bool qwen = c.model_type == "qwen2";
    j["architectures"] = {qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM"};
    j["model_type"] = qwen ? "qwen2" : "llama";
    j["num_key_value_heads"] = c.n_kv_heads;
    j["head_dim"] = c.head_dim;
    j["intermediate_size"] = c.ffn_dim;
    j["rms_norm_eps"] = std::stod(fmt::format("{}", c.norm_eps));  // 1e-05, not 9.99999974e-06
    j["rope_theta"] = std::stod(fmt::format("{}", c.rope_theta));
    j["hidden_act"] = "silu";
    if (!qwen) {
      j["attention_bias"] = c.qkv_bias;
      j["mlp_bias"] = c.mlp_bias;
    }
  }
  return j.dump(2) + "\n";
}

}  // namespace zo
