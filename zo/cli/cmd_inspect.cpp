// zo inspect MODEL: architecture, sizes, parameter count, stored dtypes and memory needs.
#include <map>

#include "core/error.h"
#include "models/gguf.h"
#include "models/load.h"
#include "models/safetensors.h"
#include "zo/cli/cli.h"
#include "zo/defaults.h"

namespace zo::cli {

namespace {
struct InspectArgs {
  std::string model = "default";
  bool json = false;
};

std::map<std::string, long> stored_dtypes(const std::string& path) {
  std::map<std::string, long> n;
  if (is_gguf_path(path)) {
    GgufFile g = GgufFile::open(path);
    for (auto& t : g.tensors()) n[ggml_type_name(t.type)]++;
  } else {
    HfWeights w = HfWeights::open(path);
    for (auto& name : w.names()) n[dtype_name(w.get(name).dtype)]++;
  }
  return n;
}
}  // namespace

void add_inspect(CLI::App& app, Runner& run) {
  auto a = std::make_shared<InspectArgs>();
  auto* c = app.add_subcommand("inspect", "Describe a model: architecture, parameters, dtypes, memory");
  c->add_option("model", a->model, "Model folder, .gguf file, or 'default'");
  c->add_flag("--json", a->json, "Print the result as one JSON object on the last line");
  c->callback([&run, a] {
    run = [a] {
      std::string path = resolve_model(a->model);
      Model m = load_model(path, LoadOptions{DType::F32});
      const ModelConfig& cfg = m.cfg;
      size_t n_params = 0;
      for (auto& p : m.params) n_params += p.numel;
      size_t block = m.max_block_numel();
      auto dtypes = stored_dtypes(path);
      nlohmann::json j;
      j["model"] = path;
      j["architecture"] = cfg.arch == Arch::OPT ? "OPTForCausalLM" : (cfg.model_type == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM");
      j["vocab_size"] = cfg.vocab_size;
      j["hidden_size"] = cfg.hidden;
      j["layers"] = cfg.n_layers;
      j["heads"] = cfg.n_heads;
      j["kv_heads"] = cfg.n_kv_heads;
      j["head_dim"] = cfg.head_dim;
      j["ffn_dim"] = cfg.ffn_dim;
      j["max_positions"] = cfg.max_pos;
      j["tied_embeddings"] = cfg.tie_embeddings;
      if (cfg.arch == Arch::OPT) {
        j["pre_layer_norm"] = cfg.pre_ln;
        j["word_embed_proj_dim"] = cfg.embed_dim;
      } else {
        j["rope_theta"] = cfg.rope_theta;
      }
      j["parameters"] = n_params;
      j["stored_dtypes"] = dtypes;
      j["memory_f32_bytes"] = n_params * 4;
      j["memory_bf16_bytes"] = n_params * 2;
      j["largest_block_parameters"] = block;
      if (a->json) {
        print_json(j);
        return 0;
      }
      std::string dt;
      for (auto& [k, v] : dtypes) dt += fmt::format("{}{} x{}", dt.empty() ? "" : ", ", k, v);
      fmt::print("model          {}\n", path);
      fmt::print("architecture   {}\n", j["architecture"].get<std::string>());
      fmt::print("layers         {} (hidden {}, heads {} / kv {}, head_dim {}, ffn {})\n", cfg.n_layers, cfg.hidden,
                 cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.ffn_dim);
      fmt::print("vocabulary     {}{}\n", cfg.vocab_size, cfg.tie_embeddings ? " (tied head)" : "");
      fmt::print("context        {}\n", cfg.max_pos);
      fmt::print("parameters     {} ({:.1f} M)\n", n_params, double(n_params) / 1e6);
      fmt::print("stored dtypes  {}\n", dt);
      fmt::print("masters        {:.1f} MiB as f32, {:.1f} MiB as bf16\n", double(n_params) * 4 / 1048576.0,
                 double(n_params) * 2 / 1048576.0);
      fmt::print("largest block  {} parameters ({:.1f} MiB f32 working copy)\n", block, double(block) * 4 / 1048576.0);
      return 0;
    };
  });
}

}  // namespace zo::cli
