// Loading and saving checkpoints: Hugging Face folders (config.json + safetensors, sharded or not)
// and GGUF files (LLaMA architecture).
#pragma once
#include <string>

#include "models/model.h"

namespace zo {

class Tokenizer;

struct LoadOptions {
  LoadOptions(DType s = DType::F32) : storage(s) {}  // NOLINT: LoadOptions{DType::BF16} reads well
  DType storage = DType::F32;  // master weights: F32 or BF16 (computation is always f32)
  std::string backing_file;    // disk tier: keep the masters in this file (see Model::allocate)
};

// `path` is a folder with config.json, or a .gguf file. Throws zo::Error naming the file and problem.
Model load_model(const std::string& path, const LoadOptions& opts = {});
// The tokenizer that belongs to `path`: tokenizer.json in the folder, or the GGUF's metadata.
Tokenizer load_tokenizer(const std::string& path);
bool is_gguf_path(const std::string& path);

// The GGUF steps of load_model and load_tokenizer, on a file already parsed (its name() names it in
// errors). config_from_gguf reads and validates the llama.* keys; load_gguf checks every tensor
// against that config before it allocates the masters.
class GgufFile;
ModelConfig config_from_gguf(const GgufFile& g);
Model load_gguf(const GgufFile& g, const LoadOptions& opts = {});
Tokenizer tokenizer_from_gguf(const GgufFile& g);
// An integer key as an int: if_absent when the file lacks it, an error naming the key when its value
// does not fit.
int gguf_int(const GgufFile& g, const char* key, int if_absent);

// Writes dir/config.json and dir/model.safetensors (F32 or BF16) that transformers loads unchanged.
// Tied embeddings are written once, as transformers writes them. Files are replaced atomically.
void save_hf(const Model& m, const std::string& dir, DType dtype = DType::F32);

}  // namespace zo
