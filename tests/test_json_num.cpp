// core/json_num.h: integers from JSON numbers, with every value an int can and cannot hold at the
// boundaries (the limits are exact powers of two), and the two parsers that use it: a config.json
// (the fuzzer's find: a float beyond int's range, undefined behaviour through get<int>) and a
// training config.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_num.h"
#include "models/config.h"
#include "zo/train.h"

using namespace zo;
using nlohmann::json;

namespace {
template <typename T>
bool accepts(const std::string& text, T want) {
  T v{};
  return json_integer(json::parse(text), &v) && v == want;
}
template <typename T>
bool refuses(const std::string& text) {
  T v{};
  return !json_integer(json::parse(text), &v);
}
}  // namespace

TEST(JsonInteger, AcceptsWhatTheTypeHoldsAndRefusesTheRest) {
  EXPECT_TRUE(accepts<int>("2147483647", 2147483647));
  EXPECT_TRUE(accepts<int>("-2147483648", std::numeric_limits<int>::min()));
  EXPECT_TRUE(accepts<int>("2147483647.0", 2147483647));
  EXPECT_TRUE(accepts<int>("-2147483648.0", std::numeric_limits<int>::min()));
  EXPECT_TRUE(accepts<int>("2048.0", 2048));
  EXPECT_TRUE(accepts<int>("1e3", 1000));
  EXPECT_TRUE(refuses<int>("2147483648"));
  EXPECT_TRUE(refuses<int>("-2147483649"));
  EXPECT_TRUE(refuses<int>("2147483648.0"));
  EXPECT_TRUE(refuses<int>("-2147483649.0"));
  EXPECT_TRUE(refuses<int>("444444444444444444444444444444444128"));  // the fuzzer's value
  EXPECT_TRUE(refuses<int>("1.5"));
  EXPECT_TRUE(refuses<int>("1e300"));
  EXPECT_TRUE(refuses<int>("18446744073709551615"));
  EXPECT_TRUE(refuses<int>("\"7\""));
  EXPECT_TRUE(refuses<int>("true"));
  EXPECT_TRUE(accepts<uint64_t>("18446744073709551615", std::numeric_limits<uint64_t>::max()));
  EXPECT_TRUE(refuses<uint64_t>("-1"));
  EXPECT_TRUE(refuses<uint64_t>("18446744073709551616.0"));  // 2^64
  EXPECT_TRUE(accepts<int64_t>("-9223372036854775808", std::numeric_limits<int64_t>::min()));
  EXPECT_TRUE(refuses<int64_t>("9223372036854775808.0"));  // 2^63
  EXPECT_TRUE(refuses<int64_t>("9223372036854775808"));
}

TEST(JsonInteger, ConfigsRefuseAnOutOfRangeIntegerWithOneLine) {
  const std::string opt = R"({"model_type": "opt", "vocab_size": 64, "hidden_size": 16, "num_hidden_layers": 2,
    "num_attention_heads": 2, "ffn_dim": 32, "max_position_embeddings": MAXPOS})";
  auto with = [&](const std::string& v) {
    std::string s = opt;
    s.replace(s.find("MAXPOS"), 6, v);
    return s;
  };
  EXPECT_EQ(config_from_hf_json(with("2048.0"), "c.json").max_pos, 2048);
  for (const char* bad : {"4.4e35", "444444444444444444444444444444444128", "12.5", "-1e20"}) {
    try {
      config_from_hf_json(with(bad), "c.json");
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("max_position_embeddings"), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    }
  }
  // Heads beyond any model: refused before heads x head_dim is formed (an int overflow before,
  // which UBSan found through a GGUF's head count, with the head size given apart).
  ModelConfig many = config_from_hf_json(with("2048"), "c.json");
  many.arch = Arch::Llama, many.n_heads = 1526726658, many.n_kv_heads = 1, many.head_dim = 16;
  try {
    validate_config(many, "c.gguf");
    ADD_FAILURE() << "1526726658 heads were accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("num_attention_heads 1526726658 out of range"), std::string::npos) << e.what();
  }
  for (const char* bad : {R"({"steps": 1e30})", R"({"batch": 4294967312})", R"({"steps": 2.5})"}) {
    try {
      TrainConfig::from_json(json::parse(bad), "cfg.json");
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cfg.json"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(TrainConfig::from_json(json::parse(R"({"steps": 300.0})"), "cfg.json").steps, 300);
}
