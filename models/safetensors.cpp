#include "models/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_set>

#include "core/error.h"

namespace zo {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr uint64_t kMaxHeader = 100'000'000;  // the reference implementation's limit
constexpr int kMaxJsonDepth = 16;             // our headers nest 3 deep; deeper is hostile

// Names come from untrusted files: keep error messages on one line and of bounded length.
std::string shown(std::string_view s) {
  std::string o;
  for (char c : s.substr(0, 120)) o += (uint8_t(c) < 0x20 || c == 0x7f) ? '?' : c;
  if (s.size() > 120) o += "...";
  return o;
}

// Parses untrusted JSON. nlohmann keeps one of two duplicate keys silently, so a callback tracks the
// keys of every open object and rejects repeats; it also bounds the nesting depth.
json parse_json(const char* begin, const char* end, const std::string& name, const char* what) {
  std::vector<std::unordered_set<std::string>> keys;
  int depth = 0;
  auto cb = [&](int, json::parse_event_t ev, json& parsed) -> bool {
    switch (ev) {
      case json::parse_event_t::object_start:
        keys.emplace_back();
        [[fallthrough]];
      case json::parse_event_t::array_start:
        if (++depth > kMaxJsonDepth) fail("{}: {} nests deeper than {} levels", name, what, kMaxJsonDepth);
        break;
      case json::parse_event_t::object_end:
        keys.pop_back();
        [[fallthrough]];
      case json::parse_event_t::array_end:
        depth--;
        break;
      case json::parse_event_t::key: {
        const auto& k = parsed.get_ref<const std::string&>();
        if (!keys.back().insert(k).second) fail("{}: {} has the key '{}' twice", name, what, shown(k));
        break;
      }
      case json::parse_event_t::value:
        break;
    }
    return true;
  };
  // nlohmann ends the input at a NUL byte (trailing garbage would pass) and skips a UTF-8 byte-order
  // mark; the reference parser rejects both, and so do we. Valid JSON never holds a raw NUL.
  if (const void* z = begin == end ? nullptr : std::memchr(begin, 0, size_t(end - begin)))
    fail("{}: {} is not valid JSON: NUL byte at offset {}", name, what, static_cast<const char*>(z) - begin);
  if (end - begin >= 3 && std::memcmp(begin, "\xEF\xBB\xBF", 3) == 0) fail("{}: {} starts with a byte-order mark", name, what);
  try {
    return json::parse(begin, end, cb);
  } catch (const json::exception& e) {
    fail("{}: {} is not valid JSON: {}", name, what, e.what());
  }
}

bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }

