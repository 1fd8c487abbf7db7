// The zeroth-order step against independent oracles:
//   - the block-wise dual forward gives bitwise the losses of plain forwards over explicitly
//     perturbed copies of the weights;
//   - the projected gradient g matches grad(L).z with grad(L) from PyTorch autograd in float64
//     (tests/data/grad, tools/gen_grad_fixtures.py, itself checked by finite differences);
//   - the average of g z over many directions approaches grad(L) (in a small parameter subset);
//   - replaying the logged steps over the base reproduces the fused run bit for bit;
//   - a tiny task's loss goes down; non-finite losses skip the step.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/perturb.h"
#include "models/load.h"
#include "models/safetensors.h"
#include "zo/objective.h"
#include "zo/spsa.h"
#include "zo/task.h"
#include "zo/train.h"

using namespace zo;

namespace {

std::string data(const std::string& p) { return std::string(ZO_TEST_DATA) + "/" + p; }
Model tiny(const std::string& v) { return load_model(data("models/" + v)); }

std::vector<std::vector<int32_t>> split(const std::vector<int64_t>& ids, const std::vector<int64_t>& lens) {
  std::vector<std::vector<int32_t>> out;
  size_t k = 0;
  for (int64_t L : lens) {
    out.emplace_back();
    for (int64_t i = 0; i < L; i++) out.back().push_back(int32_t(ids[k++]));
  }
  return out;
}

LossPlan lm_plan(const std::vector<std::vector<int32_t>>& seqs) { return lm_loss_plan(seqs); }

// Classification: mean cross-entropy over the candidates' mean log-probs (MeZO's loss).
LossPlan cls_plan(const std::vector<std::vector<int32_t>>& prompts, const std::vector<std::vector<int32_t>>& cands,
                  const std::vector<int>& labels) {
  std::vector<const std::vector<int32_t>*> ps;
  for (auto& p : prompts) ps.push_back(&p);
  return classification_loss_plan(ps, labels, cands);  // the plan copies the prompts' tokens
}

double plain_loss(const Model& m, const LossPlan& p) {
  Engine e(m);
  e.forward(p.batch, nullptr, p.keep.empty() ? nullptr : &p.keep);
  return p.loss(p.row_shift_invariant ? e.target_logits(e.hidden(), p.rows, p.ids)
                                       : e.target_logprobs(e.hidden(), p.rows, p.ids));
}

// W <- W + scale * z(seed) for every parameter (the explicit, in-place MeZO way).
void perturb_all(Model& m, uint64_t seed, float scale) {
  for (const Param& p : m.params) {
    float* w = static_cast<float*>(m.arena()) + p.offset;
    perturb_range(w, w, scale, seed, tensor_id_of(p.name), 0, p.numel, Dist::Gaussian);
  }
}

struct GradFixture {
  std::vector<std::vector<int32_t>> seqs, prompts;
  std::vector<std::vector<int32_t>> cands;
  std::vector<int> labels;
  double loss = 0, cls_loss = 0, fd_eps = 0;
  std::vector<int64_t> fd_seeds;
  std::vector<double> fd_lm, fd_cls;
  std::map<std::string, std::vector<double>> grad, cls_grad;
};

std::vector<double> to_f64(const StTensor& t) {
  size_t n = t.nbytes / dtype_size(t.dtype);
  std::vector<double> out(n);
  if (t.dtype == DType::F64) {
    std::memcpy(out.data(), t.data, t.nbytes);
  } else {
    std::vector<float> f(n);
    convert_to_f32(t.dtype, t.data, f.data(), n);
    for (size_t i = 0; i < n; i++) out[i] = f[i];
  }
  return out;
}
std::vector<int64_t> to_i64(const StTensor& t) {
  EXPECT_EQ(t.dtype, DType::I64);
  std::vector<int64_t> v(t.nbytes / 8);
  std::memcpy(v.data(), t.data, t.nbytes);
  return v;
}

GradFixture grad_fixture(const std::string& variant) {
  auto f = SafetensorsFile::open(data("grad/" + variant + ".safetensors"));
  GradFixture g;
  g.seqs = split(to_i64(*f.find("ids")), to_i64(*f.find("lens")));
  g.prompts = split(to_i64(*f.find("cls_prompts")), to_i64(*f.find("cls_lens")));
  for (int64_t c : to_i64(*f.find("cls_cands"))) g.cands.push_back({int32_t(c)});
  for (int64_t l : to_i64(*f.find("cls_labels"))) g.labels.push_back(int(l));
  g.loss = to_f64(*f.find("loss"))[0];
  g.cls_loss = to_f64(*f.find("cls_loss"))[0];
  g.fd_seeds = to_i64(*f.find("fd_seeds"));
  g.fd_eps = to_f64(*f.find("fd_eps"))[0];
  g.fd_lm = to_f64(*f.find("fd_lm"));
  g.fd_cls = to_f64(*f.find("fd_cls"));
  for (auto& t : f.tensors()) {
    if (t.name.rfind("grad.", 0) == 0) g.grad[t.name.substr(5)] = to_f64(t);
    if (t.name.rfind("cls_grad.", 0) == 0) g.cls_grad[t.name.substr(9)] = to_f64(t);
  }
  return g;
}

// grad . z(seed) over the parameters the optimizer moves.
double directional(const Model& m, const Spsa& s, const std::map<std::string, std::vector<double>>& grad,
                   uint64_t seed, double* grad_norm) {
  double dot = 0, nn = 0;
  for (size_t i = 0; i < m.params.size(); i++) {
    if (!s.trainable(i)) continue;
    const Param& p = m.params[i];
    auto it = grad.find(p.name);
    EXPECT_NE(it, grad.end()) << "no gradient for " << p.name;
    if (it == grad.end()) continue;
    EXPECT_EQ(it->second.size(), p.numel) << p.name;
    std::vector<float> z(p.numel);
    fill_z(z.data(), seed, tensor_id_of(p.name), 0, p.numel, Dist::Gaussian);
    for (size_t k = 0; k < p.numel; k++) {
      dot += it->second[k] * double(z[k]);
      nn += it->second[k] * it->second[k];
    }
  }
  if (grad_norm) *grad_norm = std::sqrt(nn);
  return dot;
}

}  // namespace

