// GGUF reader tests. Oracle: tools/gen_gguf_fixtures.py writes tests/data/gguf/small.gguf with the
// `gguf` Python package and the values gguf.quants.dequantize gives for every tensor; the default
// SmolLM2 GGUF is checked against slices dequantized the same way. Corrupt inputs are made by
// patching fields of small.gguf (located by their names) and by a small byte builder.
#include <gtest/gtest.h>

#include "zo/defaults.h"
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "models/gguf.h"
#include "models/load.h"
#include "models/model.h"

namespace fs = std::filesystem;
using zo::GgmlType;
using zo::GgufFile;
using Bytes = std::vector<uint8_t>;

namespace {

const std::string kDir = std::string(ZO_TEST_DATA) + "/gguf";
const std::string kSmall = kDir + "/small.gguf";

Bytes read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  return Bytes(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot read " + path);
  return nlohmann::json::parse(f);
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Index of the first occurrence of a GGUF string (u64 length + bytes) in the file.
size_t find_gguf_string(const Bytes& b, const std::string& s) {
  uint64_t n = s.size();
  Bytes pat(reinterpret_cast<const uint8_t*>(&n), reinterpret_cast<const uint8_t*>(&n) + 8);
  pat.insert(pat.end(), s.begin(), s.end());
  auto it = std::search(b.begin(), b.end(), pat.begin(), pat.end());
  if (it == b.end()) throw std::runtime_error("string not found: " + s);
  return size_t(it - b.begin()) + pat.size();  // just past the string
}

template <typename T>
void put(Bytes& b, size_t at, T v) {
  std::memcpy(b.data() + at, &v, sizeof(T));
}
template <typename T>
T get(const Bytes& b, size_t at) {
  T v;
  std::memcpy(&v, b.data() + at, sizeof(T));
  return v;
}

// Position of the fields of tensor info `name` in the header.
struct TensorInfoPos {
  size_t n_dims, ne, type, offset;
};
TensorInfoPos tensor_info(const Bytes& b, const std::string& name) {
  TensorInfoPos p;
  p.n_dims = find_gguf_string(b, name);
  p.ne = p.n_dims + 4;
  p.type = p.ne + 8 * get<uint32_t>(b, p.n_dims);
  p.offset = p.type + 4;
  return p;
}

// Parse bytes that must be rejected; the message must name the input and contain `what`.
void expect_error(const Bytes& b, const std::string& what, const std::string& name = "corrupt.gguf") {
  try {
    GgufFile f = GgufFile::parse(b.data(), b.size(), name);
    ADD_FAILURE() << "parsed without error; expected: " << what;
  } catch (const zo::Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(name), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << "expected '" << what << "' in: " << msg;
  }
}

std::string default_gguf() {
  if (const char* p = std::getenv("ZO_DEFAULT_GGUF")) return p;
  return zo::default_model_path();
}

// Builds GGUF bytes field by field (for structures small.gguf does not have).
struct Builder {
  Bytes b;
  Builder& u32(uint32_t v) { return raw(&v, 4); }
  Builder& u64(uint64_t v) { return raw(&v, 8); }
  Builder& str(const std::string& s) { return u64(s.size()).raw(s.data(), s.size()); }
  Builder& raw(const void* p, size_t n) {
    b.insert(b.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
    return *this;
  }
  Builder& header(uint64_t n_tensors, uint64_t n_kv) { return u32(0x46554747).u32(3).u64(n_tensors).u64(n_kv); }
  Builder& pad(size_t a) {
    while (b.size() % a) b.push_back(0);
    return *this;
  }
};

}  // namespace

TEST(Gguf, SmallMetadataEveryType) {
  GgufFile f = GgufFile::open(kSmall);
  EXPECT_EQ(f.name(), kSmall);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.get_string("general.architecture"), "test");
  EXPECT_EQ(f.get_int("general.alignment"), 64);
  EXPECT_EQ(f.get_int("test.u8"), 200);
  EXPECT_EQ(f.get_int("test.i8"), -100);
  EXPECT_EQ(f.get_int("test.u16"), 60000);
  EXPECT_EQ(f.get_int("test.i16"), -30000);
  EXPECT_EQ(f.get_int("test.u32"), 4000000000LL);
  EXPECT_EQ(f.get_int("test.i32"), -2000000000LL);
  EXPECT_EQ(f.get_float("test.f32"), double(0.1f));
  EXPECT_EQ(f.get_float("test.u32"), 4e9);
  EXPECT_TRUE(f.get_bool("test.bool"));
  EXPECT_EQ(f.get_string("test.string"), "h\xc3\xa9llo, gguf \xe2\x9c\x93");
  EXPECT_EQ(f.get_string("test.empty"), "");
  EXPECT_EQ(f.get_int("test.u64_small"), 1234567890123LL);
  EXPECT_EQ(f.get_int("test.i64"), -(int64_t(1) << 62));
  EXPECT_EQ(f.get_float("test.f64"), 3.141592653589793);
  EXPECT_EQ(f.get_int_array("test.arr_u8"), (std::vector<int64_t>{0, 1, 255}));
  EXPECT_EQ(f.get_int_array("test.arr_i32"), (std::vector<int64_t>{-1, 0, 7, 2147483647}));
  EXPECT_EQ(f.get_int_array("test.arr_u64"), (std::vector<int64_t>{0, int64_t(1) << 40}));
  EXPECT_EQ(f.get_float_array("test.arr_f32"), (std::vector<float>{0.5f, -1.25f, 1e-3f}));
  EXPECT_EQ(f.get_float_array("test.arr_f64"), (std::vector<float>{0.1f, -2.5f}));
  EXPECT_EQ(f.get_string_array("test.arr_str"), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(f.type_of("test.arr_bool"), zo::GgufValueType::ARRAY);
  EXPECT_EQ(f.type_of("test.nested"), zo::GgufValueType::ARRAY);
  EXPECT_EQ(f.keys().size(), 24u);
  EXPECT_EQ(f.keys().front(), "general.architecture");
  EXPECT_EQ(f.keys().back(), "test.nested");
  EXPECT_TRUE(f.has("test.u8"));
  EXPECT_FALSE(f.has("test.nope"));
}

TEST(Gguf, MetadataErrorsNameFileAndKey) {
  GgufFile f = GgufFile::open(kSmall);
  auto expect_msg = [&](auto fn, const std::string& what) {
    try {
      fn();
      ADD_FAILURE() << "no error; expected " << what;
    } catch (const zo::Error& e) {
      std::string m = e.what();
      EXPECT_NE(m.find(kSmall), std::string::npos) << m;
      EXPECT_NE(m.find(what), std::string::npos) << m;
    }
  };
  expect_msg([&] { f.get_int("test.nope"); }, "metadata key 'test.nope' missing");
  expect_msg([&] { f.get_int("test.string"); }, "metadata key 'test.string' has type string, expected an integer");
  expect_msg([&] { f.get_string("test.u8"); }, "has type uint8, expected string");
  expect_msg([&] { f.get_bool("test.u8"); }, "expected bool");
  expect_msg([&] { f.get_float("test.bool"); }, "has type bool");
  expect_msg([&] { f.get_int("test.u64"); }, "does not fit in int64");
  expect_msg([&] { f.get_string_array("test.arr_i32"); }, "has type array[int32], expected array[string]");
  expect_msg([&] { f.get_int_array("test.nested"); }, "has type array[array]");
  expect_msg([&] { f.get_float_array("test.arr_str"); }, "array[string]");
  expect_msg([&] { f.get_int_array("test.u8"); }, "has type uint8");
}

// Every tensor: name, type, shape and the dequantized floats, bit for bit against gguf's.
TEST(Gguf, SmallTensorsMatchPythonDequantize) {
  GgufFile f = GgufFile::open(kSmall);
  nlohmann::json index = read_json(kDir + "/small_expected.json");
  Bytes raw = read_bytes(kDir + "/small_expected.f32");
  ASSERT_EQ(f.tensors().size(), index.size());
  size_t i = 0;
  for (const auto& e : index) {
    const zo::GgufTensor& t = f.tensors()[i++];
    SCOPED_TRACE(t.name);
    EXPECT_EQ(t.name, e["name"].get<std::string>());
    EXPECT_STREQ(zo::ggml_type_name(t.type), e["type"].get<std::string>().c_str());
    EXPECT_EQ(t.ne, e["ne"].get<std::vector<int64_t>>());
    EXPECT_EQ(f.find(t.name), &t);
    EXPECT_EQ(uint64_t(t.data - f.tensors()[0].data) % 64, 0u);
    size_t off = e["offset"], n = e["count"];
    ASSERT_EQ(size_t(t.numel()), n);
    ASSERT_LE((off + n) * 4, raw.size());
    std::vector<float> got(n);
    f.dequantize(t, got.data());
    size_t bad = 0;
    for (size_t k = 0; k < n; k++) {
      float want;
      std::memcpy(&want, raw.data() + (off + k) * 4, 4);
      if (bits(got[k]) != bits(want) && bad++ < 5) ADD_FAILURE() << "[" << k << "] got " << got[k] << " want " << want;
    }
    EXPECT_EQ(bad, 0u);
    // Unaligned source and the free function give the same bits.
    Bytes shifted(t.nbytes + 1);
    std::memcpy(shifted.data() + 1, t.data, t.nbytes);
    std::vector<float> again(n);
    zo::gguf_dequantize(t.type, shifted.data() + 1, again.data(), t.numel());
    EXPECT_EQ(std::memcmp(again.data(), got.data(), n * 4), 0);
  }
  EXPECT_EQ(f.find("t.nope"), nullptr);
}

TEST(Gguf, DequantizeRejectsBadCounts) {
  float out[64];
  uint8_t in[64 * 4] = {};
  EXPECT_THROW(zo::gguf_dequantize(GgmlType::Q4_0, in, out, 31), zo::Error);
  EXPECT_THROW(zo::gguf_dequantize(GgmlType::Q8_0, in, out, -32), zo::Error);
  EXPECT_THROW(zo::gguf_dequantize(GgmlType::Q8_K, in, out, 256), zo::Error);
  EXPECT_THROW(zo::gguf_dequantize(GgmlType(99), in, out, 1), zo::Error);
  EXPECT_NO_THROW(zo::gguf_dequantize(GgmlType::Q4_0, in, out, 0));
}

TEST(Gguf, VersionsAndMagic) {
  Bytes b = read_bytes(kSmall);
  Bytes v2 = b;
  put<uint32_t>(v2, 4, 2);  // v2 and v3 share the layout (v3 only added big-endian files)
  EXPECT_EQ(GgufFile::parse(v2.data(), v2.size(), "v2.gguf").version(), 2u);
  for (uint32_t v : {0u, 1u, 4u, 0xffffffffu}) {
    Bytes c = b;
    put<uint32_t>(c, 4, v);
    expect_error(c, "unsupported GGUF version");
  }
  Bytes be = b;
  put<uint32_t>(be, 4, 0x03000000u);
  expect_error(be, "big-endian");
  Bytes m = b;
  m[0] = 'X';
  expect_error(m, "bad magic");
  expect_error(Bytes{}, "bad magic");
  expect_error(Bytes{'G', 'G', 'U'}, "bad magic");
}

TEST(Gguf, OpenErrorsNameThePath) {
  fs::path dir = fs::temp_directory_path() / ("zo_test_gguf_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::string missing = (dir / "missing.gguf").string();
  try {
    GgufFile::open(missing);
    ADD_FAILURE();
  } catch (const zo::Error& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos);
  }
  Bytes b = read_bytes(kSmall);
  std::string cut = (dir / "cut.gguf").string();
  {
    std::ofstream o(cut, std::ios::binary);
    o.write(reinterpret_cast<const char*>(b.data()), 3000);
  }
  try {
    GgufFile::open(cut);
    ADD_FAILURE();
  } catch (const zo::Error& e) {
    EXPECT_NE(std::string(e.what()).find(cut), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

// Every prefix shorter than the end of the last tensor's data must be rejected (the padding after
// it is optional).
TEST(Gguf, EveryTruncationFails) {
  Bytes b = read_bytes(kSmall);
  GgufFile whole = GgufFile::parse(b.data(), b.size(), "x");
  size_t end = 0;
  for (const auto& t : whole.tensors()) end = std::max(end, size_t(t.file_offset + t.nbytes));
  ASSERT_GT(end, 4000u);
  size_t failures = 0;
  for (size_t n = 0; n < end; n++) {
    try {
      GgufFile::parse(b.data(), n, "trunc.gguf");
      ADD_FAILURE() << "prefix of " << n << " bytes parsed";
    } catch (const zo::Error& e) {
      if (std::string(e.what()).find("trunc.gguf") == std::string::npos) failures++;
    }
  }
  EXPECT_EQ(failures, 0u);
  for (size_t n = end; n <= b.size(); n++) EXPECT_NO_THROW(GgufFile::parse(b.data(), n, "ok.gguf"));
}

TEST(Gguf, CorruptHeaderCounts) {
  Bytes b = read_bytes(kSmall);
  Bytes c = b;
  put<uint64_t>(c, 8, uint64_t(1) << 60);  // tensor count: must fail before reserving
  expect_error(c, "tensor count");
  c = b;
  put<uint64_t>(c, 16, uint64_t(1) << 60);
  expect_error(c, "metadata count");
  c = b;
  put<uint64_t>(c, 8, get<uint64_t>(b, 8) + 1);  // one tensor more than described
  expect_error(c, "corrupt.gguf");
  c = b;
  put<uint64_t>(c, 16, get<uint64_t>(b, 16) + 1);
  expect_error(c, "corrupt.gguf");
}

TEST(Gguf, CorruptMetadata) {
  Bytes b = read_bytes(kSmall);
  Bytes c = b;
  put<uint32_t>(c, find_gguf_string(b, "test.u8"), 13);  // value type
  expect_error(c, "unknown value type 13");
  c = b;
  put<uint64_t>(c, find_gguf_string(b, "test.string") + 4, uint64_t(1) << 62);  // string length
  expect_error(c, "truncated");
  c = b;
  put<uint64_t>(c, find_gguf_string(b, "test.arr_str") + 8, uint64_t(1) << 62);  // array length
  expect_error(c, "array length");
  c = b;
  put<uint64_t>(c, find_gguf_string(b, "test.arr_u8") + 8, ~uint64_t(0));
  expect_error(c, "runs past the end");
  c = b;
  put<uint32_t>(c, find_gguf_string(b, "test.arr_f32") + 4, 77);  // element type
  expect_error(c, "unknown array element type 77");
  c = b;
  size_t k = find_gguf_string(b, "test.u16");
  std::memcpy(c.data() + k - 3, "i16", 3);  // rename test.u16 -> test.i16
  expect_error(c, "duplicate metadata key 'test.i16'");
  for (uint32_t a : {0u, 48u, 3u, 0x80000000u}) {
    c = b;
    put<uint32_t>(c, find_gguf_string(b, "general.alignment") + 4, a);
    expect_error(c, "general.alignment");
  }
  c = b;
  put<uint32_t>(c, find_gguf_string(b, "general.alignment"), 8);  // alignment given as a string
  expect_error(c, "corrupt.gguf");
}

TEST(Gguf, CorruptTensorInfo) {
  Bytes b = read_bytes(kSmall);
  TensorInfoPos q8 = tensor_info(b, "t.q8_0"), q4 = tensor_info(b, "t.q4_0"), q51 = tensor_info(b, "t.q5_1");
  ASSERT_EQ(get<uint32_t>(b, q8.type), uint32_t(GgmlType::Q8_0));
  Bytes c = b;
  put<uint32_t>(c, q8.type, 99);
  expect_error(c, "unknown or unsupported ggml type 99");
  c = b;
  put<uint32_t>(c, q8.type, uint32_t(GgmlType::Q4_K));  // ne[0] = 64 is not a multiple of 256
  expect_error(c, "not a multiple of the Q4_K block size 256");
  c = b;
  put<uint64_t>(c, q4.ne, 48);
  expect_error(c, "not a multiple of the Q4_0 block size 32");
  c = b;
  put<uint32_t>(c, q8.n_dims, 5);
  expect_error(c, "5 dims");
  c = b;
  put<uint32_t>(c, q8.n_dims, 0xffffffffu);
  expect_error(c, "dims");
  c = b;
  put<int64_t>(c, q8.ne, 0);
  expect_error(c, "must be positive");
  c = b;
  put<int64_t>(c, q8.ne + 8, -1);
  expect_error(c, "must be positive");
  c = b;
  put<int64_t>(c, q8.ne + 8, int64_t(1) << 62);  // 64 * 2^62 overflows int64
  expect_error(c, "overflows");
  c = b;
  put<int64_t>(c, q8.ne + 8, int64_t(1) << 40);  // fits in int64, not in the file
  expect_error(c, "runs past the end");
  c = b;
  put<uint64_t>(c, q8.offset, get<uint64_t>(b, q51.offset));
  expect_error(c, "overlap");
  c = b;
  put<uint64_t>(c, q8.offset, get<uint64_t>(b, q8.offset) + 64);  // runs into t.q2_k
  expect_error(c, "overlap");
  c = b;
  put<uint64_t>(c, q8.offset, get<uint64_t>(b, q8.offset) + 1);
  expect_error(c, "not a multiple of the alignment 64");
  c = b;
  put<uint64_t>(c, q8.offset, uint64_t(1) << 40);
  expect_error(c, "runs past the end");
  c = b;
  put<uint64_t>(c, q8.offset, ~uint64_t(63));  // aligned, and offset + size wraps around
  expect_error(c, "runs past the end");
  c = b;
  std::memcpy(c.data() + q8.n_dims - 6, "t.q5_1", 6);  // rename t.q8_0 -> t.q5_1
  expect_error(c, "duplicate tensor name 't.q5_1'");
}

TEST(Gguf, BuiltInputs) {
  // Empty but valid.
  Builder e;
  e.header(0, 0);
  GgufFile f = GgufFile::parse(e.b.data(), e.b.size(), "empty.gguf");
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_TRUE(f.keys().empty());

  // Nested arrays 100 deep: rejected by depth, not by the stack.
  Builder d;
  d.header(0, 1).str("deep").u32(9);
  for (int i = 0; i < 100; i++) d.u32(9).u64(1);
  d.u32(0).u64(0);
  expect_error(d.b, "nested deeper");

  // Many empty nested arrays: fine (each takes 12 bytes).
  Builder m;
  m.header(0, 1).str("many").u32(9).u32(9).u64(1000);
  for (int i = 0; i < 1000; i++) m.u32(4).u64(0);
  GgufFile mf = GgufFile::parse(m.b.data(), m.b.size(), "many.gguf");
  EXPECT_EQ(mf.type_of("many"), zo::GgufValueType::ARRAY);

  // Data section start past the end: the header ends on a non-aligned byte and nothing follows.
  Builder t;
  t.header(1, 0).str("w").u32(1).u64(1).u32(0).u64(0);
  expect_error(t.b, "data section");
  t.pad(32);
  expect_error(t.b, "runs past the end");
  float one = 1.0f;
  t.raw(&one, 4);
  GgufFile tf = GgufFile::parse(t.b.data(), t.b.size(), "one.gguf");
  float out = 0;
  tf.dequantize(tf.tensors()[0], &out);
  EXPECT_EQ(out, 1.0f);
  EXPECT_EQ(tf.tensors()[0].numel(), 1);

  // A 0-dim tensor is a scalar; a quantized one cannot be (ne[0] = 1 is no block multiple).
  Builder s;
  s.header(1, 0).str("s").u32(0).u32(uint32_t(GgmlType::Q8_0)).u64(0).pad(32);
  expect_error(s.b, "block size");
}

// A LLaMA header as a model file: integer keys that do not fit an int are errors naming the key
// (they used to be truncated: 2^32 + 32 read as 32), and a config its tensors do not back is refused
// before the masters are allocated (here about 800 TB of them: the allocation would fail first,
// with another message).
TEST(Gguf, ModelKeysAndTensorsAreCheckedBeforeAllocation) {
  auto model_file = [](uint64_t hidden, uint64_t bos) {
    Builder g;
    g.header(0, 9).str("general.architecture").u32(8).str("llama");
    g.str("llama.embedding_length").u32(10).u64(hidden);
    for (auto [k, v] : {std::pair<const char*, uint32_t>{"llama.block_count", 1024}, {"llama.attention.head_count", 64},
                        {"llama.feed_forward_length", 1u << 20}, {"llama.context_length", 4096}, {"llama.vocab_size", 1000}})
      g.str(k).u32(4).u32(v);
    const float eps = 1e-5f;
    g.str("llama.attention.layer_norm_rms_epsilon").u32(6).raw(&eps, 4);
    g.str("tokenizer.ggml.bos_token_id").u32(10).u64(bos);
    return GgufFile::parse(g.b.data(), g.b.size(), "model.gguf");
  };
  auto error_of = [](auto&& f) {
    try {
      f();
    } catch (const zo::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string wide = error_of([&] { zo::config_from_gguf(model_file((uint64_t(1) << 32) + 32, 1)); });
  EXPECT_NE(wide.find("llama.embedding_length = 4294967328 is out of range"), std::string::npos) << wide;
  const std::string bos = error_of([&] { zo::config_from_gguf(model_file(65536, uint64_t(1) << 33)); });
  EXPECT_NE(bos.find("tokenizer.ggml.bos_token_id"), std::string::npos) << bos;
  const GgufFile huge = model_file(65536, 1);
  EXPECT_GT(zo::Model::layout(zo::config_from_gguf(huge), zo::DType::F32).bytes(), size_t(1) << 49);
  const std::string missing = error_of([&] { zo::load_gguf(huge); });
  EXPECT_NE(missing.find("model.gguf: tensor 'token_embd.weight'"), std::string::npos) << missing;
}

TEST(Gguf, DefaultModel) {
  std::string path = default_gguf();
  if (!fs::exists(path)) GTEST_SKIP() << "default model " << path << " absent (set ZO_DEFAULT_GGUF)";
  GgufFile f = GgufFile::open(path);
  nlohmann::json ref = read_json(kDir + "/smollm2_expected.json");
  EXPECT_EQ(f.tensors().size(), 272u);
  EXPECT_EQ(f.tensors().size(), ref["tensor_count"].get<size_t>());
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 30);
  EXPECT_EQ(f.get_int("llama.embedding_length"), 576);
  EXPECT_EQ(f.get_int("llama.feed_forward_length"), 1536);
  EXPECT_EQ(f.get_int("llama.attention.head_count"), 9);
  EXPECT_EQ(f.get_int("llama.attention.head_count_kv"), 3);
  EXPECT_EQ(f.get_int("llama.context_length"), 8192);
  EXPECT_EQ(f.get_float("llama.rope.freq_base"), 100000.0);
  EXPECT_EQ(float(f.get_float("llama.attention.layer_norm_rms_epsilon")), 1e-5f);
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), "smollm");
  EXPECT_FALSE(f.get_bool("tokenizer.ggml.add_bos_token"));
  EXPECT_FALSE(f.get_bool("tokenizer.ggml.add_space_prefix"));
  EXPECT_EQ(f.get_int("tokenizer.ggml.bos_token_id"), 1);
  std::vector<std::string> tokens = f.get_string_array("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 49152u);
  EXPECT_EQ(tokens[1], "<|im_start|>");
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.merges").size(), 48900u);
  EXPECT_EQ(f.get_int_array("tokenizer.ggml.token_type").size(), 49152u);

  const zo::GgufTensor* emb = f.find("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->type, GgmlType::Q8_0);
  EXPECT_EQ(emb->ne, (std::vector<int64_t>{576, 49152}));
  EXPECT_EQ(f.find("blk.0.attn_q.weight")->type, GgmlType::Q4_1);

  for (const auto& e : ref["entries"]) {
    std::string name = e["tensor"];
    SCOPED_TRACE(name);
    const zo::GgufTensor* t = f.find(name);
    ASSERT_NE(t, nullptr);
    EXPECT_STREQ(zo::ggml_type_name(t->type), e["type"].get<std::string>().c_str());
    EXPECT_EQ(t->ne, e["ne"].get<std::vector<int64_t>>());
    std::vector<float> all(size_t(t->numel()));
    f.dequantize(*t, all.data());
    size_t off = e["offset"];
    std::vector<double> want = e["values"];
    ASSERT_LE(off + want.size(), all.size());
    for (size_t k = 0; k < want.size(); k++)
      ASSERT_EQ(bits(all[off + k]), bits(float(want[k]))) << "[" << off + k << "] " << all[off + k] << " vs " << want[k];
  }

  // Every value of every tensor, bit for bit, through the checksum the generator computed with
  // numpy: sum_i bits(x[i]) * (i % 65521 + 1) mod 2^64 (a changed bit always changes it).
  const auto& sums = ref["checksums"];
  ASSERT_EQ(sums.size(), 272u);
  std::vector<float> buf;
  for (const auto& t : f.tensors()) {
    buf.resize(size_t(t.numel()));
    f.dequantize(t, buf.data());
    uint64_t sum = 0;
    for (size_t i = 0; i < buf.size(); i++) sum += uint64_t(bits(buf[i])) * (i % 65521 + 1);
    ASSERT_TRUE(sums.contains(t.name)) << t.name;
    EXPECT_EQ(sum, sums[t.name].get<uint64_t>()) << t.name;
  }
}
