// zo convert MODEL --out DIR: write any loadable model (HF folder or GGUF) as a Hugging Face
// folder (config.json + model.safetensors) that transformers loads unchanged.
#include "core/error.h"
#include "models/load.h"
#include "zo/cli/cli.h"
#include "zo/defaults.h"

namespace zo::cli {

namespace {
struct ConvertArgs {
  std::string model = "default", out, dtype = "f32";
  bool json = false;
};
}  // namespace

void add_convert(CLI::App& app, Runner& run) {
  auto a = std::make_shared<ConvertArgs>();
  auto* c = app.add_subcommand("convert", "Write a model (HF folder or GGUF, dequantized) as HF safetensors + config.json");
  c->add_option("model", a->model, "Model folder, .gguf file, or 'default'")->capture_default_str();
  c->add_option("--out,-o", a->out, "Output folder (created; its config.json and model.safetensors are replaced atomically)")
      ->required();
  c->add_option("--dtype", a->dtype, "Stored dtype: f32 or bf16")->capture_default_str();
  c->add_flag("--json", a->json, "Print the result as one JSON object on the last line");
  c->callback([&run, a] {
    run = [a] {
      std::string path = resolve_model(a->model);
      DType dt = parse_storage(a->dtype);
      Model m = load_model(path, LoadOptions{dt});
      save_hf(m, a->out, dt);
      size_t n = 0;
      for (auto& p : m.params) n += p.numel;
      if (a->json) {
        print_json({{"model", path}, {"out", a->out}, {"dtype", a->dtype}, {"parameters", n}});
      } else {
        fmt::print("wrote {} ({} parameters, {})\n", a->out, n, a->dtype);
      }
      return 0;
    };
  });
}

}  // namespace zo::cli