class DualForward : public ::testing::TestWithParam<std::string> {};

// The +eps / -eps / master streams through each block give exactly the losses of plain forwards
// over W + eps z, W - eps z and W: same arithmetic, bit for bit.
TEST_P(DualForward, BitwiseEqualToExplicitlyPerturbedCopies) {
  Model m = tiny(GetParam());
  Engine e(m);
  Spsa s(m, e, SpsaOptions{});
  const float eps = 1e-2f;
  const uint64_t seed = 1234567;
  std::vector<std::vector<int32_t>> seqs = {{5, 17, 99, 3, 8, 201, 44}, {9, 9, 10, 11}, {100, 2, 3, 4, 5, 6, 7, 8, 9}};
  // kind 2: single-token candidates, whose loss reads the perturbed head at the candidates' rows only.
  for (int kind = 0; kind < 3; kind++) {
    LossPlan plan = kind == 0   ? lm_plan(seqs)
                    : kind == 1 ? cls_plan(seqs, {{3}, {7, 8}}, {1, 0, 1})
                                : cls_plan(seqs, {{3}, {7}, {150}}, {1, 0, 2});
    EXPECT_EQ(plan.row_shift_invariant, kind == 2);
    auto L = s.losses({seed}, {0, 0, -1}, {eps, -eps, 0.0f}, plan);
    Model mp = tiny(GetParam()), mm = tiny(GetParam());
    perturb_all(mp, seed, eps);
    perturb_all(mm, seed, -eps);
    EXPECT_EQ(L[0], plain_loss(mp, plan)) << "kind " << kind;
    EXPECT_EQ(L[1], plain_loss(mm, plan)) << "kind " << kind;
    EXPECT_EQ(L[2], plain_loss(m, plan)) << "kind " << kind;
    EXPECT_NE(L[0], L[1]);
  }
}
INSTANTIATE_TEST_SUITE_P(Tiny, DualForward, ::testing::Values("opt_pre_ln", "opt_post_ln", "llama_gqa", "qwen2_bias"));

