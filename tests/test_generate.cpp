// Sampling with temperature: the distribution of sampled first tokens must follow
// softmax(logits / T) where the logits are transformers' own (fixture), within sampling error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "models/forward.h"
#include "models/load.h"
#include "models/safetensors.h"

namespace zo {
namespace {

TEST(Sampling, FirstTokenFollowsSoftmaxOfTransformersLogits) {
  const std::string dir = std::string(ZO_TEST_DATA) + "/models/llama_gqa";
  Model m = load_model(dir);
  Engine e(m);
  SafetensorsFile ref = SafetensorsFile::open(dir + "/ref.safetensors");
  const StTensor& it = *ref.find("input_ids");
  const int T = int(it.shape[1]), V = m.cfg.vocab_size;
  std::vector<int64_t> ids64(static_cast<size_t>(T));
  std::memcpy(ids64.data(), it.data, sizeof(int64_t) * T);  // row 0 has no padding
  std::vector<float> logits(size_t(T) * V);
  std::memcpy(logits.data(), ref.find("logits")->data, logits.size() * 4);
  std::vector<int32_t> prompt(ids64.begin(), ids64.end());

  const double temp = 0.7;
  std::vector<double> p(static_cast<size_t>(V));
  double mx = -1e300, z = 0;
  for (int v = 0; v < V; v++) mx = std::max(mx, double(logits[size_t(T - 1) * V + v]) / temp);
  for (int v = 0; v < V; v++) z += p[size_t(v)] = std::exp(double(logits[size_t(T - 1) * V + v]) / temp - mx);
  for (auto& x : p) x /= z;

  const int N = 3000;
  std::vector<int> count(static_cast<size_t>(V), 0);
  GenerateOptions o;
  o.max_new_tokens = 1;
  o.temperature = float(temp);
  for (int s = 0; s < N; s++) {
    o.seed = uint64_t(s) * 7919 + 1;
    count[size_t(generate(e, prompt, o)[0])]++;
  }
  double tv = 0;
  for (int v = 0; v < V; v++) {
    double f = double(count[size_t(v)]) / N;
    tv += std::fabs(f - p[size_t(v)]) / 2;
    // each frequency within 5 standard errors of its probability
    EXPECT_LT(std::fabs(f - p[size_t(v)]), 5 * std::sqrt(p[size_t(v)] * (1 - p[size_t(v)]) / N) + 2.0 / N) << "token " << v;
  }
  EXPECT_LT(tv, 0.08);

  // top_k = 1 is greedy; greedy is the argmax of transformers' logits
  o.top_k = 1;
  int argmax = int(std::max_element(logits.begin() + size_t(T - 1) * V, logits.begin() + size_t(T) * V) -
                   (logits.begin() + size_t(T - 1) * V));
  EXPECT_EQ(generate(e, prompt, o)[0], argmax);
}

TEST(Generate, RejectsContextOverflowAndEmptyPrompt) {
  Model m = load_model(std::string(ZO_TEST_DATA) + "/models/llama_gqa");
  Engine e(m);
  GenerateOptions o;
  o.max_new_tokens = m.cfg.max_pos;
  EXPECT_THROW(generate(e, {1, 2, 3}, o), Error);
  o.max_new_tokens = 2;
  EXPECT_THROW(generate(e, {}, o), Error);
}

}  // namespace
}  // namespace zo