// A non-negative JSON integer (the reference reads usize; floats and negatives are errors).
bool json_uint(const json& v, uint64_t* out) {
  if (!v.is_number_unsigned()) return false;
  *out = v.get<uint64_t>();
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Reader

SafetensorsFile SafetensorsFile::parse(const uint8_t* data, size_t size, const std::string& name) {
  SafetensorsFile f;
  f.name_ = name;
  f.base_ = data;
  f.size_ = size;
  ZO_CHECK(size >= 8, "{}: {} bytes, too short for a safetensors file (8-byte header length)", name, size);
  uint64_t n = 0;
  for (int i = 0; i < 8; i++) n |= uint64_t(data[i]) << (8 * i);
  ZO_CHECK(n <= kMaxHeader, "{}: header length {} is over the {} byte limit", name, n, kMaxHeader);
  ZO_CHECK(n <= size - 8, "{}: header length {} runs past the end of the file ({} bytes)", name, n, size);
  const char* h = reinterpret_cast<const char*>(data) + 8;
  json hdr = parse_json(h, h + n, name, "the header");
  ZO_CHECK(hdr.is_object(), "{}: the header is not a JSON object", name);

  const uint8_t* buf = data + 8 + n;
  const uint64_t buf_size = size - 8 - n;
  struct Span {
    uint64_t begin, end;
  };
  std::vector<Span> spans;
  for (auto& [key, val] : hdr.items()) {
    if (key == "__metadata__") {
      if (val.is_null()) continue;  // the reference reads it as Option<map>
      ZO_CHECK(val.is_object(), "{}: \"__metadata__\" is not a JSON object", name);
      for (auto& [mk, mv] : val.items()) {
        ZO_CHECK(mv.is_string(), "{}: metadata '{}' is not a string", name, shown(mk));
        f.metadata_.emplace(mk, mv.get<std::string>());
      }
      continue;
    }
    const std::string t = shown(key);
    ZO_CHECK(val.is_object(), "{}: tensor '{}': entry is not a JSON object", name, t);
    auto dt = val.find("dtype");
    auto sh = val.find("shape");
    auto off = val.find("data_offsets");
    ZO_CHECK(dt != val.end() && dt->is_string(), "{}: tensor '{}': missing or non-string \"dtype\"", name, t);
    ZO_CHECK(sh != val.end() && sh->is_array(), "{}: tensor '{}': missing or non-array \"shape\"", name, t);
    ZO_CHECK(off != val.end() && off->is_array() && off->size() == 2,
             "{}: tensor '{}': \"data_offsets\" must be an array [begin, end]", name, t);
    StTensor st{key, DType::F32, {}, nullptr, 0};
    const auto& dname = dt->get_ref<const std::string&>();
    ZO_CHECK(dtype_from_name(dname, &st.dtype), "{}: tensor '{}': unsupported dtype '{}'", name, t, shown(dname));

    uint64_t numel = 1;
    st.shape.reserve(sh->size());
    for (const auto& d : *sh) {
      uint64_t v = 0;
      ZO_CHECK(json_uint(d, &v) && v <= uint64_t(INT64_MAX),
               "{}: tensor '{}': shape entries must be non-negative integers, got {}", name, t, shown(d.dump()));
      ZO_CHECK(checked_mul(numel, v, &numel), "{}: tensor '{}': shape overflows 64 bits", name, t);
      st.shape.push_back(int64_t(v));
    }
    uint64_t nbytes = 0;
    ZO_CHECK(checked_mul(numel, dtype_size(st.dtype), &nbytes), "{}: tensor '{}': byte size overflows 64 bits", name, t);

    Span s{};
    ZO_CHECK(json_uint((*off)[0], &s.begin) && json_uint((*off)[1], &s.end),
             "{}: tensor '{}': data_offsets must be non-negative integers", name, t);
    ZO_CHECK(s.begin <= s.end, "{}: tensor '{}': data_offsets end {} < begin {}", name, t, s.end, s.begin);
    ZO_CHECK(s.end <= buf_size, "{}: tensor '{}': data_offsets end {} is past the data buffer ({} bytes)", name, t,
             s.end, buf_size);
    ZO_CHECK(s.end - s.begin == nbytes, "{}: tensor '{}': {} bytes in data_offsets, but {} {} needs {}", name, t,
             s.end - s.begin, numel, dname, nbytes);
    st.data = buf + s.begin;
    st.nbytes = size_t(nbytes);
    f.tensors_.push_back(std::move(st));
    spans.push_back(s);
  }

  // As in the reference: sorted by offsets, the tensors must tile the buffer exactly, from 0 to the
  // end of the file. Holes and overlaps are both errors. (items() is key-ordered, so ties by name.)
  std::vector<size_t> order(spans.size());
  for (size_t i = 0; i < order.size(); i++) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return spans[a].begin != spans[b].begin ? spans[a].begin < spans[b].begin : spans[a].end < spans[b].end;
  });
  uint64_t at = 0;
  for (size_t k = 0; k < order.size(); k++) {
    const Span& s = spans[order[k]];
    const std::string t = shown(f.tensors_[order[k]].name);
    if (s.begin < at)
      fail("{}: tensor '{}' (bytes {}..{}) overlaps tensor '{}'", name, t, s.begin, s.end,
           shown(f.tensors_[order[k - 1]].name));
    ZO_CHECK(s.begin == at, "{}: tensor '{}' starts at {}, leaving a hole after byte {} of the data buffer", name, t,
             s.begin, at);
    at = s.end;
  }
  ZO_CHECK(at == buf_size, "{}: the tensors cover {} bytes but the data buffer has {}", name, at, buf_size);

  std::vector<StTensor> sorted;
  sorted.reserve(order.size());
  for (size_t i : order) sorted.push_back(std::move(f.tensors_[i]));
  f.tensors_ = std::move(sorted);
  for (size_t i = 0; i < f.tensors_.size(); i++) f.index_.emplace(f.tensors_[i].name, i);
  return f;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  MappedFile mf(path);
  SafetensorsFile f = parse(mf.data(), mf.size(), path);
  f.file_ = std::move(mf);  // moving the mapping keeps its address: tensor pointers stay valid
  return f;
}

const StTensor* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void SafetensorsFile::release(const StTensor& t) const {
  uintptr_t b = uintptr_t(base_), p = uintptr_t(t.data);
  ZO_CHECK(p >= b && p - b <= size_ && t.nbytes <= size_ - (p - b), "{}: release: tensor '{}' is not in this file",
           name_, shown(t.name));
  if (file_.data()) file_.release(size_t(p - b), t.nbytes);
}

// ---------------------------------------------------------------------------------------------
// Sharded folders

