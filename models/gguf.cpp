// GGUF parsing and metadata access. Metadata values are validated once at parse time and kept as
// pointers into the bytes; getters decode on demand, so a 49152-entry vocabulary costs nothing
// until someone asks for it.
#include "models/gguf.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace zo {

static_assert(std::endian::native == std::endian::little, "GGUF reader assumes a little-endian host");

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as little-endian u32
constexpr int kMaxDims = 4;              // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;        // nested arrays; deeper is surely hostile (stack depth)

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Size of a fixed-size metadata value, 0 for string/array/unknown.
size_t scalar_size(uint32_t t) {
  switch (GgufValueType(t)) {
    case GgufValueType::U8: case GgufValueType::I8: case GgufValueType::BOOL: return 1;
    case GgufValueType::U16: case GgufValueType::I16: return 2;
    case GgufValueType::U32: case GgufValueType::I32: case GgufValueType::F32: return 4;
    case GgufValueType::U64: case GgufValueType::I64: case GgufValueType::F64: return 8;
    default: return 0;
  }
}

bool is_int_type(GgufValueType t) {
  switch (t) {
    case GgufValueType::U8: case GgufValueType::I8: case GgufValueType::U16: case GgufValueType::I16:
    case GgufValueType::U32: case GgufValueType::I32: case GgufValueType::U64: case GgufValueType::I64:
      return true;
    default: return false;
  }
}

// Bounds-checked cursor over untrusted bytes; every failure names the file and the byte offset.
struct Reader {
  const uint8_t* data;
  size_t size;
  size_t pos;
  const std::string& name;

  size_t left() const { return size - pos; }
  void need(uint64_t n, const char* what) const {
    if (n > left()) fail("{}: truncated at byte {} reading {} ({} bytes needed, {} left)", name, pos, what, n, left());
  }
  uint32_t u32(const char* what) {
    need(4, what);
    uint32_t v = load<uint32_t>(data + pos);
    pos += 4;
    return v;
  }
  uint64_t u64(const char* what) {
    need(8, what);
    uint64_t v = load<uint64_t>(data + pos);
    pos += 8;
    return v;
  }
  std::string_view str(const char* what) {
    uint64_t n = u64(what);
    need(n, what);
    std::string_view s(reinterpret_cast<const char*>(data + pos), size_t(n));
    pos += size_t(n);
    return s;
  }
  // Skip over one value of type t, checking it fits. Work is bounded by the bytes consumed: every
  // array element takes at least one byte, so a huge count fails before any loop runs long.
  void skip_value(uint32_t t, int depth, std::string_view key) {
    if (size_t s = scalar_size(t)) {
      need(s, "metadata value");
      pos += s;
      return;
    }
    if (t == uint32_t(GgufValueType::STRING)) {
      str("metadata string");
      return;
    }
    if (t != uint32_t(GgufValueType::ARRAY)) fail("{}: metadata key '{}': unknown value type {}", name, key, t);
    if (depth >= kMaxArrayDepth) fail("{}: metadata key '{}': arrays nested deeper than {}", name, key, kMaxArrayDepth);
    uint32_t et = u32("array element type");
    uint64_t n = u64("array length");
    if (size_t s = scalar_size(et)) {
      if (n > left() / s) fail("{}: metadata key '{}': array of {} x {} bytes runs past the end of the file", name, key, n, s);
      pos += size_t(n) * s;
      return;
    }
    // A string takes at least 8 bytes (its length), a nested array at least 12 (type + length).
    size_t min = et == uint32_t(GgufValueType::STRING) ? 8 : et == uint32_t(GgufValueType::ARRAY) ? 12 : 0;
    if (min == 0) fail("{}: metadata key '{}': unknown array element type {}", name, key, et);
    if (n > left() / min) fail("{}: metadata key '{}': array length {} runs past the end of the file", name, key, n);
    for (uint64_t i = 0; i < n; i++) skip_value(et, depth + 1, key);
  }
};

bool known_ggml_type(uint32_t t) { return ggml_block_size(GgmlType(t)) != 0; }

}  // namespace

int64_t GgufTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;  // cannot overflow: checked at parse time
  return n;
}

