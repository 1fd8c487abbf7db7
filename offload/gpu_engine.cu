#include "offload/gpu_engine.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>

#include "core/cuda/check.h"
#include "core/cuda/perturb.h"
#include "core/cuda/wire.h"
#include "core/philox.h"
#include "offload/residency.h"

namespace zo {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
uint64_t tid_of(const Param& p) { return rng::fnv1a64(p.name.data(), p.name.size()); }

// A host range registered with CUDA (page-locked in place), unregistered on destruction, also when
// the engine's constructor throws after registering.
struct HostRegistration {
  void* p = nullptr;
  bool try_register(void* ptr, size_t bytes) {
    if (cudaHostRegister(ptr, bytes, cudaHostRegisterDefault) != cudaSuccess) {
      cudaGetLastError();  // clear it: the caller falls back to a pinned copy
      return false;
    }
    p = ptr;
    return true;
  }
  ~HostRegistration() {
    if (p) cudaHostUnregister(p);
  }
};

// Pinned host memory (the wire shadow of streamed blocks).
struct PinnedBuf {
  void* p = nullptr;
  size_t bytes = 0;
  void alloc(size_t b) {
    ZO_CUDA_CHECK(cudaHostAlloc(&p, std::max<size_t>(b, 1), cudaHostAllocDefault));
    bytes = b;
  }
  ~PinnedBuf() {
    if (p) cudaFreeHost(p);
  }
};

template <typename T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  DevBuf() = default;
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  DevBuf(DevBuf&& o) noexcept : p(std::exchange(o.p, nullptr)), n(std::exchange(o.n, 0)) {}
  void reserve(size_t want) {
    if (want <= n) return;
    if (p) cudaFree(p);
    ZO_CUDA_CHECK(cudaMalloc(&p, sizeof(T) * want));
    n = want;
  }
  ~DevBuf() {
    if (p) cudaFree(p);
  }
};
}  // namespace

struct GpuEngine::Impl {
  const Model& m;
  cuda::GemmMode mode;
  cudaStream_t st = nullptr;
  void* blas = nullptr;
  DevBuf<float> w;                 // resident weights, packed: globals, then resident blocks (arena order)
  std::vector<float*> pdev;        // device pointer of each parameter (nullptr: streamed)
  std::vector<float*> bdev;        // device base of each resident block (nullptr: streamed)
  // Streaming (ZO2): masters of streamed blocks stay in pinned host memory (the model's arena,
  // registered); each step uploads each streamed block once into one of two ring slots on its own
  // stream, ordered by events; their updates are applied on the host, by z regenerated there.
  Model* host = nullptr;           // non-null when some block is streamed
  HostRegistration registered;     // f32 wire: the masters themselves, page-locked
  bool use_shadow = false;         // uploads read the pinned shadow (wire != f32, or no registration)
  cudaStream_t up = nullptr;
  WireDType wire = WireDType::F32;
  DevBuf<uint8_t> ring[2];         // a streamed block in the wire dtype
  DevBuf<float> ring_scales[2];    // its fp8 scales
  DevBuf<float> dec;               // the block decoded to f32 (wire != f32), or a two-way block rounded
  DevBuf<int> round_overflow;      // f16 wire with two-way blocks: a master beyond f16's range
  PinnedBuf shadow, shadow_scales; // host: streamed blocks encoded in the wire dtype (wire != f32)
  std::vector<size_t> shadow_off;  // per block: byte offset of its wire data in shadow
  std::vector<size_t> scale_off;   // per parameter: float offset of its scales in shadow_scales
  std::vector<size_t> block_scale_off, block_scale_n;  // per block: its scales (contiguous)
  cudaEvent_t uploaded[2] = {}, released[2] = {};
  std::vector<cudaEvent_t> up_t0, up_t1;  // timing of each streamed block's upload in a pass
  std::vector<cudaEvent_t> comp_t0, comp_t1;  // each block's compute in a pass (decode included)
  std::vector<cudaEvent_t> gemm_ev;  // a pair around each GEMM of a pass (made in the first pass, reused)
  size_t gemm_used = 0;
  int n_streamed = 0;
  size_t fixed_bytes = 0;
  GpuEngine::Stats st_;
  size_t free_at_start = 0;
  std::atomic<bool> encode_overflow{false};
  double host_update_s = 0;        // written by the updater, read after join
  size_t host_updated_n = 0;       // weights the updater updated, summed over its updates (likewise)
  std::vector<float> host_mom;     // momentum of streamed parameters only (host)
  std::vector<size_t> host_mom_off;  // per parameter: its offset in host_mom
  std::thread updater;             // host updates of streamed blocks, overlapped with the next step
  std::mutex umu;
  std::condition_variable ucv;
  int updated_upto = 1 << 30;      // blocks < this have their pending host update applied
  std::vector<int> streamed_ids;   // the streamed blocks, in pass order
  std::vector<int> slot_of;        // per streamed block: its ring slot
  std::vector<long> issued_at;     // per block: the pass whose upload of it was issued
  long pass_no = 0;
  // Two-way blocks (GpuOptions::device_updates): the step's update is kept pending and applied on
  // the device when the block is next uploaded; the updated masters go back on their own stream.
  std::vector<uint8_t> two_way;    // per block
  int n_two_way = 0;               // how many (the first n_two_way streamed blocks)
  // device_updates < 0 (auto): n_two_way is chosen again at each update from what the last step
  // measured: the host's seconds per block it updated, and the link's per one-way and two-way block.
  bool auto_two_way = false;
  std::vector<int> forced_two_way;  // GpuOptions::device_updates_sequence (tests)
  size_t n_updates = 0;
  double est_host = 0, est_one = 0, est_two = 0;  // seconds per block (0: not measured yet)
  double last_update_s = 0;        // the last updater's wall time, and how many blocks it updated
  int last_host_blocks = 0;
  int last_pass_applied = 0;       // two-way blocks whose update the last pass applied and sent back
  std::vector<double> last_up_s;   // per block: its upload's busy time in the last pass
  std::vector<double> last_comp_s;  // per block: its compute in the last pass (every version)
  std::vector<uint8_t> resident_mask;  // per block: resident (bdev set), for auto's timing model
  PassRates rates;                     // auto's model inputs, refilled at each update
  cudaStream_t down = nullptr;
  cudaEvent_t sent[2] = {};        // slot k's last send-back done (the slot may be overwritten)
  std::vector<cudaEvent_t> back;   // per block: its updated masters are on the host again
  std::vector<cudaEvent_t> applied;  // per block: its pending update applied on the device (timed)
  std::vector<long> applied_in;      // per block: the pass in which it was last applied
  double est_dev_two = 0;            // seconds of device time a two-way block's update adds
  struct Pending {
    std::vector<UpdateTerm> terms;
    Dist dist = Dist::Gaussian;
    OptKind opt = OptKind::SGD;
    float lr = 0, wd = 0, beta = 0;
    std::vector<uint8_t> trainable;
  } pend;
  std::vector<uint8_t> pend_left;  // per block: the pending update is still to be applied

  DevBuf<float> rope_cos, rope_sin;
  DevBuf<float> x, h, qkv, att, ffn, ffn2, hf, logits;
  DevBuf<int32_t> ids, pos, rows;
  DevBuf<double> lse, picked;
  DevBuf<float> mom;  // momentum state (OptKind::Momentum), arena layout
  // Grow-only buffers of the step: nothing is allocated inside the step loop once they are sized.
  std::vector<AttnArgs> args;
  DevBuf<AttnArgs> args_dev;
  std::vector<DevBuf<float>> xs;  // hidden states of each version
  DevBuf<float> gver, wver;       // the version's globals, a block's working copy

