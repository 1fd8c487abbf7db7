#include "models/model.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <utility>
#include <cstdlib>
#include <cstring>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "core/error.h"

namespace zo {

void Model::FreeDeleter::operator()(void* p) const { std::free(p); }

namespace {

size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

struct Layout {
  Model& m;
  size_t cursor = 0;
  int add(std::string name, std::vector<int64_t> shape, int block, int role, bool decay) {
    Param p;
    p.name = std::move(name);
    p.shape = std::move(shape);
    p.numel = 1;
    for (int64_t d : p.shape) p.numel *= size_t(d);
    p.offset = cursor;
    p.block = block;
    p.role = role;
    p.decay = decay;
    cursor += p.numel;
    m.params.push_back(std::move(p));
    return int(m.params.size()) - 1;
  }
};

}  // namespace

Model Model::layout(const ModelConfig& c, DType storage) {
  ZO_CHECK(storage == DType::F32 || storage == DType::BF16, "master weights must be F32 or BF16, not {}",
           dtype_name(storage));
  Model m;
  m.cfg = c;
  m.storage = storage;
  m.global_.fill(-1);
  Layout L{m};
  const int64_t V = c.vocab_size, C = c.hidden, Ce = c.embed_dim, F = c.ffn_dim;
  const int64_t Q = c.q_dim(), KV = c.kv_dim();
  const bool opt = c.arch == Arch::OPT;
  const std::string pre = opt ? "model.decoder." : "model.";

  m.global_[kEmbed] = L.add(pre + "embed_tokens.weight", {V, Ce}, -1, kEmbed, true);
  if (opt) {
    // HF's OPTLearnedPositionalEmbedding has max_position_embeddings + 2 rows (offset of 2).
    m.global_[kPosEmbed] = L.add(pre + "embed_positions.weight", {c.max_pos + 2, C}, -1, kPosEmbed, true);
    if (c.has_projection()) m.global_[kProjIn] = L.add(pre + "project_in.weight", {C, Ce}, -1, kProjIn, true);
  }
  m.block_range_.resize(size_t(c.n_layers));
  m.block_idx_.resize(size_t(c.n_layers));
  for (int l = 0; l < c.n_layers; l++) {
    L.cursor = round_up(L.cursor, 16);  // 64-byte aligned block start (f32)
    size_t begin = L.cursor;
    auto& idx = m.block_idx_[size_t(l)];
    idx.fill(-1);
    std::string b = pre + "layers." + std::to_string(l) + ".";
    auto add = [&](const std::string& n, std::vector<int64_t> shape, int role, bool decay) {
      idx[role] = L.add(b + n, std::move(shape), l, role, decay);
    };
    if (opt) {
      add("self_attn_layer_norm.weight", {C}, kLn1W, false);
      add("self_attn_layer_norm.bias", {C}, kLn1B, false);
    } else {
      add("input_layernorm.weight", {C}, kLn1W, false);
    }
    add("self_attn.q_proj.weight", {Q, C}, kQW, true);
    add("self_attn.k_proj.weight", {KV, C}, kKW, true);
    add("self_attn.v_proj.weight", {KV, C}, kVW, true);
    if (c.qkv_bias) {
      add("self_attn.q_proj.bias", {Q}, kQB, false);
      add("self_attn.k_proj.bias", {KV}, kKB, false);
      add("self_attn.v_proj.bias", {KV}, kVB, false);
    }
    add(opt ? "self_attn.out_proj.weight" : "self_attn.o_proj.weight", {C, Q}, kOW, true);
    if (c.o_bias) add(opt ? "self_attn.out_proj.bias" : "self_attn.o_proj.bias", {C}, kOB, false);
    if (opt) {
      add("final_layer_norm.weight", {C}, kLn2W, false);
      add("final_layer_norm.bias", {C}, kLn2B, false);
      add("fc1.weight", {F, C}, kInW, true);
      if (c.mlp_bias) add("fc1.bias", {F}, kInB, false);
      add("fc2.weight", {C, F}, kOutW, true);
      if (c.mlp_bias) add("fc2.bias", {C}, kOutB, false);
    } else {
      add("post_attention_layernorm.weight", {C}, kLn2W, false);
      add("mlp.gate_proj.weight", {F, C}, kInW, true);
      add("mlp.up_proj.weight", {F, C}, kIn2W, true);
      if (c.mlp_bias) {
        add("mlp.gate_proj.bias", {F}, kInB, false);
        add("mlp.up_proj.bias", {F}, kIn2B, false);
      }
      add("mlp.down_proj.weight", {C, F}, kOutW, true);
      if (c.mlp_bias) add("mlp.down_proj.bias", {C}, kOutB, false);
    }
    m.block_range_[size_t(l)] = {begin, L.cursor};
  }
  L.cursor = round_up(L.cursor, 16);
  if (c.final_norm) {
    m.global_[kFinalNormW] = L.add(opt ? pre + "final_layer_norm.weight" : pre + "norm.weight", {C}, -1, kFinalNormW, false);
    if (c.ln_bias) m.global_[kFinalNormB] = L.add(pre + "final_layer_norm.bias", {C}, -1, kFinalNormB, false);
  }
  if (c.has_projection()) m.global_[kProjOut] = L.add(pre + "project_out.weight", {Ce, C}, -1, kProjOut, true);
  if (!c.tie_embeddings) m.global_[kLmHead] = L.add("lm_head.weight", {V, Ce}, -1, kLmHead, true);

  m.arena_numel_ = round_up(L.cursor, 16);
  return m;
}

Model Model::allocate(const ModelConfig& c, DType storage, const std::string& backing_file) {
  Model m = layout(c, storage);
  size_t bytes = round_up(m.arena_numel_ * dtype_size(storage), 4096);
  if (!backing_file.empty()) {
    int fd = ::open(backing_file.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ZO_CHECK(fd >= 0, "{}: cannot create the master weights file: {}", backing_file, std::strerror(errno));
    if (::ftruncate(fd, off_t(bytes)) != 0 || ::posix_fallocate(fd, 0, off_t(bytes)) != 0) {
      int e = errno;
      ::close(fd);
      fail("{}: cannot reserve {} MiB on disk: {}", backing_file, bytes >> 20, std::strerror(e));
    }
    void* mp = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (mp == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      fail("{}: cannot map {} MiB: {}", backing_file, bytes >> 20, std::strerror(e));
    }
    m.map_ = mp;
    m.map_bytes_ = bytes;
    m.backing_fd_ = fd;
    m.backing_path_ = backing_file;
    return m;
  }
  // Pages stay untouched (not resident) until the loader writes them.
  void* p = std::aligned_alloc(4096, bytes);
  ZO_CHECK(p != nullptr, "cannot allocate {} MiB for the master weights", bytes >> 20);
  m.arena_.reset(p);
  return m;
}

// One helper thread per disk-tier model: it populates the page tables of the block asked for
// (reading it from the file if needed) so the compute thread finds it mapped. release_block waits
// for a population of the same block in flight, so no page comes back after it was dropped.
struct Model::Prefetcher {
  std::mutex mu;
  std::condition_variable cv;
  std::pair<size_t, size_t> pending{0, 0}, inflight{0, 0};  // byte ranges; {0, 0} = none
  bool stop = false;
  char* base = nullptr;
  std::thread th;
  explicit Prefetcher(char* b) : base(b), th([this] { loop(); }) {}
  ~Prefetcher() {
    {
      std::lock_guard<std::mutex> g(mu);
      stop = true;
    }
    cv.notify_all();
    th.join();
  }
  void loop() {
    std::unique_lock<std::mutex> g(mu);
    for (;;) {
      cv.wait(g, [&] { return stop || pending.second > pending.first; });
      if (stop) return;
      inflight = std::exchange(pending, std::pair<size_t, size_t>{0, 0});
      g.unlock();
      if (::madvise(base + inflight.first, inflight.second - inflight.first, 23 /* MADV_POPULATE_WRITE */) != 0)
        ::madvise(base + inflight.first, inflight.second - inflight.first, MADV_WILLNEED);  // kernels < 5.14
      g.lock();
      inflight = {0, 0};
      cv.notify_all();
    }
  }
  void request(std::pair<size_t, size_t> r) {
    {
      std::lock_guard<std::mutex> g(mu);
      pending = r;
    }
    cv.notify_all();
  }
  // No population of bytes [b, e) pending or running once this returns.
  void settle(std::pair<size_t, size_t> r) {
    std::unique_lock<std::mutex> g(mu);
    auto overlaps = [&](std::pair<size_t, size_t> x) { return x.first < r.second && r.first < x.second; };
    if (overlaps(pending)) pending = {0, 0};
    cv.wait(g, [&] { return !overlaps(inflight); });
  }
};

Model::~Model() {
  pf_.reset();
  if (map_) ::munmap(map_, map_bytes_);
  if (backing_fd_ >= 0) ::close(backing_fd_);
}

Model::Model() = default;
Model::Model(Model&& o) noexcept { *this = std::move(o); }

Model& Model::operator=(Model&& o) noexcept {
  if (this == &o) return *this;
  pf_.reset();
  if (map_) ::munmap(map_, map_bytes_);
  if (backing_fd_ >= 0) ::close(backing_fd_);
  cfg = std::move(o.cfg);
  storage = o.storage;
  params = std::move(o.params);
  source = std::move(o.source);
  arena_ = std::move(o.arena_);
  arena_numel_ = o.arena_numel_;
  block_range_ = std::move(o.block_range_);
  block_idx_ = std::move(o.block_idx_);
  global_ = o.global_;
  map_ = std::exchange(o.map_, nullptr);
  map_bytes_ = std::exchange(o.map_bytes_, 0);
  backing_fd_ = std::exchange(o.backing_fd_, -1);
  backing_path_ = std::move(o.backing_path_);
  pf_ = std::move(o.pf_);
  track_ = o.track_;
  peak_resident_ = o.peak_resident_;
  return *this;
}

namespace {
// The page-aligned byte range [b, e) covering elements [begin, end) of an arena at `base`.
std::pair<size_t, size_t> page_range(size_t begin, size_t end, size_t es, size_t limit) {
  const size_t pg = size_t(::sysconf(_SC_PAGESIZE));
  size_t b = begin * es / pg * pg, e = std::min(limit, (end * es + pg - 1) / pg * pg);
  return {b, e};
}
}  // namespace

void Model::prefetch_block(int l) const {
  if (!map_ || l < 0 || l >= cfg.n_layers) return;
  if (!pf_) const_cast<Model*>(this)->pf_ = std::make_unique<Prefetcher>(static_cast<char*>(map_));
  pf_->request(page_range(block_begin(l), block_end(l), dtype_size(storage), map_bytes_));
}

void Model::release_block(int l, bool dirty) const {
  if (!map_ || l < 0 || l >= cfg.n_layers) return;
  auto [b, e] = page_range(block_begin(l), block_end(l), dtype_size(storage), map_bytes_);
  if (pf_) pf_->settle({b, e});
  if (track_) peak_resident_ = std::max(peak_resident_, resident_bytes());
  // Start write-back so the page cache can reclaim the pages once clean; then unmap them here.
  if (dirty) ::sync_file_range(backing_fd_, off_t(b), off_t(e - b), SYNC_FILE_RANGE_WRITE);
  ::madvise(static_cast<char*>(map_) + b, e - b, MADV_DONTNEED);
}

void Model::loaded(const Param& p) const {
  if (!map_ || p.block < 0) return;
  if (p.offset + p.numel == block_end(p.block)) release_block(p.block, true);
}

size_t Model::resident_bytes() const {
  if (!map_) return 0;
  const size_t pg = size_t(::sysconf(_SC_PAGESIZE));
  const size_t first = reinterpret_cast<uintptr_t>(map_) / pg, pages = (map_bytes_ + pg - 1) / pg;
  // Read in pieces of 64 Ki entries into a buffer kept per thread: this runs at every block release.
  static thread_local std::vector<uint64_t> entries;
  entries.resize(std::min<size_t>(pages, size_t(1) << 16));
  const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return resident_bytes_smaps();
  size_t present = 0, done = 0;
  while (done < pages) {
    const size_t k = std::min(entries.size(), pages - done);
    const ssize_t got = ::pread(fd, entries.data(), k * sizeof(uint64_t), off_t((first + done) * sizeof(uint64_t)));
    if (got != ssize_t(k * sizeof(uint64_t))) break;
    for (size_t i = 0; i < k; i++) present += size_t(entries[i] >> 63);  // bit 63: page present
    done += k;
  }
  ::close(fd);
  return done == pages ? present * pg : resident_bytes_smaps();
}

size_t Model::resident_bytes_smaps() const {
  if (!map_) return 0;
  std::ifstream f("/proc/self/smaps");
  std::string line;
  const uintptr_t want = reinterpret_cast<uintptr_t>(map_);
  bool in = false;
  size_t total = 0;
  while (std::getline(f, line)) {
    if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) && line.find('-') != std::string::npos) {
      uintptr_t lo = std::stoull(line.substr(0, line.find('-')), nullptr, 16);
      in = lo >= want && lo < want + map_bytes_;
    } else if (in && line.rfind("Rss:", 0) == 0) {
      total += size_t(std::stoull(line.substr(4))) * 1024;
    }
  }
  return total;
}

