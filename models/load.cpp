#include "models/load.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "models/gguf.h"
#include "models/safetensors.h"

namespace zo {

namespace fs = std::filesystem;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("{}: cannot open", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); i++) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// Names a tensor may carry in older or stripped checkpoints (facebook/opt-* drop "model.").
const StTensor* find_hf(const HfWeights& w, const std::string& name) {
  if (const StTensor* t = w.find(name)) return t;
  if (name.rfind("model.", 0) == 0) return w.find(name.substr(6));
  return nullptr;
}

// The checkpoint's tensor for parameter p, checked against it: present, same shape, a float dtype,
// as many bytes as that implies.
const StTensor& hf_tensor(const HfWeights& w, const Param& p, const std::string& dir) {
  const StTensor* t = find_hf(w, p.name);
  if (!t) fail("{}: tensor '{}' missing from the checkpoint", dir, p.name);
  if (t->shape != p.shape)
    fail("{}: tensor '{}' has shape {}, expected {} from config.json", dir, p.name, shape_str(t->shape),
         shape_str(p.shape));
  if (t->dtype != DType::F32 && t->dtype != DType::F16 && t->dtype != DType::BF16)
    fail("{}: tensor '{}' has dtype {}; expected F32, F16 or BF16", dir, p.name, dtype_name(t->dtype));
  ZO_CHECK(t->nbytes == p.numel * dtype_size(t->dtype), "{}: tensor '{}' holds {} bytes, expected {}", dir, p.name,
           t->nbytes, p.numel * dtype_size(t->dtype));
  return *t;
}

Model load_hf(const std::string& dir, const LoadOptions& opts) {
  std::string cfg_path = (fs::path(dir) / "config.json").string();
  ModelConfig cfg = config_from_hf_json(read_text(cfg_path), cfg_path);
  HfWeights w = HfWeights::open(dir);
  // Every tensor is checked before memory or disk space is committed: a config that does not match
  // its weights fails at once, and leaves no masters file behind.
  for (const Param& p : Model::layout(cfg, opts.storage).params) hf_tensor(w, p, dir);
  Model m = Model::allocate(cfg, opts.storage, opts.backing_file);
  m.source = dir;
  constexpr size_t kSlab = size_t(1) << 20;  // convert a tensor 1M elements at a time: no full f32 copy
  std::vector<float> slab;
  for (const Param& p : m.params) {
    const StTensor* t = &hf_tensor(w, p, dir);
    const size_t es = dtype_size(t->dtype);
    if (m.storage == DType::BF16 && t->dtype == DType::BF16) {
      std::memcpy(static_cast<uint16_t*>(m.arena()) + p.offset, t->data, t->nbytes);
    } else {
      for (size_t i = 0; i < p.numel; i += kSlab) {
        size_t n = std::min(kSlab, p.numel - i);
        slab.resize(n);
        convert_to_f32(t->dtype, t->data + i * es, slab.data(), n);
        m.write_f32(p.offset + i, slab.data(), n);
      }
    }
    w.release(*t);  // the mapped source pages leave RSS once copied
    m.loaded(p);    // disk tier: a finished block leaves RAM
  }
  return m;
}

}  // namespace

int gguf_int(const GgufFile& g, const char* key, int if_absent) {
  if (!g.has(key)) return if_absent;
  const int64_t v = g.get_int(key);
  ZO_CHECK(v >= INT32_MIN && v <= INT32_MAX, "{}: {} = {} is out of range", g.name(), key, v);
  return int(v);
}

ModelConfig config_from_gguf(const GgufFile& g) {
  const std::string& src = g.name();
  std::string arch = g.get_string("general.architecture");
  ZO_CHECK(arch == "llama", "{}: GGUF architecture '{}' is not supported (supported: llama)", src, arch);
  // (A key that must be present is read by get_int itself when absent: its error names the key.)
  auto need = [&](const char* key) { return g.has(key) ? gguf_int(g, key, 0) : int(g.get_int(key)); };
  ModelConfig c;
  c.arch = Arch::Llama;
  c.model_type = "llama";
  c.hidden = need("llama.embedding_length");
  c.n_layers = need("llama.block_count");
  c.n_heads = need("llama.attention.head_count");
  c.n_kv_heads = gguf_int(g, "llama.attention.head_count_kv", c.n_heads);
  c.ffn_dim = need("llama.feed_forward_length");
  c.max_pos = need("llama.context_length");
  c.norm_eps = float(g.get_float("llama.attention.layer_norm_rms_epsilon"));
  c.rope_theta = g.has("llama.rope.freq_base") ? float(g.get_float("llama.rope.freq_base")) : 10000.0f;
  ZO_CHECK(c.n_heads > 0, "{}: llama.attention.head_count must be positive", src);
  c.head_dim = gguf_int(g, "llama.rope.dimension_count", c.hidden / c.n_heads);
  if (g.has("llama.vocab_size"))
    c.vocab_size = gguf_int(g, "llama.vocab_size", 0);
  else
    c.vocab_size = int(std::min<size_t>(g.get_string_array("tokenizer.ggml.tokens").size(), INT32_MAX));
  c.embed_dim = c.hidden;
  c.tie_embeddings = g.find("output.weight") == nullptr;
  c.bos_id = gguf_int(g, "tokenizer.ggml.bos_token_id", -1);
  c.eos_id = gguf_int(g, "tokenizer.ggml.eos_token_id", -1);
  c.pad_id = gguf_int(g, "tokenizer.ggml.padding_token_id", -1);
  ZO_CHECK(!g.has("llama.rope.scaling.type") || g.get_string("llama.rope.scaling.type") == "none",
           "{}: rope scaling is not supported yet", src);
  validate_config(c, src);
  return c;
}