  void prepare(const Batch& b, size_t n_rows);
  std::vector<double> head_logprobs(const float* xs, const std::vector<int32_t>& rows, const std::vector<int32_t>& ids,
                                    int n_rows);

  Impl(const Model& model, const GpuOptions& o) : m(model), mode(o.mode) {
    ZO_CHECK(cuda::device_count() > 0, "GpuEngine: no CUDA device");
    ZO_CUDA_CHECK(cudaStreamCreate(&st));
    blas = cuda::cublas_create(st);
    // Residency plan (offload/residency.h): globals always; then blocks in order while they fit in
    // gpu_mem, keeping room for the streaming buffers and for o.reserve (activations).
    const ModelConfig& c0 = m.cfg;
    size_t free0 = 0, total0 = 0;
    ZO_CUDA_CHECK(cudaMemGetInfo(&free0, &total0));
    free_at_start = free0;
    wire = o.wire;
    ZO_CHECK(o.device_updates >= -1, "device updates: a number of blocks >= 0, or -1 for auto (got {})",
             o.device_updates);
    const ResidencyPlan rp = plan_residency(m, o.gpu_mem, o.reserve, wire, o.device_updates != 0, o.placement);
    const size_t groups_max = rp.max_groups;
    n_streamed = rp.streamed_blocks;
    fixed_bytes = rp.fixed_bytes;
    // Every tensor group starts 256-byte aligned, as cudaMalloc'd ring slots do: cuBLAS then picks
    // the same kernels for a resident and a streamed block, and the bits agree.
    auto up64 = [](size_t v) { return (v + 63) / 64 * 64; };
    size_t numel = 0;
    for (const Param& p : m.params)
      if (p.block < 0) numel = up64(numel) + p.numel;
    for (int l = 0; l < c0.n_layers; l++)
      if (rp.resident[size_t(l)]) numel = up64(numel) + (m.block_end(l) - m.block_begin(l));
    w.reserve(std::max<size_t>(numel, 1));
    pdev.assign(m.params.size(), nullptr);
    bdev.assign(size_t(c0.n_layers), nullptr);
    size_t cur = 0;
    for (size_t i = 0; i < m.params.size(); i++)
      if (m.params[i].block < 0) {
        cur = up64(cur);
        pdev[i] = w.p + cur;
        cur += m.params[i].numel;
      }
    for (int l = 0; l < c0.n_layers; l++) {
      if (!rp.resident[size_t(l)]) continue;
      cur = up64(cur);
      bdev[size_t(l)] = w.p + cur;
      cur += m.block_end(l) - m.block_begin(l);
    }
    // The streamed blocks in pass order: their ring slot alternates along that order, and after
    // block l the next streamed block after l is uploaded (it overlaps the compute in between).
    slot_of.assign(size_t(c0.n_layers), 0);
    issued_at.assign(size_t(c0.n_layers), -1);
    for (int l = 0; l < c0.n_layers; l++)
      if (!bdev[size_t(l)]) {
        slot_of[size_t(l)] = int(streamed_ids.size() & 1);
        streamed_ids.push_back(l);
      }
    for (size_t i = 0; i < m.params.size(); i++) {
      const Param& p = m.params[i];
      if (p.block >= 0 && bdev[size_t(p.block)]) pdev[i] = bdev[size_t(p.block)] + (p.offset - m.block_begin(p.block));
    }
    // Upload what is resident through one f32 staging buffer (bf16 masters are widened on the way).
    std::vector<float> stage;
    for (size_t i = 0; i < m.params.size(); i++) {
      if (!pdev[i]) continue;
      const Param& p = m.params[i];
      stage.resize(p.numel);
      m.get_param(p, stage.data());
      ZO_CUDA_CHECK(cudaMemcpy(pdev[i], stage.data(), sizeof(float) * p.numel, cudaMemcpyHostToDevice));
    }
    if (n_streamed > 0) {
      ZO_CHECK(m.storage == DType::F32, "GpuEngine: streamed blocks need f32 host masters");
      host = const_cast<Model*>(&m);  // updates of streamed blocks are applied to the host masters
      // f32 on the wire: uploads read the masters themselves, registered in place; where the
      // platform refuses to register them, an f32 pinned shadow stands in (the updater keeps it).
      auto_two_way = o.device_updates < 0;  // starts one-way: the first steps measure the host
      forced_two_way = o.device_updates_sequence;
      n_two_way = auto_two_way ? 0 : std::min(o.device_updates, n_streamed);
      two_way.assign(size_t(c0.n_layers), 0);
      set_two_way(n_two_way);
      last_up_s.assign(size_t(c0.n_layers), 0.0);
      pend_left.assign(size_t(c0.n_layers), 0);
      // Two-way blocks travel both ways from and to the masters themselves: they must be page-locked
      // in place (an f32 wire needs that too, or falls back to a pinned shadow).
      const bool can_two_way = n_two_way > 0 || auto_two_way;
      const bool pinned_in_place =
          (wire == WireDType::F32 || can_two_way) && registered.try_register(host->arena(), host->bytes());
      ZO_CHECK(!can_two_way || pinned_in_place,
               "device updates: CUDA could not page-lock the host masters in place (cudaHostRegister), which "
               "blocks updated on the device need; run without them");
      use_shadow = wire != WireDType::F32 || !pinned_in_place;
      if (use_shadow) build_shadow();
      ZO_CUDA_CHECK(cudaStreamCreateWithFlags(&up, cudaStreamNonBlocking));
      if (can_two_way) {
        ZO_CUDA_CHECK(cudaStreamCreateWithFlags(&down, cudaStreamNonBlocking));
        back.assign(size_t(c0.n_layers), nullptr);
        applied.assign(size_t(c0.n_layers), nullptr);
        applied_in.assign(size_t(c0.n_layers), -1);
        for (int l : streamed_ids)
          if (auto_two_way || two_way[size_t(l)]) {
            ZO_CUDA_CHECK(cudaEventCreateWithFlags(&back[size_t(l)], cudaEventDisableTiming));
            ZO_CUDA_CHECK(cudaEventCreate(&applied[size_t(l)]));  // timed: auto's model charges it
          }
      }
      for (int k = 0; k < 2; k++) {
        ring[k].reserve(m.max_block_numel() * (can_two_way ? std::max<size_t>(4, wire_size(wire)) : wire_size(wire)));
        if (can_two_way) {
          ZO_CUDA_CHECK(cudaEventCreateWithFlags(&sent[k], cudaEventDisableTiming));
          ZO_CUDA_CHECK(cudaEventRecord(sent[k], down));
        }
        if (wire_scaled(wire)) ring_scales[k].reserve(std::max<size_t>(groups_max, 1));
        ZO_CUDA_CHECK(cudaEventCreateWithFlags(&uploaded[k], cudaEventDisableTiming));
        ZO_CUDA_CHECK(cudaEventCreateWithFlags(&released[k], cudaEventDisableTiming));
        ZO_CUDA_CHECK(cudaEventRecord(released[k], st));
      }
      if (wire != WireDType::F32) dec.reserve(m.max_block_numel());
      if (can_two_way && wire == WireDType::F16) {
        round_overflow.reserve(1);
        ZO_CUDA_CHECK(cudaMemset(round_overflow.p, 0, sizeof(int)));
      }
      up_t0.resize(size_t(c0.n_layers));
      up_t1.resize(size_t(c0.n_layers));
      for (int l = 0; l < c0.n_layers; l++) {
        ZO_CUDA_CHECK(cudaEventCreate(&up_t0[size_t(l)]));
        ZO_CUDA_CHECK(cudaEventCreate(&up_t1[size_t(l)]));
      }
    }
    comp_t0.resize(size_t(c0.n_layers));
    comp_t1.resize(size_t(c0.n_layers));
    last_comp_s.assign(size_t(c0.n_layers), 0.0);
    for (float* b : bdev) resident_mask.push_back(b != nullptr);
    reserve_history();
    for (int l = 0; l < c0.n_layers; l++) {
      ZO_CUDA_CHECK(cudaEventCreate(&comp_t0[size_t(l)]));
      ZO_CUDA_CHECK(cudaEventCreate(&comp_t1[size_t(l)]));
    }
    const ModelConfig& c = m.cfg;
    if (c.arch == Arch::Llama) {
      std::vector<float> cs(size_t(c.max_pos) * c.head_dim / 2), sn(cs.size());
      rope_tables(cs.data(), sn.data(), c.max_pos, c.head_dim, c.rope_theta);
      rope_cos.reserve(cs.size());
      rope_sin.reserve(sn.size());
      ZO_CUDA_CHECK(cudaMemcpy(rope_cos.p, cs.data(), sizeof(float) * cs.size(), cudaMemcpyHostToDevice));
      ZO_CUDA_CHECK(cudaMemcpy(rope_sin.p, sn.data(), sizeof(float) * sn.size(), cudaMemcpyHostToDevice));
    }
  }
  // The pinned wire shadow of the streamed blocks, encoded from the masters (in parallel).
  void build_shadow() {
    const size_t ws = wire_size(wire);
    shadow_off.assign(size_t(m.cfg.n_layers), 0);
    block_scale_off.assign(size_t(m.cfg.n_layers), 0);
    block_scale_n.assign(size_t(m.cfg.n_layers), 0);
    scale_off.assign(m.params.size(), 0);
    size_t bytes = 0, nscales = 0;
    for (int l = 0; l < m.cfg.n_layers; l++) {
      if (bdev[size_t(l)]) continue;
      shadow_off[size_t(l)] = bytes;
      bytes += (m.block_end(l) - m.block_begin(l)) * ws;
      block_scale_off[size_t(l)] = nscales;
      for (size_t i = 0; i < m.params.size(); i++)
        if (m.params[i].block == l) {
          scale_off[i] = nscales - block_scale_off[size_t(l)];
          nscales += wire_scaled(wire) ? wire_groups(m.params[i].numel) : 0;
        }
      block_scale_n[size_t(l)] = nscales - block_scale_off[size_t(l)];
    }
    shadow.alloc(bytes);
    shadow_scales.alloc(nscales * sizeof(float));
    for (size_t i = 0; i < m.params.size(); i++) {
      const Param& p = m.params[i];
      if (p.block < 0 || bdev[size_t(p.block)]) continue;
      ZO_CHECK(wire_encode_parallel(wire, static_cast<const float*>(m.arena()) + p.offset, p.numel, wire_ptr(i),
                                    wire_scales(i)),
               "--wire-dtype {}: {} holds values beyond the dtype's range (use bf16)", wire_name(wire), p.name);
    }
  }
  // Applies the pending update of every two-way block that has not had it on the device to its host
  // masters (core/perturb.h's zo_update: the same bits), after the send-backs in flight.
  void flush_pending() {
    if (!down) return;
    ZO_CUDA_CHECK(cudaStreamSynchronize(down));
    for (int l = 0; l < m.cfg.n_layers; l++) {
      if (!pend_left[size_t(l)]) continue;
      for (size_t i = 0; i < m.params.size(); i++) {
        const Param& p = m.params[i];
        if (p.block != l || !pend.trainable[i]) continue;
        zo_update(static_cast<float*>(host->arena()) + p.offset, nullptr, p.numel, tid_of(p), 0, pend.terms.data(),
                  int(pend.terms.size()), pend.dist, pend.opt, pend.lr, p.decay ? pend.wd : 0.0f, pend.beta);
      }
      pend_left[size_t(l)] = 0;
    }
  }

