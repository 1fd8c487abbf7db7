#include "zo/spsa.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace zo {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::regex compile(const std::string& re, const char* flag) {
  try {
    return std::regex(re, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    fail("{} '{}': not a valid regular expression ({})", flag, re, e.what());
  }
}

}  // namespace

uint64_t tensor_id_of(const std::string& name) { return rng::fnv1a64(name.data(), name.size()); }

Spsa::Spsa(Model& m, Engine& e, const SpsaOptions& o) : m_(m), e_(e), o_(o) {
  ZO_CHECK(m.storage == DType::F32, "training needs f32 master weights (load with --dtype f32)");
  ZO_CHECK(&e.model() == &m, "Spsa: the engine runs another model");
  ZO_CHECK(o.n_dirs >= 1 && o.n_dirs <= 4096, "--directions {}: expected 1..4096", o.n_dirs);
  ZO_CHECK(std::isfinite(o.eps) && o.eps > 0, "--eps {}: expected a positive number", o.eps);
  std::regex inc = compile(o.params.empty() ? ".*" : o.params, "--params");
  std::regex exc = compile(o.freeze.empty() ? "$^" : o.freeze, "--freeze");
  const size_t P = m.params.size();
  trainable_.resize(P);
  tid_.resize(P);
  pend_left_.assign(P, 0);
  block_params_.resize(size_t(m.cfg.n_layers));
  for (size_t i = 0; i < P; i++) {
    const Param& p = m.params[i];
    trainable_[i] = std::regex_search(p.name, inc) && !std::regex_search(p.name, exc);
    tid_[i] = tensor_id_of(p.name);
    if (p.block < 0)
      globals_.push_back(i);
    else
      block_params_[size_t(p.block)].push_back(i);
  }
  ZO_CHECK(n_trainable() > 0, "no parameter matches --params '{}' without matching --freeze '{}'", o.params, o.freeze);
  wbuf_.resize(m.max_block_numel());
  wbuf2_.resize(m.max_block_numel());
}

size_t Spsa::n_trainable() const {
  size_t n = 0;
  for (size_t i = 0; i < trainable_.size(); i++)
    if (trainable_[i]) n += m_.params[i].numel;
  return n;
}

float* Spsa::master(size_t i) { return static_cast<float*>(m_.arena()) + m_.params[i].offset; }

void Spsa::apply_pending(size_t i) {
  if (!pend_left_[i]) return;
  auto t0 = Clock::now();
  const Param& p = m_.params[i];
  zo_update(master(i), mom_.empty() ? nullptr : mom_.data() + p.offset, p.numel, tid_[i], 0, pend_terms_.data(),
            int(pend_terms_.size()), o_.dist, o_.opt, pend_lr_, p.decay ? o_.wd : 0.0f, o_.momentum);
  pend_left_[i] = 0;
  times_.update += since(t0);
}

void Spsa::set_pending(const StepRecord& r) {
  for (uint8_t left : pend_left_) ZO_CHECK(!left, "Spsa: an update is still pending (flush first)");
  if (r.skipped()) return;
  const float q = float(r.g.size());
  pend_terms_.clear();
  for (size_t d = 0; d < r.g.size(); d++) pend_terms_.push_back({r.seeds[d], r.g[d] / q});
  pend_lr_ = r.lr;
  if (dev_) {  // applied on the device now, in stream order after the step that made it
    auto t0 = Clock::now();
    dev_->update(pend_terms_, o_.dist, o_.opt, pend_lr_, o_.wd, o_.momentum, trainable_);
    times_.update += since(t0);
    return;
  }
  if (o_.opt == OptKind::Momentum && mom_.empty()) mom_.assign(m_.numel(), 0.0f);  // made at the first update
  for (size_t i = 0; i < trainable_.size(); i++) pend_left_[i] = trainable_[i];
}

void Spsa::set_device(StepDevice* d) {
  ZO_CHECK(mom_.empty(), "Spsa::set_device: momentum state already on the CPU would be lost (set the device first)");
  flush();
  dev_ = d;
}

