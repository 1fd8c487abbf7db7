// The zo binary end to end: results through the CLI match the transformers fixtures, and every
// malformed input (config, weights, GGUF, JSONL, flags) ends in exactly one "zo: error: ..." line
// naming the file and the problem, a non-zero exit, and no crash.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace {

namespace fs = std::filesystem;

struct Result {
  int code = -1;
  std::string out, err;
};

// Runs `zo ARGS` with stdout and stderr captured in files (no shell quoting surprises: the
// arguments used here are plain paths and flags).
Result zo(const std::string& args) {
  static int n = 0;
  std::string base = (fs::temp_directory_path() / ("zo_cli_" + std::to_string(::getpid()) + "_" + std::to_string(n++))).string();
  std::string cmd = std::string(ZO_BINARY_DIR) + "/bin/zo " + args + " >" + base + ".out 2>" + base + ".err </dev/null";
  int st = std::system(cmd.c_str());
  Result r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  auto slurp = [](const std::string& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  r.out = slurp(base + ".out");
  r.err = slurp(base + ".err");
  fs::remove(base + ".out");
  fs::remove(base + ".err");
  return r;
}

std::string data(const std::string& p) { return std::string(ZO_TEST_DATA) + "/" + p; }

fs::path scratch(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("zo_cli_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << s;
}

// One line on stderr, "zo: error: ", naming `what`; exit code `code`.
void expect_one_line_error(const Result& r, const std::string& what, int code = 1) {
  EXPECT_EQ(r.code, code) << r.err;
  EXPECT_EQ(r.err.rfind("zo: error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(what), std::string::npos) << "error does not name '" << what << "': " << r.err;
}

TEST(Cli, GreedyIdsMatchTransformers) {
  std::ifstream f(data("models/llama_gqa/ref.json"));
  auto j = nlohmann::json::parse(f);
  for (auto& g : j["greedy"]) {
    std::string ids;
    for (auto& v : g["prompt"]) (ids += ids.empty() ? "" : ",") += std::to_string(v.get<int>());
    Result r = zo("generate --model " + data("models/llama_gqa") + " --prompt-ids " + ids +
                  " --max-new-tokens 12 --no-stop --format ids");
    ASSERT_EQ(r.code, 0) << r.err;
    std::string want;
    for (auto& v : g["output"]) (want += want.empty() ? "" : " ") += std::to_string(v.get<int>());
    EXPECT_EQ(r.out, want + "\n");
  }
}

TEST(Cli, InspectJsonIsOneObjectOnTheLastLine) {
  Result r = zo("inspect " + data("models/opt_post_ln") + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  std::string last = r.out.substr(r.out.rfind('\n', r.out.size() - 2) + 1);
  auto j = nlohmann::json::parse(last);
  EXPECT_EQ(j["architecture"], "OPTForCausalLM");
  EXPECT_EQ(j["word_embed_proj_dim"], 32);
  EXPECT_EQ(j["pre_layer_norm"], false);
}

TEST(Cli, HelpForEveryCommand) {
  for (const char* c : {"", "inspect", "eval", "generate", "convert", "bench forward", "bench train", "train", "replay",
                        "export"}) {
    Result r = zo(std::string(c) + " --help");
    EXPECT_EQ(r.code, 0) << c;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << c;
  }
}

TEST(Cli, UsageErrorsExitTwo) {
  EXPECT_EQ(zo("").code, 2);
  EXPECT_EQ(zo("eval --no-such-flag").code, 2);
  EXPECT_EQ(zo("generate --format xml --prompt-ids 1").code, 2);
  expect_one_line_error(zo("generate --model " + data("models/llama_gqa") + " --prompt-ids 1,x --format ids"), "--prompt-ids");
  expect_one_line_error(zo("generate --model " + data("models/llama_gqa") + " --prompt-ids 99999 --format ids"), "out of range");
}

// zo bench train's device options are checked before any model is built, with or without a GPU.
TEST(Cli, BenchTrainDeviceOptionErrors) {
  const std::string b = "bench train --shape opt-125m --seq-len 8 --steps 1 --warmup 0 ";
  expect_one_line_error(zo(b + "--placement middle"), "--placement 'middle'");
  expect_one_line_error(zo(b + "--placement first"), "--placement applies to --device cuda with --gpu-mem");
  expect_one_line_error(zo(b + "--device-updates 2"), "--device-updates applies");
  expect_one_line_error(zo(b + "--gpu-mem 1G"), "--gpu-mem applies");
  // A negative byte count is refused as such (CLI11's unsigned parse alone wraps it and then reports
  // an overflow of 2^64 - 5 times 2^30).
  for (const char* f : {"--gpu-mem", "--gpu-reserve"})
    expect_one_line_error(zo(b + "--device cuda " + f + "=-5G"), std::string(f) + ": a byte count can't be negative: -5G", 2);
  expect_one_line_error(zo("train --offload disk --ram-budget=-1 -o x"), "--ram-budget: a byte count can't be negative", 2);
}

// zo bench train's step figures: every timed step is listed, the steady step is the mean of those
// after the first, and one timed step gives no steady step (it would hold no host update).
TEST(Cli, BenchTrainStepFigures) {
  for (int steps : {3, 1}) {
    Result r = zo("bench train --model " + data("models/llama_gqa") + " --seq-len 8 --batch 2 --warmup 1 --json --steps " +
                  std::to_string(steps));
    ASSERT_EQ(r.code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out.substr(r.out.rfind('\n', r.out.size() - 2) + 1));
    const std::vector<double> t = j["step_seconds"].get<std::vector<double>>();
    ASSERT_EQ(t.size(), size_t(steps));
    double sum = 0;
    for (double v : t) sum += v;
    EXPECT_GE(j["seconds_per_step"].get<double>(), sum / steps);  // (which also holds the last wait)
    if (steps == 1) {
      EXPECT_FALSE(j.contains("steady_seconds_per_step"));
    } else {
      EXPECT_DOUBLE_EQ(j["steady_seconds_per_step"].get<double>(), (t[1] + t[2]) / 2);
    }
  }
}

TEST(Cli, MalformedConfig) {
  fs::path d = scratch("config");
  fs::copy(data("models/opt_pre_ln"), d, fs::copy_options::recursive);
  write(d / "config.json", "{\"model_type\": \"opt\", ");
  expect_one_line_error(zo("inspect " + d.string()), "config.json");
  write(d / "config.json", "{\"model_type\": \"opt\", \"vocab_size\": \"many\"}");
  expect_one_line_error(zo("inspect " + d.string()), "vocab_size");
  write(d / "config.json", "{\"model_type\": \"gpt9\"}");
  expect_one_line_error(zo("inspect " + d.string()), "gpt9");
  write(d / "config.json", "[1, 2]");
  expect_one_line_error(zo("inspect " + d.string()), "config.json");
  fs::remove_all(d);
}

TEST(Cli, ConfigThatDisagreesWithTheWeights) {
  fs::path d = scratch("shape");
  fs::copy(data("models/llama_gqa"), d, fs::copy_options::recursive);
  std::ifstream f(d / "config.json");
  auto j = nlohmann::json::parse(f);
  j["intermediate_size"] = 96;  // the weights say 128
  write(d / "config.json", j.dump());
  expect_one_line_error(zo("inspect " + d.string()), "shape");
  j["intermediate_size"] = 128;
  j["num_hidden_layers"] = 3;  // the weights have 2
  write(d / "config.json", j.dump());
  expect_one_line_error(zo("inspect " + d.string()), "missing");
  fs::remove_all(d);
}

TEST(Cli, TruncatedAndCorruptSafetensors) {
  fs::path d = scratch("st");
  fs::copy(data("models/llama_gqa"), d, fs::copy_options::recursive);
  auto size = fs::file_size(d / "model.safetensors");
  for (uintmax_t keep : {uintmax_t(0), uintmax_t(5), uintmax_t(100), size / 2, size - 1}) {
    fs::copy_file(data("models/llama_gqa/model.safetensors"), d / "model.safetensors",
                  fs::copy_options::overwrite_existing);
    fs::resize_file(d / "model.safetensors", keep);
    expect_one_line_error(zo("inspect " + d.string()), "model.safetensors");
  }
  fs::remove_all(d);
}

TEST(Cli, ShardMissing) {
  fs::path d = scratch("shard");
  fs::copy(data("models/llama_sharded"), d, fs::copy_options::recursive);
  fs::remove(d / "model-00002-of-00003.safetensors");
  expect_one_line_error(zo("inspect " + d.string()), "model-00002-of-00003.safetensors");
  fs::remove_all(d);
}

TEST(Cli, BadGguf) {
  fs::path d = scratch("gguf");
  // A valid GGUF that is not a LLaMA model, then truncated copies of it.
  fs::copy_file(data("gguf/small.gguf"), d / "x.gguf");
  expect_one_line_error(zo("inspect " + (d / "x.gguf").string()), "x.gguf");
  for (uintmax_t keep : {uintmax_t(0), uintmax_t(3), uintmax_t(30), uintmax_t(300)}) {
    fs::copy_file(data("gguf/small.gguf"), d / "x.gguf", fs::copy_options::overwrite_existing);
    fs::resize_file(d / "x.gguf", keep);
    expect_one_line_error(zo("inspect " + (d / "x.gguf").string()), "x.gguf");
  }
  expect_one_line_error(zo("inspect " + (d / "absent.gguf").string()), "absent.gguf");
  fs::remove_all(d);
}

TEST(Cli, BadJsonl) {
  fs::path d = scratch("jsonl");
  fs::copy(data("models/opt_pre_ln"), d / "m", fs::copy_options::recursive);
  fs::copy_file(data("tokenizers/opt_bpe/tokenizer.json"), d / "m" / "tokenizer.json");
  struct Case {
    std::string text, what;
  };
  std::vector<Case> cases = {
      {"{\"sentence\": \"ok\", \"label\": 1}\n{\"sentence\": \"bad\", \"label\": \n", "data.jsonl:2"},
      {"{\"sentence\": \"ok\", \"label\": 7}\n", "label 7"},
      {"{\"text\": \"no sentence\", \"label\": 1}\n", "sentence"},
      {"[1, 2, 3]\n", "data.jsonl:1"},
      {"", "no data rows"},
      {"{\"sentence\": 5, \"label\": 0}\n", "sentence"},
      // Above LONG_MAX: before, it wrapped and the error spoke of label -1.
      {"{\"sentence\": \"ok\", \"label\": 18446744073709551615}\n", "'label' is out of range"},
  };
  for (auto& c : cases) {
    write(d / "data.jsonl", c.text);
    expect_one_line_error(zo("eval --quiet --model " + (d / "m").string() + " --task sst2 --data " + (d / "data.jsonl").string()), c.what);
  }
  expect_one_line_error(zo("eval --quiet --model " + (d / "m").string() + " --task sst2 --data " + (d / "nope.jsonl").string()), "nope.jsonl");
  // A task file whose fields have the wrong types (fuzz_data found "name": [...] escaping as a
  // nlohmann type_error that named neither the file nor the field).
  write(d / "data.jsonl", "{\"sentence\": \"ok\", \"label\": 1}\n");
  for (const Case& c : std::vector<Case>{
           {"{\"name\": [1], \"template\": \"{sentence}\", \"label_words\": [\" a\", \" b\"]}", "'name' must be a string"},
           {"{\"template\": \"{sentence}\", \"label_words\": [\" a\", [\" b\"]]}", "label word"},
           {"{\"template\": 3, \"label_words\": [\" a\", \" b\"]}", "'template' must be a string"}}) {
    write(d / "task.json", c.text);
    std::string cmd = "eval --quiet --model ";
    cmd += (d / "m").string();
    cmd += " --task ";
    cmd += (d / "task.json").string();
    cmd += " --data ";
    cmd += (d / "data.jsonl").string();
    expect_one_line_error(zo(cmd), c.what);
  }
  fs::remove_all(d);
}

TEST(Cli, BadTokenizerJson) {
  fs::path d = scratch("tok");
  fs::copy(data("models/opt_pre_ln"), d, fs::copy_options::recursive);
  write(d / "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": 3}}");
  expect_one_line_error(zo("generate --model " + d.string() + " --prompt hello -n 2"), "tokenizer.json");
  fs::remove_all(d);
}

}  // namespace