  // Auto two-way: returns n, how many of the first streamed blocks to update on the device: the n
  // whose pass is the shortest by residency.h's timing model (the device's compute per block, the
  // device time a two-way block's update adds, the host's update of a one-way block, one-way and
  // two-way uploads, and the send-back of a two-way block, taken as long as its upload), so that
  // resident compute counts as well as host and link.
  // Estimates are the last step's measurements (a two-way block's, until one is measured: a
  // one-way block's scaled to f32 and by the 1.35 the link lost with traffic both ways on an H100
  // machine); after the first choice, n moves half way to the new target each step, which damps
  // the feedback (the host's rate changes with the link's traffic).
  static constexpr size_t kHistory = 4096;  // per-pass and per-update figures kept in Stats (a long run's stay bounded)
  void reserve_history() {  // so that recording them allocates nothing in the step loop
    st_.pass_seconds_each.reserve(kHistory);
    st_.two_way_chosen.reserve(kHistory);
    st_.two_way_model_seconds.reserve(kHistory);
  }
  int retune() {
    const int S = n_streamed;
    double one = 0, two = 0;
    int n_one = 0, n_two = 0;
    for (int l : streamed_ids) {
      if (last_up_s[size_t(l)] <= 0) continue;
      if (two_way[size_t(l)]) two += last_up_s[size_t(l)], n_two++;
      else one += last_up_s[size_t(l)], n_one++;
    }
    // A pass that sent nothing back (an evaluation applied the pending updates) timed its uploads
    // with the link free in the other direction: rates that would flatter two-way blocks.
    const bool skewed = n_two_way > 0 && last_pass_applied == 0;
    if (n_one && !skewed) est_one = one / n_one;
    if (n_two && !skewed) est_two = two / n_two;
    if (last_host_blocks > 0) est_host = last_update_s / last_host_blocks;
    if (est_host <= 0 || est_one <= 0) return n_two_way;  // the host not measured yet: stay one-way
    const double two_b = est_two > 0 ? est_two : est_one * 4.0 / double(wire_size(wire)) * 1.35;
    PassRates& r = rates;  // (a member: its vector keeps its capacity from step to step)
    r.compute.assign(last_comp_s.begin(), last_comp_s.end());
    r.host = est_host, r.up_one = est_one, r.up_two = r.down_two = two_b, r.dev_two = est_dev_two;
    const int target = std::clamp(best_two_way(resident_mask, r), 0, S);
    const int n = n_two == 0 && n_two_way == 0 ? target : (n_two_way + target + (target > n_two_way ? 1 : 0)) / 2;
    if (st_.two_way_chosen.size() < kHistory) {
      st_.two_way_chosen.push_back(n);
      st_.two_way_model_seconds.push_back(model_pass_seconds(resident_mask, r, n));
    }
    return n;
  }
  // The first n streamed blocks (in pass order) two-way, the others one-way (between steps: nothing
  // pending).
  void set_two_way(int n) {
    n_two_way = std::clamp(n, 0, n_streamed);
    for (size_t r = 0; r < streamed_ids.size(); r++) two_way[size_t(streamed_ids[r])] = int(r) < n_two_way;
  }