namespace {

// HF name -> GGUF name for the LLaMA tensors.
std::string gguf_name(const Param& p) {
  if (p.block < 0) {
    switch (p.role) {
      case kEmbed: return "token_embd.weight";
      case kFinalNormW: return "output_norm.weight";
      case kLmHead: return "output.weight";
    }
    return "?";
  }
  std::string b = "blk." + std::to_string(p.block) + ".";
  switch (p.role) {
    case kLn1W: return b + "attn_norm.weight";
    case kQW: return b + "attn_q.weight";
    case kKW: return b + "attn_k.weight";
    case kVW: return b + "attn_v.weight";
    case kQB: return b + "attn_q.bias";
    case kKB: return b + "attn_k.bias";
    case kVB: return b + "attn_v.bias";
    case kOW: return b + "attn_output.weight";
    case kOB: return b + "attn_output.bias";
    case kLn2W: return b + "ffn_norm.weight";
    case kInW: return b + "ffn_gate.weight";
    case kIn2W: return b + "ffn_up.weight";
    case kOutW: return b + "ffn_down.weight";
  }
  return "?";
}

// llama.cpp's converter interleaves the two RoPE halves of each head's q/k rows
// (row i*2+j of a head holds HF row j*D/2+i). Undo it so the HF half-split RoPE applies.
void unpermute_qk(const float* src, float* dst, int n_heads, int head_dim, int cols) {
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; h++)
    for (int i = 0; i < half; i++)
      for (int j = 0; j < 2; j++) {
        const float* s = src + (size_t(h) * head_dim + size_t(i) * 2 + j) * cols;
        float* d = dst + (size_t(h) * head_dim + size_t(j) * half + i) * cols;
        std::memcpy(d, s, sizeof(float) * size_t(cols));
      }
}

// The GGUF tensor for parameter p, checked against it: present, the same dims, a type we dequantize.
const GgufTensor& gguf_tensor(const GgufFile& g, const Param& p, const std::string& path) {
  const std::string gname = gguf_name(p);
  const GgufTensor* t = g.find(gname);
  if (!t) fail("{}: tensor '{}' (for {}) missing", path, gname, p.name);
  // GGUF lists dims fastest first: HF [out, in] is ne = [in, out].
  const std::vector<int64_t> want(p.shape.rbegin(), p.shape.rend());
  if (t->ne != want) fail("{}: tensor '{}' has dims {}, expected {}", path, gname, shape_str(t->ne), shape_str(want));
  if (!ggml_can_dequantize(t->type))
    fail("{}: tensor '{}' has type {}, which zo cannot dequantize", path, gname, ggml_type_name(t->type));
  return *t;
}

}  // namespace

