// GGUF reader (llama.cpp's single-file checkpoint format, versions 2 and 3, little-endian).
// The file is mapped, never read whole; tensors point into the mapping. Every byte is untrusted:
// parse() checks each count, length, offset and shape before use and throws zo::Error naming the
// file and the problem. Dequantization reproduces the `gguf` Python package bit for bit.
//
// Layout: magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv | n_kv x (string key, u32 type, value)
//         | n_tensors x (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset)
//         | padding to general.alignment (default 32) | tensor data (offsets relative to here).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/mmap.h"

namespace zo {

// Tensor storage types, numbered as in ggml.
enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, BF16 = 30
};

// Metadata value types, numbered as in the GGUF spec.
enum class GgufValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12
};

const char* ggml_type_name(GgmlType t);      // "Q4_1", ...; "?" for a value outside the enum
const char* gguf_value_type_name(GgufValueType t);  // "uint32", "string", ...
int64_t ggml_block_size(GgmlType t);         // values per block (1 for F32/F16/BF16); 0 if unknown
size_t ggml_type_size(GgmlType t);           // bytes per block; 0 if unknown
bool ggml_can_dequantize(GgmlType t);        // false for Q8_1 / Q8_K (ggml's dot-product-only types)

struct GgufTensor {
  std::string name;
  std::vector<int64_t> ne;  // ggml order: ne[0] is the contiguous (fastest) dim; torch shape reversed
  GgmlType type;
  const uint8_t* data;      // into the mapping (no alignment promised when parsed from raw bytes)
  size_t nbytes;
  uint64_t file_offset;     // of data from the start of the file (for MappedFile::release)
  int64_t numel() const;
};

class GgufFile {
 public:
  static GgufFile open(const std::string& path);  // mmap + parse
  // Parse bytes owned by the caller (they must outlive the GgufFile); name is used in messages.
  static GgufFile parse(const uint8_t* data, size_t size, const std::string& name);

  // Typed metadata getters; they throw "<file>: metadata key 'k' missing" or
  // "<file>: metadata key 'k' has type X, expected Y".
  bool has(std::string_view key) const;
  GgufValueType type_of(std::string_view key) const;  // ARRAY for arrays
  std::string get_string(std::string_view key) const;
  int64_t get_int(std::string_view key) const;    // any integer type (u64 above INT64_MAX throws)
  double get_float(std::string_view key) const;   // f32, f64 or any integer type
  bool get_bool(std::string_view key) const;
  std::vector<std::string> get_string_array(std::string_view key) const;
  std::vector<int64_t> get_int_array(std::string_view key) const;    // array of any integer type
  std::vector<float> get_float_array(std::string_view key) const;    // array of f32/f64/integers
  std::vector<std::string> keys() const;  // in file order

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find(std::string_view name) const;  // nullptr when absent
  const std::string& name() const { return name_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }

  // Dequantize a whole tensor to f32 into out[t.numel()] (ggml order, ne[0] contiguous).
  void dequantize(const GgufTensor& t, float* out) const;
  // Drop a tensor's pages from memory once it has been converted (no-op for parse()d bytes).
  void release(const GgufTensor& t) const;

 private:
  struct Kv {
    std::string key;
    GgufValueType type;
    GgufValueType elem_type;  // arrays only
    uint64_t count;           // arrays only
    const uint8_t* p;         // the value (for arrays: the first element)
  };
  const Kv& kv(std::string_view key) const;
  [[noreturn]] void type_error(const Kv& kv, const char* expected) const;

  MappedFile map_;
  std::string name_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::vector<Kv> kvs_;
  std::map<std::string, size_t, std::less<>> kv_index_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

// Dequantize n values (a multiple of the block size) of type t from src; src need not be aligned.
// Parallel (OpenMP) for large n. Throws zo::Error for a type it cannot dequantize or a bad n.
void gguf_dequantize(GgmlType t, const void* src, float* dst, int64_t n);

}  // namespace zo
