// A loaded model: its config and its master weights in one arena, laid out block by block.
//
// Layout: every parameter keeps its Hugging Face name (its identity: perturbations, logs and
// exports refer to parameters by name, never by load order). Within a block the parameters sit
// back to back in a fixed order chosen so that q,k,v weights (and gate,up) are adjacent: one GEMM
// computes all three projections. A block is one contiguous range of the arena, so forming a
// working copy of a block (bf16 -> f32, or W + eps*z later) is one pass over one range.
#pragma once
#include <cstddef>
#include <cstdint>
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "models/config.h"

namespace zo {

// Roles of a block's parameters, in arena order. Absent ones (biases, OPT-only LN bias) are skipped.
enum BlockRole : int {
  kLn1W, kLn1B, kQW, kKW, kVW, kQB, kKB, kVB, kOW, kOB, kLn2W, kLn2B,
  kInW,   // OPT fc1 | LLaMA gate_proj
  kIn2W,  // LLaMA up_proj (adjacent to gate: one GEMM gives [gate | up])
  kInB, kIn2B, kOutW, kOutB, kNumBlockRoles
};
enum GlobalRole : int { kEmbed, kPosEmbed, kProjIn, kProjOut, kFinalNormW, kFinalNormB, kLmHead, kNumGlobalRoles };

struct Param {
  std::string name;            // HF name, e.g. "model.layers.3.self_attn.q_proj.weight"
  std::vector<int64_t> shape;  // HF shape ([out, in] for Linear weights)
  size_t offset = 0;           // element offset in the arena
  size_t numel = 0;
  int block = -1;              // -1: global (embeddings, final norm, head)
  int role = -1;               // BlockRole or GlobalRole
  bool decay = true;           // weight decay applies (false for biases and norms)
};

// f32 pointers to one block's weights; nullptr where the model has no such parameter.
struct BlockView {
  const float* w[kNumBlockRoles] = {};
  const float* operator[](int r) const { return w[r]; }
};

class Model {
 public:
  ModelConfig cfg;
  DType storage = DType::F32;  // master weights: F32 or BF16
  std::vector<Param> params;
  std::string source;          // where it was loaded from

  // Lays out the parameters of cfg (names, shapes, offsets) and allocates an arena (untouched).
  // With a backing file, the arena is a shared mapping of that file (created or truncated to
  // bytes()): the disk tier. The file holds the masters; this process keeps pages of a block only
  // while it uses them (release_block), so RAM holds the globals plus the blocks in flight.
  static Model allocate(const ModelConfig& cfg, DType storage, const std::string& backing_file = "");
  // The same layout with no arena (arena() is null): what a loader checks a file's tensors against
  // before it commits memory or disk space to them.
  static Model layout(const ModelConfig& cfg, DType storage);
  ~Model();
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  Model();

  size_t numel() const { return arena_numel_; }
  size_t bytes() const { return arena_numel_ * dtype_size(storage); }
  void* arena() { return base(); }
  const void* arena() const { return base(); }
  // Element range [begin, end) of block l in the arena.
  size_t block_begin(int l) const { return block_range_[size_t(l)].first; }
  size_t block_end(int l) const { return block_range_[size_t(l)].second; }
  size_t max_block_numel() const;
  const Param* find(const std::string& name) const;
  const Param* global(GlobalRole r) const { return global_[r] < 0 ? nullptr : &params[size_t(global_[r])]; }
  const Param* block_param(int l, BlockRole r) const {
    int i = block_idx_[size_t(l)][r];
    return i < 0 ? nullptr : &params[size_t(i)];
  }

  // Pointers to block l's weights as f32. For f32 storage they point into the arena (zero copy);
  // for bf16 the block is widened into `scratch` (max_block_numel() floats) first.
  BlockView block_view(int l, float* scratch) const;
  // Same, for a block that already sits in f32 in `base` (a working copy with the arena's layout).
  BlockView block_view_at(int l, const float* base) const;

  // Disk tier (no-ops for an arena in RAM). prefetch_block has a helper thread map block l in
  // (read and page-table population, madvise POPULATE_WRITE) while the caller computes;
  // release_block drops this process's pages of block l (for a dirty block, write-back to the file
  // starts first; the data is never lost: the mapping is shared). loaded(p) is the loaders' call
  // after writing parameter p: it releases p's block once its last parameter is written.
  bool file_backed() const { return backing_fd_ >= 0; }
  const std::string& backing_file() const { return backing_path_; }
  int backing_fd() const { return backing_fd_; }
  void prefetch_block(int l) const;
  void release_block(int l, bool dirty) const;
  void loaded(const Param& p) const;
  // Bytes of the arena resident in this process now, as the kernel reports them: the present bit of
  // each page's /proc/self/pagemap entry (only this range's page tables are read), or, where pagemap
  // cannot be read, the mapping's Rss in /proc/self/smaps (which walks and prints every mapping of
  // the process: tens of milliseconds per call here). The pagemap read still costs about 1.25 ms per
  // GiB of mapping (the kernel walks its page tables), e.g. ~65 ms per release for OPT-13B's 52 GB of
  // f32 masters, against ~0.65 s to read that block from a 2 GB/s disk. peak_resident_bytes(): the largest value seen
  // at a release_block() call since track_resident(true) (the fast tier's measured peak).
  size_t resident_bytes() const;
  size_t resident_bytes_smaps() const;
  void track_resident(bool on) const { track_ = on; peak_resident_ = 0; }
  size_t peak_resident_bytes() const { return peak_resident_; }

  // Write n f32 values at element offset `offset` of the arena, converting to the storage dtype.
  void write_f32(size_t offset, const float* src, size_t n);
  // Write/read parameter p from/to f32 (converting to the storage dtype).
  void set_param(const Param& p, const float* src) { write_f32(p.offset, src, p.numel); }
  void get_param(const Param& p, float* dst) const;
  // f32 pointer to a parameter when storage is F32 (nullptr for BF16).
  const float* f32_ptr(const Param& p) const;

 private:
  struct FreeDeleter {
    void operator()(void* p) const;
  };
  std::unique_ptr<void, FreeDeleter> arena_;  // RAM arena (null when file-backed)
  void* map_ = nullptr;                        // file-backed arena
  size_t map_bytes_ = 0;
  int backing_fd_ = -1;
  std::string backing_path_;
  struct Prefetcher;  // the disk tier's page-populating thread (model.cpp)
  std::unique_ptr<Prefetcher> pf_;
  mutable bool track_ = false;
  mutable size_t peak_resident_ = 0;
  void* base() const { return map_ ? map_ : arena_.get(); }
  size_t arena_numel_ = 0;
  std::vector<std::pair<size_t, size_t>> block_range_;
  std::vector<std::array<int, kNumBlockRoles>> block_idx_;
  std::array<int, kNumGlobalRoles> global_{};
};

}  // namespace zo