  // Bytes a pass uploads for streamed block l: f32 masters for a two-way block, else its wire
  // encoding and (fp8) its scales.
  size_t upload_bytes(int l) const {
    const size_t n = m.block_end(l) - m.block_begin(l);
    if (down && two_way[size_t(l)]) return n * sizeof(float);
    return n * wire_size(wire) + (block_scale_n.empty() ? 0 : block_scale_n[size_t(l)] * sizeof(float));
  }
  // An update took a streamed weight beyond the wire dtype's range (f16 only).
  void check_wire_range(bool overflow) const {
    ZO_CHECK(!overflow, "--wire-dtype {}: an update took weights beyond the dtype's range (use bf16)", wire_name(wire));
  }

  // Where parameter i of a streamed block sits in the wire shadow.
  void* wire_ptr(size_t i) {
    const Param& p = m.params[i];
    return static_cast<uint8_t*>(shadow.p) + shadow_off[size_t(p.block)] +
           (p.offset - m.block_begin(p.block)) * wire_size(wire);
  }
  float* wire_scales(size_t i) {
    if (!wire_scaled(wire)) return nullptr;
    return static_cast<float*>(shadow_scales.p) + block_scale_off[size_t(m.params[i].block)] + scale_off[i];
  }

  ~Impl() {
    if (updater.joinable()) updater.join();
    if (up) cudaStreamSynchronize(up);
    if (st) cudaStreamSynchronize(st);
    // The model outlives the engine with every update in its masters: pending ones of two-way
    // blocks are applied on the host (the same bits as on the device).
    try {
      flush_pending();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "zo: warning: the last update of the blocks updated on the device was not applied to "
                           "the host masters (%s)\n", e.what());
    }
    if (down) cudaStreamSynchronize(down);
    for (int k = 0; k < 2; k++) {
      if (uploaded[k]) cudaEventDestroy(uploaded[k]);
      if (released[k]) cudaEventDestroy(released[k]);
      if (sent[k]) cudaEventDestroy(sent[k]);
    }
    for (auto e : back) if (e) cudaEventDestroy(e);
    for (auto e : applied) if (e) cudaEventDestroy(e);
    if (down) cudaStreamDestroy(down);
    for (auto e : up_t0) cudaEventDestroy(e);
    for (auto e : up_t1) cudaEventDestroy(e);
    for (auto e : comp_t0) cudaEventDestroy(e);
    for (auto e : comp_t1) cudaEventDestroy(e);
    for (auto e : gemm_ev) cudaEventDestroy(e);
    if (up) cudaStreamDestroy(up);
    if (blas) cuda::cublas_destroy(blas);
    if (st) cudaStreamDestroy(st);
  }

  const float* global(GlobalRole r) const {
    const Param* p = m.global(r);
    return p ? pdev[size_t(p - m.params.data())] : nullptr;
  }
  void linear(float* y, const float* xin, const float* W, const float* b, int M, int N, int K, bool acc = false) {
    while (gemm_used + 2 > gemm_ev.size()) {  // the first pass of a shape only
      cudaEvent_t e = nullptr;
      ZO_CUDA_CHECK(cudaEventCreate(&e));
      gemm_ev.push_back(e);
    }
    ZO_CUDA_CHECK(cudaEventRecord(gemm_ev[gemm_used], st));
    cuda::linear(blas, y, xin, W, b, M, N, K, acc, mode, st);
    ZO_CUDA_CHECK(cudaEventRecord(gemm_ev[gemm_used + 1], st));
    gemm_used += 2;
    st_.gemm_flop += 2.0 * double(M) * double(N) * double(K);
  }

  // Global weights of the version being run: the masters, or perturbed copies (gver).
  const float* gsrc[kNumGlobalRoles] = {};
  const float* G(GlobalRole r) const { return gsrc[r] ? gsrc[r] : global(r); }

  void embed(const Batch& b) { embed_into(b, x.p); }
  void embed_into(const Batch& b, float* xo) {
    const ModelConfig& c = m.cfg;
    const int N = b.n_tokens(), C = c.hidden, Ce = c.embed_dim;
    float* dst = c.has_projection() ? h.p : xo;
    cuda::embed_rows(dst, G(kEmbed), ids.p, N, Ce, st);
    if (c.arch != Arch::OPT) return;
    if (c.has_projection()) linear(xo, dst, G(kProjIn), nullptr, N, C, Ce);
    // Learned positions (HF's offset of 2 rows): gather rows pos + 2, then add.
    std::vector<int32_t> p2(b.pos);
    for (auto& v : p2) v += 2;
    ZO_CUDA_CHECK(cudaMemcpyAsync(rows.p, p2.data(), sizeof(int32_t) * p2.size(), cudaMemcpyHostToDevice, st));
    cuda::embed_rows(h.p, G(kPosEmbed), rows.p, N, C, st);
    cuda::add_inplace(xo, h.p, size_t(N) * C, st);
  }

  // Block l's weights on the device: resident, or uploaded into its ring slot (the slots alternate
  // along the streamed blocks; the upload of the next streamed block is issued right after block
  // l's compute is queued, so it overlaps the compute of every block up to it).
  // The upload reads the masters (or their shadow) only once the host update of block l is done.
  // wait false: if that update is still running, issue nothing and return, so that the caller can
  // go on queuing resident blocks for the device meanwhile (acquire, which must have the block,
  // waits).
  void issue_upload(int l, bool wait) {
    if (l < 0 || l >= m.cfg.n_layers || bdev[size_t(l)] || issued_at[size_t(l)] == pass_no) return;
    const int k = slot_of[size_t(l)];
    {
      auto t0 = Clock::now();
      std::unique_lock<std::mutex> g(umu);
      if (!wait && updated_upto <= l) return;
      ucv.wait(g, [&] { return updated_upto > l; });
      st_.host_wait_seconds += since(t0);
    }
    issued_at[size_t(l)] = pass_no;
    check_wire_range(encode_overflow.load());
    const size_t bb = m.block_begin(l), n = m.block_end(l) - bb;
    const bool tw = down && two_way[size_t(l)];
    ZO_CUDA_CHECK(cudaStreamWaitEvent(up, released[k], 0));
    if (down) {  // the slot's last send-back read it; block l's masters are back from the last pass
      ZO_CUDA_CHECK(cudaStreamWaitEvent(up, sent[k], 0));
      if (back[size_t(l)]) ZO_CUDA_CHECK(cudaStreamWaitEvent(up, back[size_t(l)], 0));
    }
    ZO_CUDA_CHECK(cudaEventRecord(up_t0[size_t(l)], up));
    const void* src = use_shadow && !tw
                          ? static_cast<const void*>(static_cast<uint8_t*>(shadow.p) + shadow_off[size_t(l)])
                          : static_cast<const void*>(static_cast<const float*>(host->arena()) + bb);
    ZO_CUDA_CHECK(cudaMemcpyAsync(ring[k].p, src, n * (tw ? sizeof(float) : wire_size(wire)), cudaMemcpyHostToDevice, up));
    if (!tw && wire_scaled(wire) && block_scale_n[size_t(l)]) {
      ZO_CUDA_CHECK(cudaMemcpyAsync(ring_scales[k].p, static_cast<float*>(shadow_scales.p) + block_scale_off[size_t(l)],
                                    block_scale_n[size_t(l)] * sizeof(float), cudaMemcpyHostToDevice, up));
    }
    ZO_CUDA_CHECK(cudaEventRecord(up_t1[size_t(l)], up));
    ZO_CUDA_CHECK(cudaEventRecord(uploaded[k], up));
    st_.bytes_h2d += upload_bytes(l);
  }
  const float* acquire(int l) {
    if (bdev[size_t(l)]) {
      ZO_CUDA_CHECK(cudaEventRecord(comp_t0[size_t(l)], st));
      return bdev[size_t(l)];
    }
    issue_upload(l, true);  // a no-op if issued at the pass's start or after a block before
    const int k = slot_of[size_t(l)];
    ZO_CUDA_CHECK(cudaStreamWaitEvent(st, uploaded[k], 0));
    ZO_CUDA_CHECK(cudaEventRecord(comp_t0[size_t(l)], st));  // after the wait: compute time only
    const size_t bb = m.block_begin(l);
    if (down && two_way[size_t(l)]) {
      float* wb = reinterpret_cast<float*>(ring[k].p);
      if (pend_left[size_t(l)]) {  // the step's update, then the updated masters back to the host
        const size_t n = m.block_end(l) - bb;
        for (size_t i = 0; i < m.params.size(); i++) {
          const Param& p = m.params[i];
          if (p.block != l || !pend.trainable[i]) continue;
          cuda::zo_update(wb + (p.offset - bb), nullptr, p.numel, tid_of(p), 0, pend.terms.data(),
                          int(pend.terms.size()), pend.dist, pend.opt, pend.lr, p.decay ? pend.wd : 0.0f, pend.beta, st);
        }
        ZO_CUDA_CHECK(cudaEventRecord(applied[size_t(l)], st));
        applied_in[size_t(l)] = pass_no;
        ZO_CUDA_CHECK(cudaStreamWaitEvent(down, applied[size_t(l)], 0));
        ZO_CUDA_CHECK(cudaMemcpyAsync(static_cast<float*>(host->arena()) + bb, wb, n * sizeof(float),
                                      cudaMemcpyDeviceToHost, down));
        ZO_CUDA_CHECK(cudaEventRecord(back[size_t(l)], down));
        ZO_CUDA_CHECK(cudaEventRecord(sent[k], down));
        pend_left[size_t(l)] = 0;
        st_.bytes_d2h += n * sizeof(float);
      }
      if (wire == WireDType::F32) return wb;
      // The forward sees the masters rounded as a trip in the wire dtype rounds them, as for a
      // one-way block: which blocks travel two-way (auto's choice follows the timings) changes no
      // loss, so a run gives the same log whatever the split.
      for (const Param& p : m.params)
        if (p.block == l)
          cuda::wire_round(dec.p + (p.offset - bb), wb + (p.offset - bb), p.numel, wire, round_overflow.p, st);
      return dec.p;
    }
    if (wire == WireDType::F32) return reinterpret_cast<const float*>(ring[k].p);
    const size_t ws = wire_size(wire);
    for (size_t i = 0; i < m.params.size(); i++) {
      const Param& p = m.params[i];
      if (p.block != l) continue;
      cuda::wire_decode(dec.p + (p.offset - bb), ring[k].p + (p.offset - bb) * ws, p.numel,
                        wire_scaled(wire) ? ring_scales[k].p + scale_off[i] : nullptr, wire, st);
    }
    return dec.p;
  }
  // End of a pass: the host clock and the upload events of the streamed blocks.
  void end_pass(Clock::time_point t0) {
    ZO_CUDA_CHECK(cudaStreamSynchronize(st));
    if (up) ZO_CUDA_CHECK(cudaStreamSynchronize(up));
    if (down) ZO_CUDA_CHECK(cudaStreamSynchronize(down));
    if (round_overflow.p) {  // sticky, as the host's encode_overflow: the masters stay beyond range
      int over = 0;
      ZO_CUDA_CHECK(cudaMemcpy(&over, round_overflow.p, sizeof(int), cudaMemcpyDeviceToHost));
      check_wire_range(over != 0);
    }
    st_.pass_seconds += since(t0);
    if (st_.pass_seconds_each.size() < kHistory) st_.pass_seconds_each.push_back(since(t0));
    st_.passes++;
    for (int l = 0; l < m.cfg.n_layers && n_streamed; l++) {
      if (bdev[size_t(l)]) continue;
      float ms = 0;
      ZO_CUDA_CHECK(cudaEventElapsedTime(&ms, up_t0[size_t(l)], up_t1[size_t(l)]));
      st_.upload_seconds += ms * 1e-3;
      last_up_s[size_t(l)] = ms * 1e-3;
    }
    double dev_two = 0;
    int n_dev_two = 0;
    for (int l = 0; l < m.cfg.n_layers; l++) {
      float ms = 0;
      ZO_CUDA_CHECK(cudaEventElapsedTime(&ms, comp_t0[size_t(l)], comp_t1[size_t(l)]));
      st_.block_compute_seconds += ms * 1e-3;
      last_comp_s[size_t(l)] = ms * 1e-3;
      // A two-way block's compute began with its update: auto's model needs the two apart, since
      // the split it weighs decides which blocks pay it.
      if (!applied_in.empty() && applied_in[size_t(l)] == pass_no) {
        float ups = 0;
        ZO_CUDA_CHECK(cudaEventElapsedTime(&ups, comp_t0[size_t(l)], applied[size_t(l)]));
        last_comp_s[size_t(l)] -= std::min(ms, ups) * 1e-3;
        dev_two += ups * 1e-3, n_dev_two++;
      }
    }
    if (n_dev_two) est_dev_two = dev_two / n_dev_two;
    last_pass_applied = n_dev_two;
    for (size_t k = 0; k + 1 < gemm_used; k += 2) {
      float ms = 0;
      ZO_CUDA_CHECK(cudaEventElapsedTime(&ms, gemm_ev[k], gemm_ev[k + 1]));
      st_.gemm_seconds += ms * 1e-3;
    }
    gemm_used = 0;
    size_t fr = 0, tot = 0;
    ZO_CUDA_CHECK(cudaMemGetInfo(&fr, &tot));
    if (free_at_start > fr) st_.device_peak_bytes = std::max(st_.device_peak_bytes, free_at_start - fr);
    st_.device_used_peak_bytes = std::max(st_.device_used_peak_bytes, tot - fr);
  }
  void release(int l) {
    ZO_CUDA_CHECK(cudaEventRecord(comp_t1[size_t(l)], st));
    if (!bdev[size_t(l)]) ZO_CUDA_CHECK(cudaEventRecord(released[slot_of[size_t(l)]], st));
  }
  void block(int l, const Batch& b) {
    block_with(l, b, acquire(l), x.p);
    release(l);
    upload_after(l);
  }
  // A pass begins: the first streamed block's upload. After block l: the next streamed block's.
  // Neither waits for the host updater: a resident block queued meanwhile keeps the device busy
  // (the next call, or the block's acquire, issues the upload once the update is done).
  void begin_uploads() {
    pass_no++;
    if (!streamed_ids.empty()) issue_upload(streamed_ids[0], false);
  }
  void upload_after(int l) {
    auto it = std::upper_bound(streamed_ids.begin(), streamed_ids.end(), l);
    if (it != streamed_ids.end()) issue_upload(*it, false);
  }

  // The architecture's norm: LayerNorm (OPT, with bias) or RMSNorm (LLaMA).
  void norm(float* out, const float* in, const float* w_, const float* b_, int M) {
    const ModelConfig& c = m.cfg;
    if (c.arch == Arch::OPT)
      cuda::layernorm(out, in, w_, b_, M, c.hidden, c.norm_eps, st);
    else
      cuda::rmsnorm(out, in, w_, M, c.hidden, c.norm_eps, st);
  }

  // One block over hidden states xs with the block's weights at wbase (arena layout of the block).
  void block_with(int l, const Batch& b, const float* wbase, float* xs) {
    const ModelConfig& c = m.cfg;
    const int N = b.n_tokens(), C = c.hidden, Q = c.q_dim(), KV = c.kv_dim(), D = c.head_dim, F = c.ffn_dim;
    const int ld = Q + 2 * KV;
    const bool opt = c.arch == Arch::OPT;
    BlockView v = m.block_view_at(l, wbase);
    float* const xp = xs;
    const bool pre = !opt || c.pre_ln;  // post-LN OPT normalises after the residual instead
    const float* a_in = xp;
    if (pre) {
      norm(h.p, xp, v[kLn1W], v[kLn1B], N);
      a_in = h.p;
    }
    linear(qkv.p, a_in, v[kQW], v[kQB], N, ld, C);
    if (!opt) {
      cuda::rope_apply(qkv.p, N, ld, c.n_heads, D, pos.p, rope_cos.p, rope_sin.p, st);
      cuda::rope_apply(qkv.p + Q, N, ld, c.n_kv_heads, D, pos.p, rope_cos.p, rope_sin.p, st);
    }
    args.resize(size_t(b.n_seqs()));  // reused: no allocation per block once sized
    for (int s = 0; s < b.n_seqs(); s++) {
      const int r0 = b.seq_start[size_t(s)], n = b.seq_len(s);
      args[size_t(s)] = AttnArgs{att.p + size_t(r0) * Q, Q, qkv.p + size_t(r0) * ld, ld, qkv.p + size_t(r0) * ld + Q, ld,
                                 qkv.p + size_t(r0) * ld + Q + KV, ld, n, n, 0, c.n_heads, c.n_kv_heads, D,
                                 1.0f / std::sqrt(float(D))};
    }
    args_dev.reserve(args.size());
    cuda::attention(args.data(), int(args.size()), args_dev.p, st);
    linear(xp, att.p, v[kOW], v[kOB], N, C, Q, true);
    if (!pre) norm(xp, xp, v[kLn1W], v[kLn1B], N);
    const float* f_in = xp;
    if (pre) {
      norm(h.p, xp, v[kLn2W], v[kLn2B], N);
      f_in = h.p;
    }
    if (opt) {
      linear(ffn.p, f_in, v[kInW], v[kInB], N, F, C);
      cuda::relu_inplace(ffn.p, size_t(N) * F, st);
      linear(xp, ffn.p, v[kOutW], v[kOutB], N, C, F, true);
      if (!pre) norm(xp, xp, v[kLn2W], v[kLn2B], N);
    } else {
      linear(ffn.p, f_in, v[kInW], v[kInB], N, 2 * F, C);
      cuda::swiglu(ffn2.p, ffn.p, N, F, st);
      linear(xp, ffn2.p, v[kOutW], v[kOutB], N, C, F, true);
    }
  }
};