HfWeights HfWeights::open(const std::string& dir) {
  HfWeights w;
  w.dir_ = dir;
  const fs::path d(dir);
  const std::string index_path = (d / "model.safetensors.index.json").string();
  const std::string single_path = (d / "model.safetensors").string();
  std::error_code ec;
  // transformers looks for the single file first, and so do we.
  if (fs::exists(single_path, ec) || !fs::exists(index_path, ec)) {
    ZO_CHECK(fs::exists(single_path, ec), "{}: neither model.safetensors nor model.safetensors.index.json found", dir);
    w.files_.push_back(SafetensorsFile::open(single_path));
    for (size_t i = 0; i < w.files_[0].tensors().size(); i++) w.index_.emplace(w.files_[0].tensors()[i].name, std::pair{0, i});
    return w;
  }

  MappedFile idx(index_path);
  ZO_CHECK(idx.size() <= kMaxHeader, "{}: {} bytes, over the {} byte limit", index_path, idx.size(), kMaxHeader);
  const char* p = reinterpret_cast<const char*>(idx.data());
  json j = parse_json(p, p + idx.size(), index_path, "the index");
  ZO_CHECK(j.is_object(), "{}: not a JSON object", index_path);
  auto wm = j.find("weight_map");
  ZO_CHECK(wm != j.end() && wm->is_object(), "{}: missing or non-object \"weight_map\"", index_path);
  ZO_CHECK(!wm->empty(), "{}: \"weight_map\" is empty", index_path);
  std::set<std::string> shards;
  for (auto& [tensor, shard] : wm->items()) {
    ZO_CHECK(shard.is_string(), "{}: weight_map['{}'] is not a string", index_path, shown(tensor));
    const auto& s = shard.get_ref<const std::string&>();
    // Shards are plain file names next to the index: anything else could reach outside the folder.
    ZO_CHECK(!s.empty() && s.find('/') == std::string::npos && s.find('\\') == std::string::npos &&
                 s.find("..") == std::string::npos && s.find('\0') == std::string::npos,
             "{}: shard name '{}' is not a plain file name", index_path, shown(s));
    shards.insert(s);
  }

  std::map<std::string, size_t> shard_file;
  for (const auto& s : shards) {
    const std::string sp = (d / s).string();
    ZO_CHECK(fs::is_regular_file(sp, ec), "{}: shard '{}' listed in weight_map is missing ({})", index_path, shown(s), sp);
    shard_file[s] = w.files_.size();
    w.files_.push_back(SafetensorsFile::open(sp));
  }
  for (size_t fi = 0; fi < w.files_.size(); fi++) {
    const auto& ts = w.files_[fi].tensors();
    for (size_t i = 0; i < ts.size(); i++) {
      auto [it, fresh] = w.index_.emplace(ts[i].name, std::pair{fi, i});
      ZO_CHECK(fresh, "{}: tensor '{}' is in two shards, {} and {}", dir, shown(ts[i].name),
               w.files_[it->second.first].name(), w.files_[fi].name());
    }
  }
  // Tensors a shard holds beyond the index are kept (transformers loads whole shards too).
  for (auto& [tensor, shard] : wm->items()) {
    const std::string& s = shard.get_ref<const std::string&>();
    auto it = w.index_.find(tensor);
    ZO_CHECK(it != w.index_.end(), "{}: tensor '{}' is listed for shard '{}' but absent from it", index_path,
             shown(tensor), shown(s));
    ZO_CHECK(it->second.first == shard_file[s], "{}: tensor '{}' is listed for shard '{}' but lives in {}",
             index_path, shown(tensor), shown(s), w.files_[it->second.first].name());
  }
  return w;
}

const StTensor* HfWeights::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &files_[it->second.first].tensors()[it->second.second];
}

const StTensor& HfWeights::get(std::string_view name) const {
  const StTensor* t = find(name);
  if (!t) fail("{}: tensor '{}' missing", dir_, shown(name));
  return *t;
}

std::vector<std::string> HfWeights::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& kv : index_) out.push_back(kv.first);
  return out;
}