class Gradient : public ::testing::TestWithParam<std::string> {};

// g = (L(W + eps z) - L(W - eps z)) / 2 eps, in f32, against the same central difference in float64
// by PyTorch along the same directions (re-made by tools/zo_philox.py), and against autograd's
// grad(L).z: close where the loss is near-linear at eps (LLaMA); OPT's tiny LayerNorm'd
// embeddings are strongly curved at eps = 1e-3, so there only the central difference is the target.
TEST_P(Gradient, ProjectedGradientMatchesFloat64CentralDifferences) {
  GradFixture fx = grad_fixture(GetParam());
  Model m = tiny(GetParam());
  Engine e(m);
  SpsaOptions o;
  o.eps = float(fx.fd_eps);
  // f32(1e-3) differs from the fixture's f64 1e-3 by 5e-11 relative: far below the tolerance.
  Spsa s(m, e, o);
  for (int kind = 0; kind < 2; kind++) {
    LossPlan plan = kind == 0 ? lm_plan(fx.seqs) : cls_plan(fx.prompts, fx.cands, fx.labels);
    double L0 = plain_loss(m, plan);
    EXPECT_NEAR(L0, kind == 0 ? fx.loss : fx.cls_loss, 2e-5 * std::max(1.0, L0)) << "the f32 loss vs float64 torch";
    for (size_t k = 0; k < fx.fd_seeds.size(); k++) {
      uint64_t seed = uint64_t(fx.fd_seeds[k]);
      double fd = kind == 0 ? fx.fd_lm[k] : fx.fd_cls[k];
      StepRecord r = s.step(seed, {seed}, 0.0f, plan);
      EXPECT_NEAR(r.g[0], fd, 3e-3 + 1e-3 * std::fabs(fd)) << "kind " << kind << " seed " << seed;
      if (GetParam() == "llama_gqa") {
        double gnorm = 0, want = directional(m, s, kind == 0 ? fx.grad : fx.cls_grad, seed, &gnorm);
        EXPECT_NEAR(r.g[0], want, 0.01 * gnorm + 2e-3) << "kind " << kind << " seed " << seed << " |grad| " << gnorm;
      }
    }
  }
}

// E[g z] = grad(L): the average over many directions approaches the autograd gradient. Restricted
// to the final norm weights (--params) so that a few thousand directions suffice.
TEST_P(Gradient, AverageOfGTimesZApproachesTheGradient) {
  GradFixture fx = grad_fixture(GetParam());
  Model m = tiny(GetParam());
  Engine e(m);
  SpsaOptions o;
  o.eps = 1e-3f;
  o.params = "^model\\.decoder\\.final_layer_norm\\.weight$|^model\\.norm\\.weight$";
  Spsa s(m, e, o);
  const Param* p = nullptr;
  for (size_t i = 0; i < m.params.size(); i++)
    if (s.trainable(i)) p = &m.params[i];
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(s.n_trainable(), p->numel);
  const auto& G = fx.grad.at(p->name);
  LossPlan plan = lm_plan(fx.seqs);
  const int n = 2000;
  std::vector<double> avg(p->numel, 0.0);
  std::vector<float> z(p->numel);
  for (int k = 0; k < n; k++) {
    uint64_t seed = 1000 + uint64_t(k);
    StepRecord r = s.step(uint64_t(k), {seed}, 0.0f, plan);
    fill_z(z.data(), seed, tensor_id_of(p->name), 0, p->numel, Dist::Gaussian);
    for (size_t i = 0; i < p->numel; i++) avg[i] += double(r.g[0]) * z[i] / n;
  }
  double dot = 0, na = 0, ng = 0;
  for (size_t i = 0; i < p->numel; i++) dot += avg[i] * G[i], na += avg[i] * avg[i], ng += G[i] * G[i];
  double cos = dot / std::sqrt(na * ng);
  // Relative error of the mean is about sqrt(d / n): 0.18 for d = 64.
  EXPECT_GT(cos, 0.95) << p->name << " d=" << p->numel;
  EXPECT_NEAR(std::sqrt(na / ng), 1.0, 0.2);
}
INSTANTIATE_TEST_SUITE_P(Tiny, Gradient, ::testing::Values("opt_pre_ln", "llama_gqa"));