GpuEngine::GpuEngine(const Model& m, cuda::GemmMode mode) : GpuEngine(m, GpuOptions{mode, 0, 0, WireDType::F32, 0, {}}) {}
GpuEngine::GpuEngine(const Model& m, const GpuOptions& o) : p_(std::make_unique<Impl>(m, o)) {}

GpuEngine::Plan GpuEngine::plan() const {
  const Impl& I = *p_;
  size_t per_pass = 0, back = 0, host_numel = 0;
  for (int l : I.streamed_ids) {
    const size_t n = I.m.block_end(l) - I.m.block_begin(l);
    per_pass += I.upload_bytes(l);
    if (I.down && I.two_way[size_t(l)])
      back += n * sizeof(float);
    else
      host_numel += n;
  }
  return Plan{I.m.cfg.n_layers - I.n_streamed, I.n_streamed, I.w.n * sizeof(float),
              I.n_streamed ? I.ring[0].n + I.ring[1].n : 0, I.fixed_bytes,
              I.shadow.bytes + I.shadow_scales.bytes, per_pass, I.wire, I.n_two_way, back, host_numel};
}
GpuEngine::Stats GpuEngine::stats() const {
  Impl& I = *p_;
  if (I.updater.joinable()) I.updater.join();
  GpuEngine::Stats s = I.st_;
  s.host_update_seconds = I.host_update_s;
  s.host_updated_weights = I.host_updated_n;
  return s;
}
void GpuEngine::reset_stats() {
  Impl& I = *p_;
  if (I.updater.joinable()) I.updater.join();
  const size_t peak = I.st_.device_peak_bytes, used = I.st_.device_used_peak_bytes;
  I.st_ = Stats();
  I.reserve_history();
  I.st_.device_peak_bytes = peak;
  I.st_.device_used_peak_bytes = used;
  I.host_update_s = 0;
  I.host_updated_n = 0;
}
GpuEngine::~GpuEngine() = default;