const char* gguf_value_type_name(GgufValueType t) {
  switch (t) {
    case GgufValueType::U8: return "uint8";
    case GgufValueType::I8: return "int8";
    case GgufValueType::U16: return "uint16";
    case GgufValueType::I16: return "int16";
    case GgufValueType::U32: return "uint32";
    case GgufValueType::I32: return "int32";
    case GgufValueType::F32: return "float32";
    case GgufValueType::BOOL: return "bool";
    case GgufValueType::STRING: return "string";
    case GgufValueType::ARRAY: return "array";
    case GgufValueType::U64: return "uint64";
    case GgufValueType::I64: return "int64";
    case GgufValueType::F64: return "float64";
  }
  return "?";
}

GgufFile GgufFile::open(const std::string& path) {
  MappedFile m(path);
  GgufFile f = parse(m.data(), m.size(), path);
  f.map_ = std::move(m);  // the mapping's address does not change on move: tensor pointers stay valid
  return f;
}

GgufFile GgufFile::parse(const uint8_t* data, size_t size, const std::string& name) {
  GgufFile f;
  f.name_ = name;
  Reader r{data, size, 0, f.name_};
  if (size < 4 || load<uint32_t>(data) != kMagic) fail("{}: not a GGUF file (bad magic)", name);
  r.pos = 4;
  f.version_ = r.u32("version");
  if (f.version_ != 2 && f.version_ != 3) {
    uint32_t swapped = __builtin_bswap32(f.version_);
    if (swapped == 2 || swapped == 3)
      fail("{}: big-endian GGUF is not supported", name);
    fail("{}: unsupported GGUF version {} (supported: 2, 3)", name, f.version_);
  }
  uint64_t n_tensors = r.u64("tensor count");
  uint64_t n_kv = r.u64("metadata count");
  // Smallest possible entries: a kv is key length (8) + type (4) + a 1-byte value; a tensor info is
  // name length (8) + n_dims (4) + type (4) + offset (8). Checked before reserving anything.
  if (n_kv > r.left() / 13) fail("{}: metadata count {} cannot fit in the file", name, n_kv);
  if (n_tensors > r.left() / 24) fail("{}: tensor count {} cannot fit in the file", name, n_tensors);

  f.kvs_.reserve(size_t(n_kv));
  for (uint64_t i = 0; i < n_kv; i++) {
    std::string key(r.str("metadata key"));
    uint32_t t = r.u32("metadata value type");
    Kv kv{key, GgufValueType(t), GgufValueType::U8, 0, nullptr};
    if (t == uint32_t(GgufValueType::ARRAY)) {
      size_t at = r.pos;
      kv.elem_type = GgufValueType(r.u32("array element type"));
      kv.count = r.u64("array length");
      kv.p = data + r.pos;
      r.pos = at;
    } else {
      kv.p = data + r.pos;
    }
    r.skip_value(t, 0, key);
    if (!f.kv_index_.emplace(key, f.kvs_.size()).second) fail("{}: duplicate metadata key '{}'", name, key);
    f.kvs_.push_back(std::move(kv));
  }

  if (f.has("general.alignment")) {
    const Kv& a = f.kv("general.alignment");
    if (!is_int_type(a.type)) f.type_error(a, "an integer");
    int64_t v = f.get_int("general.alignment");
    if (v <= 0 || (v & (v - 1)) != 0 || v > (1 << 30))
      fail("{}: general.alignment {} is not a power of two (up to 2^30)", name, v);
    f.alignment_ = uint64_t(v);
  }

  f.tensors_.reserve(size_t(n_tensors));
  for (uint64_t i = 0; i < n_tensors; i++) {
    GgufTensor t;
    t.name = std::string(r.str("tensor name"));
    uint32_t n_dims = r.u32("tensor n_dims");
    if (n_dims > uint32_t(kMaxDims)) fail("{}: tensor '{}': {} dims (at most {})", name, t.name, n_dims, kMaxDims);
    int64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
      int64_t v = int64_t(r.u64("tensor dim"));
      if (v <= 0) fail("{}: tensor '{}': dim {} is {} (must be positive)", name, t.name, d, v);
      if (numel > std::numeric_limits<int64_t>::max() / v)
        fail("{}: tensor '{}': element count overflows", name, t.name);
      numel *= v;
      t.ne.push_back(v);
    }
    uint32_t type = r.u32("tensor type");
    if (!known_ggml_type(type)) fail("{}: tensor '{}': unknown or unsupported ggml type {}", name, t.name, type);
    t.type = GgmlType(type);
    int64_t bs = ggml_block_size(t.type);
    int64_t ne0 = t.ne.empty() ? 1 : t.ne[0];
    if (ne0 % bs != 0)
      fail("{}: tensor '{}': ne[0] = {} is not a multiple of the {} block size {}", name, t.name, ne0,
           ggml_type_name(t.type), bs);
    uint64_t blocks = uint64_t(numel / bs), ts = ggml_type_size(t.type);
    if (blocks > std::numeric_limits<uint64_t>::max() / ts) fail("{}: tensor '{}': byte size overflows", name, t.name);
    t.nbytes = size_t(blocks * ts);
    t.file_offset = r.u64("tensor offset");  // relative to the data section until fixed up below
    if (t.file_offset % f.alignment_ != 0)
      fail("{}: tensor '{}': offset {} is not a multiple of the alignment {}", name, t.name, t.file_offset,
           f.alignment_);
    if (!f.tensor_index_.emplace(t.name, f.tensors_.size()).second)
      fail("{}: duplicate tensor name '{}'", name, t.name);
    f.tensors_.push_back(std::move(t));
  }

  // The data section starts at the end of the tensor infos, rounded up to the alignment.
  uint64_t data_start = (uint64_t(r.pos) + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  if (!f.tensors_.empty() && data_start > size)
    fail("{}: data section starts at byte {}, past the end of the file ({} bytes)", name, data_start, size);
  std::vector<size_t> order(f.tensors_.size());
  for (size_t i = 0; i < order.size(); i++) {
    GgufTensor& t = f.tensors_[i];
    uint64_t room = size - data_start;
    if (t.file_offset > room || t.nbytes > room - t.file_offset)
      fail("{}: tensor '{}': data [{}, +{}) runs past the end of the file (data section holds {} bytes)", name,
           t.name, t.file_offset, t.nbytes, room);
    t.file_offset += data_start;
    t.data = data + t.file_offset;
    order[i] = i;
  }
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return f.tensors_[a].file_offset < f.tensors_[b].file_offset; });
  for (size_t i = 1; i < order.size(); i++) {
    const GgufTensor& a = f.tensors_[order[i - 1]];
    const GgufTensor& b = f.tensors_[order[i]];
    if (a.file_offset + a.nbytes > b.file_offset)
      fail("{}: tensors '{}' and '{}' overlap", name, a.name, b.name);
  }
  return f;
}