void Spsa::flush() {
  if (dev_) {
    dev_->sync_host(m_);
    return;
  }
  for (size_t i : globals_) apply_pending(i);
  for (size_t l = 0; l < block_params_.size(); l++) {
    bool dirty = false;
    for (size_t i : block_params_[l]) {
      dirty = dirty || pend_left_[i];
      apply_pending(i);
    }
    if (dirty) m_.release_block(int(l), true);  // disk tier: block by block, never all of them
  }
}

void Spsa::apply(const StepRecord& r) {
  if (dev_) {  // the device applies it at once; the host masters follow at the next flush
    set_pending(r);
    return;
  }
  flush();
  set_pending(r);
  flush();
}

std::vector<double> Spsa::losses(const std::vector<uint64_t>& seeds, const std::vector<int>& dir,
                                 const std::vector<float>& scale, const LossPlan& plan) {
  ZO_CHECK(dir.size() == scale.size() && !dir.empty(), "Spsa::losses: {} directions for {} scales", dir.size(),
           scale.size());
  const ModelConfig& c = m_.cfg;
  const Batch& b = plan.batch;
  const size_t S = dir.size(), N = size_t(b.n_tokens());
  if (dev_) {
    auto t0 = Clock::now();
    auto lp = dev_->versions(b, plan.keep.empty() ? nullptr : &plan.keep, plan.rows, plan.ids, seeds, dir, scale, o_.dist, trainable_);
    times_.forward += since(t0);
    std::vector<double> out(S);
    for (size_t k = 0; k < S; k++) out[k] = plan.loss(lp[k]);
    return out;
  }
  for (size_t i : globals_) apply_pending(i);
  auto version_of = [&](size_t k) { return (dir[k] < 0 || scale[k] == 0.0f) ? -1 : dir[k]; };

  // The globals of version k, made on the fly (embedding rows, head slabs, norms).
  std::vector<GlobalFill> fills(S);
  for (size_t k = 0; k < S; k++) {
    int d = version_of(k);
    uint64_t seed = d < 0 ? 0 : seeds[size_t(d)];
    float sc = scale[k];
    fills[k] = [this, d, seed, sc](const Param& p, size_t begin, size_t n, float* dst) {
      size_t i = size_t(&p - m_.params.data());
      const float* w = master(i) + begin;
      if (d < 0 || !trainable_[i])
        std::memcpy(dst, w, n * sizeof(float));
      else
        perturb_range(dst, w, sc, seed, tid_[i], begin, n, o_.dist);
    };
  }
  streams_.resize(std::max(streams_.size(), S));
  auto t0 = Clock::now();
  for (size_t k = 0; k < S; k++) {
    streams_[k].resize(std::max(streams_[k].size(), N * size_t(c.hidden)));
    e_.set_global_fill(&fills[k]);
    e_.embed(b, streams_[k].data());
  }
  e_.set_global_fill(nullptr);
  times_.forward += since(t0);

  std::vector<uint8_t> done(S);
  for (int l = 0; l < c.n_layers; l++) {
    const auto& ps = block_params_[size_t(l)];
    m_.prefetch_block(l + 1);  // disk tier: the next block is read while this one computes
    bool dirty = false;
    for (size_t i : ps) dirty = dirty || pend_left_[i];
    const size_t bb = m_.block_begin(l);
    const float* wm = static_cast<const float*>(m_.arena()) + bb;
    bool any = false;
    for (size_t i : ps) any = any || trainable_[i];
    auto run = [&](size_t k, const float* wbase) {
      auto t1 = Clock::now();
      BlockView v = m_.block_view_at(l, wbase);
      if (!plan.keep.empty() && l == c.n_layers - 1)
        e_.block_rows(v, b, streams_[k].data(), plan.keep);
      else
        e_.block(l, v, b, streams_[k].data());
      times_.forward += since(t1);
    };
    // Each direction's versions, two at a time, in one pass per parameter that also applies the
    // parameter's pending update (the first pass); the masters' versions after them (one-sided
    // SPSA), so that the update is fused there too. Each stream is independent of the others, so
    // the order changes no result.
    std::fill(done.begin(), done.end(), 0);
    for (size_t kk = 0; kk < 2 * S; kk++) {
      const size_t k = kk % S;
      if (done[k]) continue;
      int d = version_of(k);
      const bool masters = d < 0 || !any;
      if (masters != (kk >= S)) continue;
      if (masters) {
        for (size_t i : ps) apply_pending(i);
        run(k, wm);
        done[k] = 1;
        continue;
      }
      size_t ks[2] = {k, k};
      int nv = 1;
      for (size_t k2 = k + 1; k2 < S && nv < 2; k2++)
        if (!done[k2] && version_of(k2) == d) ks[nv++] = k2;
      float* bufs[2] = {wbuf_.data(), wbuf2_.data()};
      const float sc[2] = {scale[ks[0]], scale[ks[1]]};
      auto t1 = Clock::now();
      for (size_t i : ps) {
        const Param& p = m_.params[i];
        const size_t off = p.offset - bb;
        float* dst[2] = {bufs[0] + off, bufs[1] + off};
        if (!trainable_[i]) {
          for (int v = 0; v < nv; v++) std::memcpy(dst[v], master(i), p.numel * sizeof(float));
          continue;
        }
        PendingUpdate u;
        if (pend_left_[i]) {
          u = {pend_terms_.data(), int(pend_terms_.size()), o_.opt, pend_lr_, p.decay ? o_.wd : 0.0f, o_.momentum};
          pend_left_[i] = 0;
        }
        update_and_perturb(master(i), mom_.empty() ? nullptr : mom_.data() + p.offset, p.numel, tid_[i], 0, u,
                           seeds[size_t(d)], o_.dist, dst, sc, nv);
      }
      times_.perturb += since(t1);
      for (int v = 0; v < nv; v++) {
        run(ks[v], bufs[v]);
        done[ks[v]] = 1;
      }
    }
    m_.release_block(l, dirty);
  }

  std::vector<double> out(S);
  auto t3 = Clock::now();
  for (size_t k = 0; k < S; k++) {
    e_.set_global_fill(&fills[k]);
    out[k] = plan.loss(plan.row_shift_invariant ? e_.target_logits(streams_[k].data(), plan.rows, plan.ids)
                                                : e_.target_logprobs(streams_[k].data(), plan.rows, plan.ids));
  }
  e_.set_global_fill(nullptr);
  times_.head += since(t3);
  return out;
}

