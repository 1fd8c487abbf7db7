#include "offload/residency.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/error.h"

namespace zo {

Placement parse_placement(const std::string& s) {
  if (s == "auto") return Placement::Auto;
  if (s == "tail") return Placement::Tail;
  if (s == "spread") return Placement::Spread;
  if (s == "first") return Placement::First;
  fail("--placement '{}': expected auto, tail, spread or first", s);
}

const char* placement_name(Placement p) {
  switch (p) {
    case Placement::Auto: return "auto";
    case Placement::Tail: return "tail";
    case Placement::Spread: return "spread";
    case Placement::First: return "first";
  }
  return "?";
}

ResidencyPlan plan_residency(const Model& m, size_t gpu_mem, size_t reserve, WireDType wire, bool two_way,
                             Placement placement) {
  ResidencyPlan r;
  const int L = m.cfg.n_layers;
  for (const Param& p : m.params)
    if (p.block < 0) r.globals_bytes += p.numel * sizeof(float);
  const size_t block = m.max_block_numel() * sizeof(float);
  for (int l = 0; l < L; l++) {
    size_t g = 0;
    for (const Param& p : m.params)
      if (p.block == l) g += wire_groups(p.numel);
    r.max_groups = std::max(r.max_groups, g);
  }
  const size_t slot = two_way ? std::max<size_t>(wire_size(wire), sizeof(float)) : wire_size(wire);
  r.streaming_bytes = 2 * (m.max_block_numel() * slot + (wire_scaled(wire) ? r.max_groups * 4 : 0)) +
                      (wire == WireDType::F32 ? 0 : block);
  const size_t base = 2 * r.globals_bytes + block;  // globals, their perturbed copy, the working copy
  int resident = L;
  if (gpu_mem > 0) {
    ZO_CHECK(gpu_mem > base + r.streaming_bytes + reserve,
             "--gpu-mem {} MiB is too small: the embeddings/head and their perturbed copy ({} MiB), a working copy "
             "({} MiB), the streaming buffers ({} MiB, wire {}) and activations ({} MiB) need {} MiB",
             gpu_mem >> 20, (2 * r.globals_bytes) >> 20, block >> 20, r.streaming_bytes >> 20, wire_name(wire),
             reserve >> 20, (base + r.streaming_bytes + reserve + (1 << 20) - 1) >> 20);
    size_t left = gpu_mem - base - reserve;
    resident = 0;
    for (int l = 0; l < L; l++) {
      const size_t need = (m.block_end(l) - m.block_begin(l)) * sizeof(float);
      const bool last_fits_all = l == L - 1 && need <= left;
      if (!last_fits_all && need + r.streaming_bytes > left) break;
      left -= need;
      resident++;
    }
  }
  r.resident_blocks = resident;
  r.streamed_blocks = L - resident;
  // S = L - R blocks stream, in the last T blocks (T = min(L, 2S) for Tail, L for Spread); block
  // l >= L - T streams when floor((i + 1) S / T) > floor(i S / T), i = l - (L - T): each at the end
  // of its group, so the last block streams. The host, whose update of the streamed blocks starts
  // only once the step's projected gradient is known, gets the resident blocks before the first
  // streamed one as a head start. (First put block 0 among the streamed: every step began by waiting
  // for its host update and upload, 1.11x the resident step however few blocks streamed by the
  // timing model, bench/step_model.py, which also compares the rules.) Blocks of unequal sizes keep
  // the first R when the chosen set would need more bytes.
  auto bytes_of = [&](int l) { return (m.block_end(l) - m.block_begin(l)) * sizeof(float); };
  const long S = L - resident;
  r.placement = placement != Placement::Auto ? placement : two_way ? Placement::Spread : Placement::Tail;
  const long T = r.placement == Placement::Tail ? std::min<long>(L, 2 * S) : L, b = L - T;
  std::vector<uint8_t> spread(size_t(L), 0), prefix(size_t(L), 0);
  size_t spread_bytes = 0, prefix_bytes = 0;
  for (int l = 0; l < L; l++) {
    const long i = long(l) - b;
    spread[size_t(l)] = r.placement == Placement::First ? (long(l) + 1) * resident / L > long(l) * resident / L
                                                         : i < 0 || !((i + 1) * S / T > i * S / T);
    prefix[size_t(l)] = l < resident;
    spread_bytes += spread[size_t(l)] ? bytes_of(l) : 0;
    prefix_bytes += prefix[size_t(l)] ? bytes_of(l) : 0;
  }
  r.resident = spread_bytes <= prefix_bytes ? spread : prefix;
  r.resident_bytes = r.globals_bytes + std::min(spread_bytes, prefix_bytes);
  r.fixed_bytes = r.globals_bytes + block + (r.streamed_blocks ? r.streaming_bytes : 0);
  return r;
}

double model_pass_seconds(const std::vector<uint8_t>& resident, const PassRates& r, int n_two) {
  constexpr int kMaxSlots = 8;  // (the engine has two; no allocation: auto calls this at every step)
  ZO_CHECK(r.compute.size() == resident.size() && r.slots >= 1 && r.slots <= kMaxSlots,
           "model_pass_seconds: {} compute times for {} blocks, {} slots", r.compute.size(), resident.size(), r.slots);
  double freed[kMaxSlots] = {};  // when each ring slot is free again (streamed block k uses slot k % slots)
  double dev = 0, link = 0, down = 0, host = 0;
  int k = 0;
  for (size_t l = 0; l < resident.size(); l++) {
    if (resident[l]) {
      dev += r.compute[l];
      continue;
    }
    const bool two = k < n_two;
    if (!two) host += r.host;  // the host updates the one-way blocks in pass order from the start
    double& slot = freed[k % r.slots];
    link = std::max({two ? 0.0 : host, link, slot}) + (two ? r.up_two : r.up_one);
    dev = std::max(dev, link) + r.compute[l] + (two ? r.dev_two : 0.0);
    if (two) down = std::max(down, dev) + r.down_two;
    slot = two ? down : dev;
    k++;
  }
  return std::max({dev, down, host});
}

int best_two_way(const std::vector<uint8_t>& resident, const PassRates& r) {
  int S = 0;
  for (uint8_t res : resident) S += res ? 0 : 1;
  double best = model_pass_seconds(resident, r, 0);
  for (int n = 1; n <= S; n++) best = std::min(best, model_pass_seconds(resident, r, n));
  int n = 0;
  while (n < S && model_pass_seconds(resident, r, n) > best * 1.005) n++;
  return n;
}

std::string ResidencyPlan::describe(const Model& m, WireDType wire) const {
  auto mib = [](size_t b) { return double(b) / 1048576.0; };
  std::string s = fmt::format("{} of {} blocks resident ({:.0f} MiB with the globals)", resident_blocks,
                              m.cfg.n_layers, mib(resident_bytes));
  if (streamed_blocks)
    s += fmt::format(", {} streamed from pinned host memory in {} ({:.0f} MiB of streaming buffers; placement {})",
                     streamed_blocks, wire_name(wire), mib(streaming_bytes), placement_name(placement));
  s += fmt::format("; device weights and buffers {:.0f} MiB before activations", mib(device_bytes()));
  return s;
}

}  // namespace zo
