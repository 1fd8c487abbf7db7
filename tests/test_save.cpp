// Saving: a checkpoint written by zo must load back to the same function. The oracle is the
// transformers fixture: the re-loaded model must still reproduce transformers' logits, and a
// bf16 export of a bf16 checkpoint must hold exactly the bytes transformers wrote.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "models/forward.h"
#include "models/load.h"
#include "models/safetensors.h"

namespace zo {
namespace {

namespace fs = std::filesystem;

std::string tmpdir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("zo_test_save_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d.string();
}

double max_logit_error(const std::string& model_dir, const std::string& ref_dir) {
  Model m = load_model(model_dir);
  Engine e(m);
  SafetensorsFile ref = SafetensorsFile::open(ref_dir + "/ref.safetensors");
  const StTensor& it = *ref.find("input_ids");
  const int B = int(it.shape[0]), T = int(it.shape[1]), V = m.cfg.vocab_size;
  std::vector<int64_t> ids(size_t(B) * T), mask(size_t(B) * T);
  std::vector<float> want(size_t(B) * T * V);
  std::memcpy(ids.data(), it.data, it.nbytes);
  std::memcpy(mask.data(), ref.find("attention_mask")->data, mask.size() * 8);
  std::memcpy(want.data(), ref.find("logits")->data, want.size() * 4);
  std::vector<int32_t> row_of;
  Batch b = Batch::from_padded(ids.data(), mask.data(), B, T, &row_of);
  e.forward(b);
  std::vector<int32_t> rows;
  for (int r = 0; r < b.n_tokens(); r++) rows.push_back(r);
  std::vector<float> got(size_t(b.n_tokens()) * V);
  e.logits(e.hidden(), rows, got.data());
  double mx = 0;
  for (int i = 0; i < B * T; i++)
    for (int v = 0; row_of[size_t(i)] >= 0 && v < V; v++)
      mx = std::max(mx, double(std::fabs(got[size_t(row_of[size_t(i)]) * V + v] - want[size_t(i) * V + v])));
  return mx;
}

class SaveRoundTrip : public ::testing::TestWithParam<std::string> {};

TEST_P(SaveRoundTrip, ReloadedModelStillMatchesTransformers) {
  std::string src = std::string(ZO_TEST_DATA) + "/models/" + GetParam();
  std::string out = tmpdir(GetParam());
  save_hf(load_model(src), out, DType::F32);
  EXPECT_TRUE(fs::exists(out + "/config.json"));
  EXPECT_FALSE(fs::exists(out + "/config.json.tmp"));
  EXPECT_LT(max_logit_error(out, src), 1e-4);
  fs::remove_all(out);
}

INSTANTIATE_TEST_SUITE_P(Variants, SaveRoundTrip,
                         ::testing::Values("opt_pre_ln", "opt_post_ln", "llama_gqa", "llama_tied_bf16",
                                           "llama_sharded", "qwen2_bias"));

TEST(Save, Bf16ExportKeepsTransformersBytes) {
  std::string src = std::string(ZO_TEST_DATA) + "/models/llama_tied_bf16";
  std::string out = tmpdir("bf16");
  save_hf(load_model(src, LoadOptions{DType::BF16}), out, DType::BF16);
  SafetensorsFile a = SafetensorsFile::open(src + "/model.safetensors");
  SafetensorsFile b = SafetensorsFile::open(out + "/model.safetensors");
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  for (const StTensor& t : a.tensors()) {
    const StTensor* u = b.find(t.name);
    ASSERT_NE(u, nullptr) << t.name;
    EXPECT_EQ(u->dtype, DType::BF16);
    EXPECT_EQ(u->shape, t.shape);
    ASSERT_EQ(u->nbytes, t.nbytes);
    EXPECT_EQ(std::memcmp(u->data, t.data, t.nbytes), 0) << t.name;
  }
  fs::remove_all(out);
}

TEST(Save, UnwritableFolderFailsCleanly) {
  Model m = load_model(std::string(ZO_TEST_DATA) + "/models/opt_pre_ln");
  EXPECT_THROW(save_hf(m, "/proc/zo_cannot_write_here", DType::F32), Error);
}

}  // namespace
}  // namespace zo