float* GpuEngine::block_weights(int l) { return p_->bdev[size_t(l)]; }
size_t GpuEngine::device_bytes() const {
  const Impl& I = *p_;
  return sizeof(float) * (I.w.n + I.x.n + I.h.n + I.qkv.n + I.att.n + I.ffn.n + I.ffn2.n + I.hf.n + I.logits.n);
}


void GpuEngine::Impl::prepare(const Batch& b, size_t n_rows) {
  const ModelConfig& c = m.cfg;
  const int N = b.n_tokens(), V = c.vocab_size;
  for (int32_t id : b.ids) ZO_CHECK(id >= 0 && id < V, "token id {} out of range [0, {})", id, V);
  for (int32_t p : b.pos)
    ZO_CHECK(p >= 0 && p < c.max_pos, "position {} beyond the model's context of {} tokens", p, c.max_pos);
  const size_t wide = size_t(std::max(c.hidden, c.embed_dim));
  x.reserve(size_t(N) * wide);
  h.reserve(size_t(N) * wide);
  qkv.reserve(size_t(N) * (c.q_dim() + 2 * c.kv_dim()));
  att.reserve(size_t(N) * c.q_dim());
  ffn.reserve(size_t(N) * 2 * c.ffn_dim);
  ffn2.reserve(size_t(N) * c.ffn_dim);
  ids.reserve(size_t(N));
  pos.reserve(size_t(N));
  rows.reserve(std::max<size_t>(size_t(N), n_rows));
  ZO_CUDA_CHECK(cudaMemcpyAsync(ids.p, b.ids.data(), sizeof(int32_t) * size_t(N), cudaMemcpyHostToDevice, st));
  ZO_CUDA_CHECK(cudaMemcpyAsync(pos.p, b.pos.data(), sizeof(int32_t) * size_t(N), cudaMemcpyHostToDevice, st));
}

