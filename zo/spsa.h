// The zeroth-order step on a block-wise dual forward (MeZO's SPSA, n-SPSA, one-sided SPSA).
//
// For each block, the working copies W + eps z and W - eps z are formed from the masters in two
// buffers, every perturbed hidden stream of the step passes through the block, and the buffers are
// reused for the next block: the masters are never perturbed in place (so +eps and -eps never
// drift) and each block's weights are read once per direction. The update of step t is "pending" until
// the pass of step t+1 reaches each parameter, where it is applied in the same pass that makes the
// parameter's working copies (update_and_perturb: the same element-wise arithmetic as a separate
// pass, so the bits are the same); flush() applies it everywhere (before an evaluation, a save or
// an exit).
#pragma once
#include <cstdint>
#include <functional>
#include <regex>
#include <string>
#include <vector>

#include "core/perturb.h"
#include "models/forward.h"
#include "zo/device.h"
#include "zo/steplog.h"

namespace zo {

struct SpsaOptions {
  float eps = 1e-3f;
  int n_dirs = 1;            // q: directions per step (n-SPSA); the update averages them
  bool one_sided = false;    // g = (L(W + eps z) - L(W)) / eps instead of the central difference
  Dist dist = Dist::Gaussian;
  OptKind opt = OptKind::SGD;
  float wd = 0;              // weight decay (not for biases and norms)
  float momentum = 0.9f;     // OptKind::Momentum only
  std::string params = "";   // regex over parameter names: those that move ("" = all)
  std::string freeze = "";   // regex: parameters that never move (applied after `params`)
};

// What a step evaluates: a packed batch, the rows/targets the heads read, and the loss from the
// targets' log-probabilities.
struct LossPlan {
  Batch batch;
  std::vector<int32_t> keep;   // keep_from for the last block (empty: all rows)
  std::vector<int32_t> rows, ids;
  std::function<double(const std::vector<double>& logprobs)> loss;
  // loss is unchanged when a constant is added to every value read at one row (every target of a row
  // is a candidate for the same position: cross-entropy or accuracy over single-token candidates).
  // It is then given the targets' logits (Engine::target_logits), not their log-probabilities: the
  // log-sum-exp over the vocabulary cancels, so a perturbed head is made for the targets' rows only.
  bool row_shift_invariant = false;
};

// Timings of the work of the steps so far (seconds).
struct StepTimes {
  double perturb = 0;  // blocks: the pass that applies the pending update and makes z and the working copies
  double update = 0;   // updates applied in passes of their own (globals, flushes, replay, a device's)
  double forward = 0;  // embeddings and blocks
  double head = 0;     // final norm, head, log-probabilities (incl. perturbing the head slabs)
};

class Spsa {
 public:
  // m must hold f32 masters. The engine must be built on m.
  Spsa(Model& m, Engine& e, const SpsaOptions& o);

  // One step: losses of the perturbed models for the given direction seeds, the projected
  // gradients, and the record to log. The update becomes pending (use set_pending or flush).
  StepRecord step(uint64_t step, const std::vector<uint64_t>& seeds, float lr, const LossPlan& plan);
  // Makes r's update the pending one (skipped records: nothing).
  void set_pending(const StepRecord& r);
  // Applies the pending update to every parameter now (with a device: brings the host masters up to
  // date with the device's weights).
  void flush();
  // Runs the steps' forwards and updates on d from now on (null: the CPU). The device must have
  // been built on this model after any replay; it applies each update as set_pending is called.
  void set_device(StepDevice* d);
  StepDevice* device() const { return dev_; }
  // Replay: applies a logged update immediately (flushes what was pending first).
  void apply(const StepRecord& r);

  // Losses of explicit versions: version k uses direction dir[k] scaled by scale[k] (scale 0 or
  // dir -1: the masters), all through one block-wise pass. The pending update is applied first.
  std::vector<double> losses(const std::vector<uint64_t>& seeds, const std::vector<int>& dir,
                             const std::vector<float>& scale, const LossPlan& plan);

  bool trainable(size_t param_index) const { return trainable_[param_index]; }
  size_t n_trainable() const;  // elements that move
  // Host memory of the momentum state (made at the first update; none when a device keeps it).
  size_t momentum_bytes() const { return o_.opt == OptKind::Momentum && !dev_ ? m_.numel() * sizeof(float) : 0; }
  const StepTimes& times() const { return times_; }
  const SpsaOptions& options() const { return o_; }
  uint64_t tensor_id(size_t param_index) const { return tid_[param_index]; }

 private:
  void apply_pending(size_t param_index);
  float* master(size_t param_index);

  Model& m_;
  Engine& e_;
  SpsaOptions o_;
  std::vector<uint8_t> trainable_;
  std::vector<uint64_t> tid_;
  std::vector<size_t> globals_;                  // parameter indices with block == -1
  std::vector<std::vector<size_t>> block_params_;  // per block
  std::vector<float> mom_;                       // momentum state (OptKind::Momentum), arena layout
  std::vector<float> wbuf_, wbuf2_;              // one block's two working copies (W + eps z, W - eps z)
  std::vector<std::vector<float>> streams_;      // hidden states of each version [N, C]
  // The pending update.
  std::vector<UpdateTerm> pend_terms_;
  float pend_lr_ = 0;
  std::vector<uint8_t> pend_left_;               // per parameter: update still to apply
  StepTimes times_;
  StepDevice* dev_ = nullptr;
};

// The parameter's tensor id: FNV-1a 64 of its name (core/philox.h).
uint64_t tensor_id_of(const std::string& name);

}  // namespace zo
