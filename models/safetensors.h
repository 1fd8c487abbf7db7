// Safetensors checkpoints: reader (mmap, zero copy), writer (atomic), and the sharded Hugging Face
// layout (model.safetensors.index.json + shards).
//
// File format: u64 little-endian header length N, N bytes of UTF-8 JSON
//   { "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//     "__metadata__": {"key": "value"} }
// then the byte buffer; offsets are relative to the buffer start. Validation follows the reference
// (Rust) implementation: the tensors, sorted by offsets, must cover the buffer exactly (no holes, no
// overlaps) and the buffer must end at the end of the file. We are stricter in one place: duplicate
// JSON keys are an error (the reference keeps one of them silently).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/mmap.h"

namespace zo {

// A tensor inside a mapped file. data points into the file's bytes: it lives as long as the
// SafetensorsFile (or HfWeights) and is NOT necessarily aligned to the dtype (old writers did not pad
// the header), so read it with memcpy or convert_to_f32.
struct StTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const uint8_t* data;
  size_t nbytes;
};

class SafetensorsFile {
 public:
  // Maps the file read-only and validates its header; throws zo::Error naming the path.
  static SafetensorsFile open(const std::string& path);
  // Validates bytes the caller keeps alive (no ownership; used by the fuzz target and tests).
  // `name` is used in error messages.
  static SafetensorsFile parse(const uint8_t* data, size_t size, const std::string& name);

  const std::vector<StTensor>& tensors() const { return tensors_; }  // in file (offset) order
  const StTensor* find(std::string_view name) const;                  // nullptr when absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& name() const { return name_; }
  // Drop the tensor's pages from memory (madvise DONTNEED) once its bytes were copied out; a later
  // read pages them in again. No-op for parse()d buffers, which we do not own.
  void release(const StTensor& t) const;

 private:
  std::string name_;
  MappedFile file_;  // empty for parse()
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  std::vector<StTensor> tensors_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

// All tensors of a Hugging Face model folder: dir/model.safetensors, or
// dir/model.safetensors.index.json ({"weight_map": {tensor: shard file}}) and the shards it names.
class HfWeights {
 public:
  static HfWeights open(const std::string& dir);

  const StTensor* find(std::string_view name) const;  // nullptr when absent
  const StTensor& get(std::string_view name) const;   // throws "<dir>: tensor 'x' missing"
  std::vector<std::string> names() const;              // sorted
  void release(const StTensor& t) const;
  const std::vector<SafetensorsFile>& files() const { return files_; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, std::pair<size_t, size_t>, std::less<>> index_;  // name -> (file, tensor)
};

// One tensor to write: row-major bytes, numel(shape) * dtype_size(dtype) of them at data.
struct StTensorOut {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
};

// Writes a safetensors file byte-identical to what the Python `safetensors` package writes for the
// same input: tensors ordered by dtype size descending then name (so every tensor is aligned to its
// dtype), header padded with spaces to a multiple of 8, metadata keys sorted. Atomic: the bytes go to
// a temporary file in the same folder, which is fsynced and renamed over `path`, so a crash never
// leaves a partial file. Transformers expects metadata {"format": "pt"} on model files.
void write_safetensors(const std::string& path, const std::vector<StTensorOut>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace zo