std::vector<double> GpuEngine::Impl::head_logprobs(const float* xs, const std::vector<int32_t>& rws,
                                                   const std::vector<int32_t>& tgt, int n_rows) {
  ZO_CHECK(rws.size() == tgt.size(), "target_logprobs: {} rows but {} ids", rws.size(), tgt.size());
  const ModelConfig& c = m.cfg;
  const int C = c.hidden, Ce = c.embed_dim, V = c.vocab_size;
  const size_t wide = size_t(std::max(C, Ce));
  for (size_t i = 0; i < rws.size(); i++) {
    ZO_CHECK(rws[i] >= 0 && rws[i] < n_rows, "target_logprobs: row {} outside the batch's {} rows", rws[i], n_rows);
    ZO_CHECK(tgt[i] >= 0 && tgt[i] < V, "target id {} out of range [0, {})", tgt[i], V);
  }
  std::vector<int32_t> uniq(rws);
  std::sort(uniq.begin(), uniq.end());
  uniq.erase(std::unique(uniq.begin(), uniq.end()), uniq.end());
  std::vector<double> out(rws.size());
  constexpr int kChunk = 128;
  hf.reserve(size_t(kChunk) * (wide + size_t(Ce)));
  logits.reserve(size_t(kChunk) * V);
  lse.reserve(kChunk);
  rows.reserve(std::max<size_t>(kChunk, 2 * rws.size()));
  picked.reserve(std::max<size_t>(rws.size(), 1));
  // Per chunk of rows: the (chunk row, target) pairs it answers; the log-probabilities are picked on
  // the device, so only one double per target comes back (never the logits).
  std::vector<int32_t> pr, pt;
  std::vector<size_t> which;
  std::vector<double> host_picked;
  const float* head = G(kLmHead) ? G(kLmHead) : G(kEmbed);
  for (size_t r0 = 0; r0 < uniq.size(); r0 += kChunk) {
    const int R = int(std::min<size_t>(kChunk, uniq.size() - r0));
    pr.clear();
    pt.clear();
    which.clear();
    for (size_t i = 0; i < rws.size(); i++) {
      auto it = std::lower_bound(uniq.begin() + long(r0), uniq.begin() + long(r0) + R, rws[i]);
      if (it == uniq.begin() + long(r0) + R || *it != rws[i]) continue;
      pr.push_back(int32_t(it - (uniq.begin() + long(r0))));
      pt.push_back(tgt[i]);
      which.push_back(i);
    }
    const int P = int(pr.size());
    ZO_CUDA_CHECK(cudaMemcpyAsync(rows.p, uniq.data() + r0, sizeof(int32_t) * size_t(R), cudaMemcpyHostToDevice, st));
    float* g = hf.p;
    cuda::embed_rows(g, xs, rows.p, R, C, st);  // a row gather
    if (c.final_norm) norm(g, g, G(kFinalNormW), G(kFinalNormB), R);
    const float* hfin = g;
    if (c.has_projection()) {
      linear(g + size_t(R) * wide, g, G(kProjOut), nullptr, R, Ce, C);
      hfin = g + size_t(R) * wide;
    }
    linear(logits.p, hfin, head, nullptr, R, V, Ce);
    cuda::logsumexp_rows(lse.p, logits.p, R, V, st);
    // The gathered rows' ids are no longer needed: the pairs reuse the buffer (rows then targets).
    ZO_CUDA_CHECK(cudaMemcpyAsync(rows.p, pr.data(), sizeof(int32_t) * size_t(P), cudaMemcpyHostToDevice, st));
    ZO_CUDA_CHECK(cudaMemcpyAsync(rows.p + P, pt.data(), sizeof(int32_t) * size_t(P), cudaMemcpyHostToDevice, st));
    cuda::pick_logprobs(picked.p, logits.p, lse.p, rows.p, rows.p + P, P, V, st);
    host_picked.resize(size_t(P));
    ZO_CUDA_CHECK(cudaMemcpyAsync(host_picked.data(), picked.p, sizeof(double) * size_t(P), cudaMemcpyDeviceToHost, st));
    ZO_CUDA_CHECK(cudaStreamSynchronize(st));  // pr, pt and host_picked are reused by the next chunk
    for (int k = 0; k < P; k++) out[which[size_t(k)]] = host_picked[size_t(k)];
  }
  return out;
}

std::vector<double> GpuEngine::target_logprobs(const Batch& b, const std::vector<int32_t>& rows,
                                               const std::vector<int32_t>& ids) {
  Impl& I = *p_;
  auto t0 = Clock::now();
  for (auto& g : I.gsrc) g = nullptr;  // the masters (a failed version pass may have left its copies)
  I.gemm_used = 0;                      // (and its GEMM events unread)
  I.prepare(b, rows.size());
  I.embed(b);
  I.begin_uploads();
  for (int l = 0; l < I.m.cfg.n_layers; l++) I.block(l, b);
  auto out = I.head_logprobs(I.x.p, rows, ids, b.n_tokens());
  I.end_pass(t0);
  return out;
}

std::vector<std::vector<double>> GpuEngine::version_logprobs(const Batch& b, const std::vector<int32_t>& rows,
                                                             const std::vector<int32_t>& ids,
                                                             const std::vector<uint64_t>& seeds,
                                                             const std::vector<int>& dir,
                                                             const std::vector<float>& scale, Dist dist,
                                                             const std::vector<uint8_t>& trainable) {
  Impl& I = *p_;
  const Model& m = I.m;
  const ModelConfig& c = m.cfg;
  const size_t S = dir.size();
  ZO_CHECK(S == scale.size() && S > 0, "version_logprobs: {} directions for {} scales", S, scale.size());
  ZO_CHECK(trainable.size() == m.params.size(), "version_logprobs: trainable mask of the wrong size");
  for (size_t k = 0; k < S; k++)
    ZO_CHECK(dir[k] < int(seeds.size()), "version_logprobs: direction {} of {} seeds", dir[k], seeds.size());
  auto t_pass = Clock::now();
  I.gemm_used = 0;
  I.prepare(b, rows.size());
  const size_t N = size_t(b.n_tokens()), wide = size_t(std::max(c.hidden, c.embed_dim));
  auto& xs = I.xs;
  if (xs.size() < S) xs.resize(S);
  for (size_t k = 0; k < S; k++) xs[k].reserve(N * wide);
  size_t gnumel = 0;
  for (const Param& p : m.params)
    if (p.block < 0) gnumel += p.numel;
  auto& gver = I.gver;
  auto& wver = I.wver;
  gver.reserve(gnumel);
  wver.reserve(m.max_block_numel());
  auto version = [&](size_t k) { return (dir[k] < 0 || scale[k] == 0.0f) ? -1 : dir[k]; };
  // Globals of version k, whole tensors (device memory is not the constraint in resident mode).
  auto set_globals = [&](size_t k) {
    for (auto& g : I.gsrc) g = nullptr;
    const int d = version(k);
    if (d < 0) return;
    size_t off = 0;
    for (size_t i = 0; i < m.params.size(); i++) {
      const Param& p = m.params[i];
      if (p.block >= 0) continue;
      if (trainable[i])
        cuda::perturb_range(gver.p + off, I.pdev[i], scale[k], seeds[size_t(d)], tid_of(p), 0, p.numel, dist, I.st);
      else
        ZO_CUDA_CHECK(cudaMemcpyAsync(gver.p + off, I.pdev[i], sizeof(float) * p.numel, cudaMemcpyDeviceToDevice, I.st));
      I.gsrc[p.role] = gver.p + off;
      off += p.numel;
    }
  };
  for (size_t k = 0; k < S; k++) {
    set_globals(k);
    I.embed_into(b, xs[k].p);
  }
  I.begin_uploads();
  for (int l = 0; l < c.n_layers; l++) {
    const size_t bb = m.block_begin(l);
    const float* base = I.acquire(l);  // every version of the step runs while block l is at hand
    for (size_t k = 0; k < S; k++) {
      const int d = version(k);
      const float* wb = base;
      if (d >= 0) {
        for (size_t i = 0; i < m.params.size(); i++) {
          const Param& p = m.params[i];
          if (p.block != l) continue;
          float* dst = wver.p + (p.offset - bb);
          if (trainable[i])
            cuda::perturb_range(dst, base + (p.offset - bb), scale[k], seeds[size_t(d)], tid_of(p), 0, p.numel, dist,
                                I.st);
          else
            ZO_CUDA_CHECK(cudaMemcpyAsync(dst, base + (p.offset - bb), sizeof(float) * p.numel,
                                          cudaMemcpyDeviceToDevice, I.st));
        }
        wb = wver.p;
      }
      I.block_with(l, b, wb, xs[k].p);
    }
    I.release(l);
    // Issued once block l's work is queued, if the host update of the next streamed block is done
    // (its slot frees when the streamed block before the previous one ends); otherwise the resident
    // blocks before it are queued first.
    I.upload_after(l);
  }
  std::vector<std::vector<double>> out(S);
  for (size_t k = 0; k < S; k++) {
    set_globals(k);
    out[k] = I.head_logprobs(xs[k].p, rows, ids, b.n_tokens());
  }
  for (auto& g : I.gsrc) g = nullptr;
  I.end_pass(t_pass);
  return out;
}