// Fused updates (applied during the next step's pass) and replay (applied one record at a time
// over a freshly loaded base) give the same bits, for every optimizer.
TEST(Spsa, ReplayReproducesTheFusedRunBitwise) {
  struct Case {
    OptKind opt;
    int q;
    bool one_sided;
    float wd;
  };
  for (Case c : {Case{OptKind::SGD, 1, false, 0.0f}, Case{OptKind::Momentum, 2, false, 0.01f},
                 Case{OptKind::Sign, 1, true, 0.0f}, Case{OptKind::SGD, 3, true, 0.1f}}) {
    SpsaOptions o;
    o.eps = 1e-2f;
    o.n_dirs = c.q;
    o.one_sided = c.one_sided;
    o.opt = c.opt;
    o.wd = c.wd;
    o.freeze = "embed";
    Model m = tiny("llama_gqa");
    Engine e(m);
    Spsa s(m, e, o);
    LossPlan plan = cls_plan({{1, 2, 3, 4}, {5, 6, 7}}, {{10}, {11}}, {0, 1});
    std::vector<StepRecord> log;
    for (uint64_t t = 0; t < 6; t++) {
      std::vector<uint64_t> seeds;
      for (int d = 0; d < c.q; d++) seeds.push_back(rng::direction_seed(7, t, uint32_t(d)));
      StepRecord r = s.step(t, seeds, 1e-3f, plan);
      s.set_pending(r);
      log.push_back(r);
    }
    s.flush();
    Model b = tiny("llama_gqa");
    Engine eb(b);
    Spsa sb(b, eb, o);
    for (auto& r : log) {
      // The fused run's losses saw the weights the log gives: recomputed on the replayed weights,
      // with nothing pending (every update applied in a pass of its own), they are the same bits.
      StepRecord again = sb.step(r.step, r.seeds, r.lr, plan);
      EXPECT_EQ(again.loss_a, r.loss_a) << "optimizer " << int(c.opt) << " q " << c.q << " step " << r.step;
      EXPECT_EQ(again.loss_b, r.loss_b) << "optimizer " << int(c.opt) << " q " << c.q << " step " << r.step;
      EXPECT_EQ(again.g, r.g);
      sb.apply(r);
    }
    EXPECT_EQ(std::memcmp(m.arena(), b.arena(), m.bytes()), 0) << "optimizer " << int(c.opt) << " q " << c.q;
    Model base = tiny("llama_gqa");
    EXPECT_NE(std::memcmp(m.arena(), base.arena(), m.bytes()), 0) << "the run did not move the weights";
    // Frozen parameters did not move.
    const Param* emb = m.find("model.embed_tokens.weight");
    ASSERT_NE(emb, nullptr);
    EXPECT_EQ(std::memcmp(static_cast<float*>(m.arena()) + emb->offset, static_cast<float*>(base.arena()) + emb->offset,
                          emb->numel * 4),
              0);
  }
}

TEST(Spsa, NonFiniteLossSkipsTheStep) {
  Model m = tiny("opt_pre_ln");
  Engine e(m);
  Spsa s(m, e, SpsaOptions{});
  LossPlan plan = lm_plan({{1, 2, 3, 4, 5}});
  auto inner = plan.loss;
  plan.loss = [inner](const std::vector<double>& lp) { return inner(lp) > 0 ? std::nan("") : 0.0; };
  StepRecord r = s.step(0, {42}, 1.0f, plan);
  EXPECT_TRUE(r.skipped());
  s.set_pending(r);
  s.flush();
  Model base = tiny("opt_pre_ln");
  EXPECT_EQ(std::memcmp(m.arena(), base.arena(), m.bytes()), 0);
}

