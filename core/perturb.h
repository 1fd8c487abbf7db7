// Bulk perturbation and update kernels over ranges of a parameter (CPU reference).
//
// Every value here is a pure function of (seed, tensor id, element index) and the inputs, computed
// element by element in a fixed order of IEEE operations (this file is compiled with
// -ffp-contract=off): the same range gives the same bits whatever the chunking, the thread count,
// or whether the update is fused into the next step's pass or replayed from the log.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/philox.h"

namespace zo {

using rng::Dist;

// z[i] = Z(seed, tid, begin + i), i < n.
void fill_z(float* z, uint64_t seed, uint64_t tid, size_t begin, size_t n, Dist dist);

// dst[i] = w[i] + scale * Z(seed, tid, begin + i): a perturbed working copy (W + eps z or W - eps z).
void perturb_range(float* dst, const float* w, float scale, uint64_t seed, uint64_t tid, size_t begin, size_t n,
                   Dist dist);

enum class OptKind : uint8_t { SGD = 0, Momentum = 1, Sign = 2 };

// One direction's share of an update: coef = g_d / q.
struct UpdateTerm {
  uint64_t seed;
  float coef;
};

// The ZO-SGD family's update of one parameter range, with G[i] = sum_d coef_d Z(seed_d, tid, begin + i)
// (summed in the order given):
//   SGD       w <- w - lr (G + wd w)
//   Momentum  m <- beta m + G;  w <- w - lr (m + wd w)     (m: the momentum state of the range)
//   Sign      w <- w - lr (sign(G) + wd w)                 (sign(0) = 0)
void zo_update(float* w, float* m, size_t n, uint64_t tid, size_t begin, const UpdateTerm* terms, int q, Dist dist,
               OptKind opt, float lr, float wd, float beta);

// An update still to apply (q = 0: none), in zo_update's terms.
struct PendingUpdate {
  const UpdateTerm* terms = nullptr;
  int q = 0;
  OptKind opt = OptKind::SGD;
  float lr = 0, wd = 0, beta = 0;
};

// The one pass a parameter range gets per step on the CPU: the pending update u applied to w (and
// m) in place, then nv working copies dst[v][i] = w[i] + scale[v] * Z(seed, tid, begin + i) of the
// updated w, piece by piece, so that w is read once and z made once for all copies. The bits are
// those of zo_update followed by perturb_range for each copy.
void update_and_perturb(float* w, float* m, size_t n, uint64_t tid, size_t begin, const PendingUpdate& u,
                        uint64_t seed, Dist dist, float* const* dst, const float* scale, int nv);

}  // namespace zo