void GpuEngine::update(const std::vector<UpdateTerm>& terms, Dist dist, OptKind opt, float lr, float wd, float beta,
                       const std::vector<uint8_t>& trainable) {
  Impl& I = *p_;
  const Model& m = I.m;
  ZO_CHECK(!terms.empty() && terms.size() <= 16, "GpuEngine::update: 1..16 directions per step (got {})", terms.size());
  ZO_CHECK(trainable.size() == m.params.size(), "GpuEngine::update: trainable mask of the wrong size");
  if (opt == OptKind::Momentum && I.mom.n == 0) {  // the resident weights' state, in their layout
    I.mom.reserve(I.w.n);
    ZO_CUDA_CHECK(cudaMemsetAsync(I.mom.p, 0, sizeof(float) * I.w.n, I.st));
  }
  // Resident parameters: on the device, in stream order (after the step that read them).
  for (size_t i = 0; i < m.params.size(); i++) {
    if (!trainable[i] || !I.pdev[i]) continue;
    const Param& p = m.params[i];
    cuda::zo_update(I.pdev[i], opt == OptKind::Momentum ? I.mom.p + (I.pdev[i] - I.w.p) : nullptr, p.numel, tid_of(p), 0,
                    terms.data(), int(terms.size()), dist, opt, lr, p.decay ? wd : 0.0f, beta, I.st);
  }
  if (!I.n_streamed) {
    ZO_CUDA_CHECK(cudaStreamSynchronize(I.st));
    return;
  }
  // Streamed blocks: on the host masters, block by block in a helper thread, while the next step
  // already computes the resident blocks; the next upload of block l waits for block l only.
  if (I.updater.joinable()) I.updater.join();
  ZO_CUDA_CHECK(cudaStreamSynchronize(I.up));  // no upload still reads the masters
  // Two-way blocks: the update is kept pending and applied on the device at the block's next upload
  // (a block that has not been uploaded since the last update gets that one on the host first).
  // Momentum keeps the streamed blocks' state on the host, so under it they are all updated there,
  // and travel one-way in the wire dtype like the others (the shadow of every streamed block is kept).
  I.flush_pending();
  if (opt == OptKind::Momentum)
    I.set_two_way(0);
  else if (I.auto_two_way)
    I.set_two_way(I.forced_two_way.empty() ? I.retune()
                                           : I.forced_two_way[I.n_updates % I.forced_two_way.size()]);
  I.n_updates++;
  if (I.n_two_way > 0) {  // (assign: the vectors keep their capacity from step to step)
    I.pend.terms.assign(terms.begin(), terms.end());
    I.pend.trainable.assign(trainable.begin(), trainable.end());
    I.pend.dist = dist, I.pend.opt = opt, I.pend.lr = lr, I.pend.wd = wd, I.pend.beta = beta;
    for (int l = 0; l < m.cfg.n_layers; l++) I.pend_left[size_t(l)] = I.two_way[size_t(l)];
  }
  if (opt == OptKind::Momentum && I.host_mom.empty()) {  // streamed parameters only
    I.host_mom_off.assign(m.params.size(), 0);
    size_t n = 0;
    for (size_t i = 0; i < m.params.size(); i++)
      if (!I.pdev[i]) {
        I.host_mom_off[i] = n;
        n += m.params[i].numel;
      }
    I.host_mom.assign(n, 0.0f);
  }
  std::vector<uint8_t> tr(trainable);  // (before the uploads are held back: it may throw)
  {
    std::lock_guard<std::mutex> g(I.umu);
    I.updated_upto = 0;
  }
  struct Reopen {  // if the thread cannot start, uploads must not wait for it forever
    Impl& I;
    bool armed = true;
    ~Reopen() {
      if (!armed) return;
      std::lock_guard<std::mutex> g(I.umu);
      I.updated_upto = 1 << 30;
    }
  } reopen{I};
  I.updater = std::thread([&I, terms, dist, opt, lr, wd, beta, tr] {
    Model& hm = *I.host;
    auto t0 = Clock::now();
    int blocks = 0;
    size_t updated_n = 0;
    for (int l = 0; l < hm.cfg.n_layers; l++) {
      const bool host_side = !I.bdev[size_t(l)] && !I.two_way[size_t(l)];
      blocks += host_side;
      if (host_side)
        for (size_t i = 0; i < hm.params.size(); i++) {
          const Param& p = hm.params[i];
          if (p.block != l || !tr[i]) continue;
          updated_n += p.numel;
          float* w = static_cast<float*>(hm.arena()) + p.offset;
          float* mo = I.host_mom.empty() ? nullptr : I.host_mom.data() + I.host_mom_off[i];
          const float wdp = p.decay ? wd : 0.0f;
          if (!I.use_shadow)
            zo_update(w, mo, p.numel, tid_of(p), 0, terms.data(), int(terms.size()), dist, opt, lr, wdp, beta);
          else if (!update_and_encode(w, mo, p.numel, tid_of(p), terms.data(), int(terms.size()), dist, opt, lr, wdp,
                                      beta, I.wire, I.wire_ptr(i), I.wire_scales(i)))
            I.encode_overflow.store(true);
        }
      std::lock_guard<std::mutex> g(I.umu);
      I.updated_upto = l + 1;
      I.ucv.notify_all();
    }
    std::lock_guard<std::mutex> g(I.umu);
    I.last_update_s = since(t0);
    I.last_host_blocks = blocks;
    I.host_update_s += I.last_update_s;
    I.host_updated_n += updated_n;
    I.updated_upto = 1 << 30;
    I.ucv.notify_all();
  });
  reopen.armed = false;
}

void GpuEngine::download(Model& out) const {
  const Impl& I = *p_;
  ZO_CHECK(out.numel() == I.m.numel() && out.storage == DType::F32, "download: an f32 model of the same layout expected");
  if (I.updater.joinable()) const_cast<Impl&>(I).updater.join();
  ZO_CUDA_CHECK(cudaStreamSynchronize(I.st));
  if (I.up) ZO_CUDA_CHECK(cudaStreamSynchronize(I.up));  // (an aborted pass may still be uploading)
  const_cast<Impl&>(I).flush_pending();  // two-way blocks: every update in the host masters
  for (size_t i = 0; i < I.m.params.size(); i++) {
    const Param& p = I.m.params[i];
    float* dst = static_cast<float*>(out.arena()) + p.offset;
    if (I.pdev[i])
      ZO_CUDA_CHECK(cudaMemcpy(dst, I.pdev[i], sizeof(float) * p.numel, cudaMemcpyDeviceToHost));
    else if (dst != static_cast<const float*>(I.m.arena()) + p.offset)
      std::memcpy(dst, static_cast<const float*>(I.m.arena()) + p.offset, sizeof(float) * p.numel);
  }
}

}  // namespace zo