// A tiny task: make the model prefer one continuation. The loss must fall well below its start.
// Single-token candidates: cross-entropy and accuracy read logits (the row's log-sum-exp cancels),
// and give the values of the same loss over log-probabilities, the path checked against transformers
// (test_forward_parity); nll and multi-token candidates keep the log-probabilities.
TEST(Objective, SingleTokenCandidatesReadLogitsForTheSameLoss) {
  for (const char* variant : {"opt_pre_ln", "llama_gqa", "qwen2_bias"}) {
    Model m = tiny(variant);
    Engine e(m);
    std::vector<std::vector<int32_t>> prompts = {{5, 17, 99, 3, 8}, {9, 9, 10, 11}, {100, 2, 3, 4, 5, 6}};
    std::vector<const std::vector<int32_t>*> ps;
    for (auto& p : prompts) ps.push_back(&p);
    for (const char* obj : {"ce", "accuracy", "nll"}) {
      for (int multi = 0; multi < 2; multi++) {
        auto cands = multi ? std::vector<std::vector<int32_t>>{{3}, {7, 8}} : std::vector<std::vector<int32_t>>{{3}, {7}};
        LossPlan p = classification_loss_plan(ps, {1, 0, 1}, cands, obj);
        EXPECT_EQ(p.row_shift_invariant, !multi && std::string(obj) != "nll") << variant << " " << obj << " " << multi;
        e.forward(p.batch, nullptr, &p.keep);
        const auto lp = e.target_logprobs(e.hidden(), p.rows, p.ids);
        const double want = p.loss(lp);
        if (!p.row_shift_invariant) continue;
        const auto lg = e.target_logits(e.hidden(), p.rows, p.ids);
        EXPECT_NEAR(p.loss(lg), want, 1e-6 * (1 + std::fabs(want))) << variant << " " << obj;
        for (size_t i = 0; i < lp.size(); i++) EXPECT_GT(lg[i], lp[i]) << "logits, not log-probabilities";
      }
    }
  }
}

TEST(Spsa, TinyTaskConverges) {
  Model m = tiny("llama_gqa");
  Engine e(m);
  SpsaOptions o;
  o.eps = 1e-2f;
  o.n_dirs = 4;
  Spsa s(m, e, o);
  std::vector<std::vector<int32_t>> prompts = {{1, 2, 3}, {4, 5, 6, 7}, {8, 9}, {10, 11, 12}};
  LossPlan plan = cls_plan(prompts, {{20}, {30}}, {0, 1, 0, 1});
  double start = plain_loss(m, plan);
  for (uint64_t t = 0; t < 150; t++) {
    std::vector<uint64_t> seeds;
    for (int d = 0; d < 4; d++) seeds.push_back(rng::direction_seed(3, t, uint32_t(d)));
    s.set_pending(s.step(t, seeds, 2e-3f, plan));
  }
  s.flush();
  double end = plain_loss(m, plan);
  EXPECT_LT(end, 0.5 * start) << "start " << start << " end " << end;
}

TEST(Schedule, MatchesTheClosedForms) {
  TrainConfig c;
  c.lr = 1e-3;
  c.steps = 110;
  c.warmup = 10;
  EXPECT_DOUBLE_EQ(lr_at(c, 0), 1e-4);
  EXPECT_DOUBLE_EQ(lr_at(c, 9), 1e-3);
  EXPECT_DOUBLE_EQ(lr_at(c, 60), 1e-3);
  c.schedule = "linear";
  EXPECT_NEAR(lr_at(c, 60), 0.5e-3, 1e-15);
  EXPECT_NEAR(lr_at(c, 110), 0.0, 1e-15);
  c.schedule = "cosine";
  EXPECT_NEAR(lr_at(c, 10), 1e-3, 1e-15);
  EXPECT_NEAR(lr_at(c, 60), 0.5e-3, 1e-15);
  EXPECT_NEAR(lr_at(c, 35), 1e-3 * 0.5 * (1 + std::cos(M_PI * 0.25)), 1e-15);
}