size_t Model::max_block_numel() const {
  size_t mx = 0;
  for (auto& [b, e] : block_range_) mx = std::max(mx, e - b);
  return mx;
}

const Param* Model::find(const std::string& name) const {
  for (auto& p : params)
    if (p.name == name) return &p;
  return nullptr;
}

BlockView Model::block_view_at(int l, const float* base) const {
  BlockView v;
  const auto& idx = block_idx_[size_t(l)];
  size_t b = block_begin(l);
  for (int r = 0; r < kNumBlockRoles; r++)
    if (idx[r] >= 0) v.w[r] = base + (params[size_t(idx[r])].offset - b);
  return v;
}

BlockView Model::block_view(int l, float* scratch) const {
  size_t b = block_begin(l), e = block_end(l);
  if (storage == DType::F32) return block_view_at(l, static_cast<const float*>(arena()) + b);
  convert_to_f32(storage, static_cast<const uint16_t*>(arena()) + b, scratch, e - b);
  return block_view_at(l, scratch);
}

void Model::write_f32(size_t offset, const float* src, size_t n) {
  if (storage == DType::F32) {
    std::memcpy(static_cast<float*>(arena()) + offset, src, n * sizeof(float));
  } else {
    uint16_t* dst = static_cast<uint16_t*>(arena()) + offset;
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_bf16(src[i]);
  }
}

void Model::get_param(const Param& p, float* dst) const {
  if (storage == DType::F32)
    std::memcpy(dst, static_cast<const float*>(arena()) + p.offset, p.numel * sizeof(float));
  else
    convert_to_f32(storage, static_cast<const uint16_t*>(arena()) + p.offset, dst, p.numel);
}

const float* Model::f32_ptr(const Param& p) const {
  return storage == DType::F32 ? static_cast<const float*>(arena()) + p.offset : nullptr;
}

}  // namespace zo