bool GgufFile::has(std::string_view key) const { return kv_index_.find(key) != kv_index_.end(); }

const GgufFile::Kv& GgufFile::kv(std::string_view key) const {
  auto it = kv_index_.find(key);
  if (it == kv_index_.end()) fail("{}: metadata key '{}' missing", name_, key);
  return kvs_[it->second];
}

void GgufFile::type_error(const Kv& kv, const char* expected) const {
  if (kv.type == GgufValueType::ARRAY)
    fail("{}: metadata key '{}' has type array[{}], expected {}", name_, kv.key, gguf_value_type_name(kv.elem_type),
         expected);
  fail("{}: metadata key '{}' has type {}, expected {}", name_, kv.key, gguf_value_type_name(kv.type), expected);
}

GgufValueType GgufFile::type_of(std::string_view key) const { return kv(key).type; }

std::vector<std::string> GgufFile::keys() const {
  std::vector<std::string> out;
  out.reserve(kvs_.size());
  for (const Kv& kv : kvs_) out.push_back(kv.key);
  return out;
}

namespace {

// Decoders for values already validated by skip_value.
std::string load_string(const uint8_t* p, const uint8_t** next) {
  uint64_t n = load<uint64_t>(p);
  *next = p + 8 + n;
  return std::string(reinterpret_cast<const char*>(p + 8), size_t(n));
}

// An integer of type t at p; false when it does not fit in int64 (a u64 above 2^63-1).
bool load_int(GgufValueType t, const uint8_t* p, int64_t* out) {
  switch (t) {
    case GgufValueType::U8: *out = load<uint8_t>(p); return true;
    case GgufValueType::I8: *out = load<int8_t>(p); return true;
    case GgufValueType::U16: *out = load<uint16_t>(p); return true;
    case GgufValueType::I16: *out = load<int16_t>(p); return true;
    case GgufValueType::U32: *out = load<uint32_t>(p); return true;
    case GgufValueType::I32: *out = load<int32_t>(p); return true;
    case GgufValueType::I64: *out = load<int64_t>(p); return true;
    case GgufValueType::U64: {
      uint64_t v = load<uint64_t>(p);
      *out = int64_t(v);
      return v <= uint64_t(std::numeric_limits<int64_t>::max());
    }
    default: return false;
  }
}

double load_number(GgufValueType t, const uint8_t* p) {
  if (t == GgufValueType::F32) return load<float>(p);
  if (t == GgufValueType::F64) return load<double>(p);
  if (t == GgufValueType::U64) return double(load<uint64_t>(p));
  int64_t v = 0;
  load_int(t, p, &v);
  return double(v);
}

}  // namespace