StepRecord Spsa::step(uint64_t step, const std::vector<uint64_t>& seeds, float lr, const LossPlan& plan) {
  ZO_CHECK(int(seeds.size()) == o_.n_dirs, "Spsa::step: {} seeds for {} directions", seeds.size(), o_.n_dirs);
  const int q = o_.n_dirs;
  std::vector<int> dir;
  std::vector<float> scale;
  if (o_.one_sided) {
    dir.push_back(-1);
    scale.push_back(0.0f);
  }
  for (int d = 0; d < q; d++) {
    dir.push_back(d);
    scale.push_back(o_.eps);
    if (!o_.one_sided) {
      dir.push_back(d);
      scale.push_back(-o_.eps);
    }
  }
  std::vector<double> L = losses(seeds, dir, scale, plan);
  StepRecord r;
  r.step = step;
  r.lr = lr;
  r.seeds = seeds;
  r.g.resize(size_t(q));
  bool finite = true;
  for (double v : L) finite = finite && std::isfinite(v);
  double sa = 0, sb = 0;
  for (int d = 0; d < q; d++) {
    double a, bl;
    if (o_.one_sided) {
      a = L[size_t(1 + d)];
      bl = L[0];
      r.g[size_t(d)] = float((a - bl) / double(o_.eps));
    } else {
      a = L[size_t(2 * d)];
      bl = L[size_t(2 * d + 1)];
      r.g[size_t(d)] = float((a - bl) / (2.0 * double(o_.eps)));
    }
    sa += a;
    sb += bl;
    finite = finite && std::isfinite(r.g[size_t(d)]);
  }
  r.loss_a = sa / q;
  r.loss_b = sb / q;
  if (!finite) {
    r.flags |= StepRecord::kSkipped;
    for (float& g : r.g) g = 0.0f;
  }
  return r;
}

}  // namespace zo