Model load_gguf(const GgufFile& g, const LoadOptions& opts) {
  const std::string& path = g.name();
  ModelConfig cfg = config_from_gguf(g);
  for (const Param& p : Model::layout(cfg, opts.storage).params) gguf_tensor(g, p, path);  // (as load_hf)
  Model m = Model::allocate(cfg, opts.storage, opts.backing_file);
  m.source = path;
  std::vector<float> buf, perm;
  for (const Param& p : m.params) {
    const GgufTensor* t = &gguf_tensor(g, p, path);
    const std::string gname = t->name;
    if (p.role == kQW || p.role == kKW) {
      // q/k rows are permuted within each head: dequantize the whole (small) matrix first.
      buf.resize(p.numel);
      g.dequantize(*t, buf.data());
      perm.resize(p.numel);
      unpermute_qk(buf.data(), perm.data(), p.role == kQW ? cfg.n_heads : cfg.n_kv_heads, cfg.head_dim, cfg.hidden);
      m.write_f32(p.offset, perm.data(), p.numel);
    } else {
      // Slabs of whole rows (quantization blocks never straddle rows): no tensor-sized temporary.
      const int64_t row = t->ne[0];
      const size_t row_bytes = size_t(row / ggml_block_size(t->type)) * ggml_type_size(t->type);
      const int64_t rows = int64_t(p.numel) / row;
      const int64_t slab_rows = std::max<int64_t>(1, (int64_t(1) << 20) / row);
      ZO_CHECK(row_bytes * size_t(rows) == t->nbytes, "{}: tensor '{}' holds {} bytes, expected {}", path, gname,
               t->nbytes, row_bytes * size_t(rows));
      for (int64_t r0 = 0; r0 < rows; r0 += slab_rows) {
        const int64_t nr = std::min(slab_rows, rows - r0);
        const size_t n = size_t(nr * row), off = p.offset + size_t(r0 * row);
        if (m.storage == DType::F32) {
          gguf_dequantize(t->type, t->data + size_t(r0) * row_bytes, static_cast<float*>(m.arena()) + off, int64_t(n));
        } else {
          buf.resize(n);
          gguf_dequantize(t->type, t->data + size_t(r0) * row_bytes, buf.data(), int64_t(n));
          m.write_f32(off, buf.data(), n);
        }
      }
    }
    g.release(*t);  // the mapped GGUF pages leave RSS once converted
    m.loaded(p);    // disk tier: a finished block leaves RAM
  }
  return m;
}

bool is_gguf_path(const std::string& path) {
  return path.size() >= 5 && path.compare(path.size() - 5, 5, ".gguf") == 0 && !fs::is_directory(path);
}

Model load_model(const std::string& path, const LoadOptions& opts) {
  // A masters file this load creates goes again if the load fails part way (a read error, a tensor
  // the pre-check could not see): the disk tier's file is as large as the model.
  const bool creates = !opts.backing_file.empty() && !fs::exists(opts.backing_file);
  try {
    if (is_gguf_path(path)) return load_gguf(GgufFile::open(path), opts);
    if (!fs::is_directory(path)) fail("{}: not a model folder (with config.json) or a .gguf file", path);
    return load_hf(path, opts);
  } catch (...) {
    std::error_code ec;
    if (creates) fs::remove(opts.backing_file, ec);
    throw;
  }
}

void save_hf(const Model& m, const std::string& dir, DType dtype) {
  ZO_CHECK(dtype == DType::F32 || dtype == DType::BF16, "save: dtype must be F32 or BF16");
  std::error_code ec;
  fs::create_directories(dir, ec);
  ZO_CHECK(!ec, "{}: cannot create folder: {}", dir, ec.message());
  // Materialise each tensor in the output dtype (masters may be bf16; export may be f32).
  std::vector<std::vector<uint8_t>> bufs;
  std::vector<StTensorOut> out;
  std::vector<float> tmp;
  bufs.reserve(m.params.size());
  for (const Param& p : m.params) {
    tmp.resize(p.numel);
    m.get_param(p, tmp.data());
    m.loaded(p);  // disk tier: a block read out leaves RAM again
    std::vector<uint8_t> b(p.numel * dtype_size(dtype));
    if (dtype == DType::F32) {
      std::memcpy(b.data(), tmp.data(), b.size());
    } else {
      auto* d = reinterpret_cast<uint16_t*>(b.data());
      for (size_t i = 0; i < p.numel; i++) d[i] = f32_to_bf16(tmp[i]);
    }
    bufs.push_back(std::move(b));
    out.push_back({p.name, dtype, p.shape, bufs.back().data()});
  }
  write_safetensors((fs::path(dir) / "model.safetensors").string(), out, {{"format", "pt"}});
  // config.json: written to a temporary name and renamed, so a crash leaves the old one intact.
  ModelConfig c = m.cfg;
  std::string text = config_to_hf_json(c);
  if (dtype == DType::BF16) {
    auto pos = text.find("\"float32\"");
    if (pos != std::string::npos) text.replace(pos, 9, "\"bfloat16\"");
  }
  std::string cfg = (fs::path(dir) / "config.json").string();
  std::string tmpname = cfg + ".tmp";
  {
    std::ofstream f(tmpname, std::ios::binary | std::ios::trunc);
    ZO_CHECK(bool(f), "{}: cannot write", tmpname);
    f << text;
    f.flush();
    ZO_CHECK(bool(f), "{}: write failed", tmpname);
  }
  fs::rename(tmpname, cfg, ec);
  ZO_CHECK(!ec, "{}: cannot rename into place: {}", cfg, ec.message());
}

}  // namespace zo