std::string GgufFile::get_string(std::string_view key) const {
  const Kv& k = kv(key);
  if (k.type != GgufValueType::STRING) type_error(k, "string");
  const uint8_t* next;
  return load_string(k.p, &next);
}

int64_t GgufFile::get_int(std::string_view key) const {
  const Kv& k = kv(key);
  if (!is_int_type(k.type)) type_error(k, "an integer");
  int64_t v;
  if (!load_int(k.type, k.p, &v)) fail("{}: metadata key '{}': uint64 value {} does not fit in int64", name_, key, load<uint64_t>(k.p));
  return v;
}

double GgufFile::get_float(std::string_view key) const {
  const Kv& k = kv(key);
  if (!is_int_type(k.type) && k.type != GgufValueType::F32 && k.type != GgufValueType::F64)
    type_error(k, "a number");
  return load_number(k.type, k.p);
}

bool GgufFile::get_bool(std::string_view key) const {
  const Kv& k = kv(key);
  if (k.type != GgufValueType::BOOL) type_error(k, "bool");
  return load<uint8_t>(k.p) != 0;
}

std::vector<std::string> GgufFile::get_string_array(std::string_view key) const {
  const Kv& k = kv(key);
  if (k.type != GgufValueType::ARRAY || k.elem_type != GgufValueType::STRING) type_error(k, "array[string]");
  std::vector<std::string> out;
  out.reserve(size_t(k.count));  // bounded: validated against the file size at parse time
  const uint8_t* p = k.p;
  for (uint64_t i = 0; i < k.count; i++) out.push_back(load_string(p, &p));
  return out;
}

std::vector<int64_t> GgufFile::get_int_array(std::string_view key) const {
  const Kv& k = kv(key);
  if (k.type != GgufValueType::ARRAY || !is_int_type(k.elem_type)) type_error(k, "array of integers");
  size_t s = scalar_size(uint32_t(k.elem_type));
  std::vector<int64_t> out(size_t(k.count));
  for (size_t i = 0; i < out.size(); i++)
    if (!load_int(k.elem_type, k.p + i * s, &out[i]))
      fail("{}: metadata key '{}'[{}]: uint64 value does not fit in int64", name_, key, i);
  return out;
}

std::vector<float> GgufFile::get_float_array(std::string_view key) const {
  const Kv& k = kv(key);
  bool ok = is_int_type(k.elem_type) || k.elem_type == GgufValueType::F32 || k.elem_type == GgufValueType::F64;
  if (k.type != GgufValueType::ARRAY || !ok) type_error(k, "array of numbers");
  size_t s = scalar_size(uint32_t(k.elem_type));
  std::vector<float> out(size_t(k.count));
  for (size_t i = 0; i < out.size(); i++) out[i] = float(load_number(k.elem_type, k.p + i * s));
  return out;
}

const GgufTensor* GgufFile::find(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

void GgufFile::dequantize(const GgufTensor& t, float* out) const {
  if (!ggml_can_dequantize(t.type))
    fail("{}: tensor '{}': cannot dequantize type {}", name_, t.name, ggml_type_name(t.type));
  gguf_dequantize(t.type, t.data, out, t.numel());
}

void GgufFile::release(const GgufTensor& t) const {
  if (map_.data()) map_.release(t.file_offset, t.nbytes);
}

}  // namespace zo