void HfWeights::release(const StTensor& t) const {
  auto it = index_.find(t.name);
  ZO_CHECK(it != index_.end(), "{}: release: tensor '{}' missing", dir_, shown(t.name));
  files_[it->second.first].release(t);
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {

// Position of a dtype in the reference implementation's Dtype enum (ordered by alignment). The
// writer sorts by it, descending, then by name: the same layout the Python package writes.
int reference_rank(DType t) {
  switch (t) {
    case DType::BOOL: return 0;
    case DType::U8: return 4;
    case DType::I8: return 5;
    case DType::I16: return 9;
    case DType::F16: return 11;
    case DType::BF16: return 12;
    case DType::I32: return 13;
    case DType::F32: return 15;
    case DType::F64: return 17;
    case DType::I64: return 18;
  }
  return -1;
}

// JSON string with the escapes serde_json uses (\" \\ \b \f \n \r \t, \u00xx for other controls,
// UTF-8 kept as is): nlohmann's dump produces exactly these.
std::string json_str(const std::string& s, const std::string& path, const char* what) {
  try {
    return json(s).dump();
  } catch (const json::exception&) {
    fail("{}: {} '{}' is not valid UTF-8", path, what, shown(s));
  }
}

void write_all(int fd, const uint8_t* p, uint64_t n, const std::string& tmp) {
  while (n > 0) {
    ssize_t k = ::write(fd, p, size_t(std::min<uint64_t>(n, 1u << 30)));
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) fail("{}: write failed: {}", tmp, k < 0 ? std::strerror(errno) : "no progress");
    p += k;
    n -= uint64_t(k);
  }
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<StTensorOut>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  struct Planned {
    const StTensorOut* t;
    uint64_t nbytes;
  };
  std::vector<Planned> plan;
  std::set<std::string_view> seen;
  for (const auto& t : tensors) {
    ZO_CHECK(t.name != "__metadata__", "{}: '__metadata__' cannot name a tensor", path);
    ZO_CHECK(seen.insert(t.name).second, "{}: tensor '{}' given twice", path, shown(t.name));
    ZO_CHECK(reference_rank(t.dtype) >= 0, "{}: tensor '{}': unknown dtype", path, shown(t.name));
    uint64_t nbytes = dtype_size(t.dtype);
    for (int64_t d : t.shape)
      ZO_CHECK(d >= 0 && checked_mul(nbytes, uint64_t(d), &nbytes), "{}: tensor '{}': bad shape", path, shown(t.name));
    ZO_CHECK(nbytes == 0 || t.data, "{}: tensor '{}': no data", path, shown(t.name));
    plan.push_back({&t, nbytes});
  }
  std::sort(plan.begin(), plan.end(), [](const Planned& a, const Planned& b) {
    int ra = reference_rank(a.t->dtype), rb = reference_rank(b.t->dtype);
    return ra != rb ? ra > rb : a.t->name < b.t->name;
  });

  // Header, byte for byte as serde_json writes it: no spaces, "__metadata__" first.
  std::string h = "{";
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    for (const auto& [k, v] : metadata) {
      if (h.back() != '{') h += ',';
      h += json_str(k, path, "metadata key") + ':' + json_str(v, path, "metadata value");
    }
    h += '}';
  }
  uint64_t offset = 0;
  for (const auto& p : plan) {
    if (h.back() != '{') h += ',';
    h += json_str(p.t->name, path, "tensor name");
    h += ":{\"dtype\":\"" + std::string(dtype_name(p.t->dtype)) + "\",\"shape\":[";
    for (size_t i = 0; i < p.t->shape.size(); i++) {
      if (i) h += ',';
      h += std::to_string(p.t->shape[i]);
    }
    h += "],\"data_offsets\":[" + std::to_string(offset) + ',' + std::to_string(offset + p.nbytes) + "]}";
    offset += p.nbytes;
  }
  h += '}';
  h.resize((h.size() + 7) / 8 * 8, ' ');  // the buffer then starts 8-aligned in the file
  ZO_CHECK(h.size() <= kMaxHeader, "{}: header of {} bytes is over the {} byte limit", path, h.size(), kMaxHeader);
  uint8_t len[8];
  for (int i = 0; i < 8; i++) len[i] = uint8_t(uint64_t(h.size()) >> (8 * i));

  // Atomic replace: write a hidden temporary next to the target, fsync, rename over it.
  const fs::path target(path);
  ZO_CHECK(target.has_filename(), "{}: not a file path", path);
  const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  static std::atomic<unsigned> counter{0};
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; fd < 0; attempt++) {
    tmp = (folder / fmt::format(".{}.tmp.{}.{}", target.filename().string(), ::getpid(), counter++)).string();
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && (errno != EEXIST || attempt > 100)) fail("{}: cannot create {}: {}", path, tmp, std::strerror(errno));
  }
  try {
    write_all(fd, len, 8, tmp);
    write_all(fd, reinterpret_cast<const uint8_t*>(h.data()), h.size(), tmp);
    for (const auto& p : plan) write_all(fd, static_cast<const uint8_t*>(p.t->data), p.nbytes, tmp);
    if (::fsync(fd) != 0) fail("{}: fsync failed: {}", tmp, std::strerror(errno));
    int rc = ::close(fd);
    fd = -1;
    if (rc != 0) fail("{}: close failed: {}", tmp, std::strerror(errno));
    if (::rename(tmp.c_str(), path.c_str()) != 0) fail("{}: cannot rename {} over it: {}", path, tmp, std::strerror(errno));
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  // Persist the rename itself. Best effort: the file's bytes are already durable, and some
  // filesystems refuse fsync on a directory.
  int dfd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace zo
