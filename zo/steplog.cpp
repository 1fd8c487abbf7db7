#include "zo/steplog.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace zo {
namespace {

constexpr char kMagic[8] = {'Z', 'O', 'S', 'T', 'E', 'P', 'L', 'G'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kRecMagic = 0x52534F5A;  // the bytes "ZOSR"
constexpr uint32_t kMaxHeader = 1u << 24;
constexpr uint32_t kMaxDirs = 1u << 16;

template <typename T>
void put(std::string& b, T v) {
  b.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
template <typename T>
T get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

void write_all(int fd, const std::string& buf, const std::string& path) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t w = ::write(fd, buf.data() + done, buf.size() - done);
    if (w < 0 && errno == EINTR) continue;
    ZO_CHECK(w > 0, "{}: write failed: {}", path, std::strerror(errno));
    done += size_t(w);
  }
}

std::string encode_payload(const StepRecord& r) {
  ZO_CHECK(r.seeds.size() == r.g.size() && !r.seeds.empty() && r.seeds.size() <= kMaxDirs,
           "step log: record of step {} has {} seeds and {} gradients", r.step, r.seeds.size(), r.g.size());
  std::string p;
  put<uint64_t>(p, r.step);
  put<uint32_t>(p, r.flags);
  put<uint32_t>(p, uint32_t(r.seeds.size()));
  put<float>(p, r.lr);
  put<double>(p, r.loss_a);
  put<double>(p, r.loss_b);
  for (size_t d = 0; d < r.seeds.size(); d++) {
    put<uint64_t>(p, r.seeds[d]);
    put<float>(p, r.g[d]);
  }
  return p;
}

// Decodes one payload; "" on success, else what is wrong.
std::string decode_payload(const uint8_t* p, uint32_t n, StepRecord* r) {
  constexpr uint32_t kFixed = 8 + 4 + 4 + 4 + 8 + 8;
  if (n < kFixed) return "payload too short";
  r->step = get<uint64_t>(p);
  r->flags = get<uint32_t>(p + 8);
  uint32_t q = get<uint32_t>(p + 12);
  r->lr = get<float>(p + 16);
  r->loss_a = get<double>(p + 20);
  r->loss_b = get<double>(p + 28);
  if (q == 0 || q > kMaxDirs) return fmt::format("{} directions", q);
  if (n != kFixed + q * 12u) return fmt::format("payload of {} bytes for {} directions", n, q);
  r->seeds.resize(q);
  r->g.resize(q);
  for (uint32_t d = 0; d < q; d++) {
    r->seeds[d] = get<uint64_t>(p + kFixed + 12 * d);
    r->g[d] = get<float>(p + kFixed + 12 * d + 8);
    if (!r->skipped() && !std::isfinite(r->g[d])) return "non-finite gradient in an applied step";
  }
  if (!std::isfinite(r->lr)) return "non-finite learning rate";
  return "";
}

}  // namespace

uint32_t crc32(const void* data, size_t n, uint32_t crc) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  const uint8_t* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
  return ~crc;
}

FsyncPolicy parse_fsync(const std::string& s) {
  if (s == "every") return FsyncPolicy::Every;
  if (s == "end") return FsyncPolicy::End;
  if (s == "never") return FsyncPolicy::Never;
  fail("--fsync '{}': expected every, end or never", s);
}

StepLogContents read_step_log(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ZO_CHECK(fd >= 0, "{}: cannot open step log: {}", path, std::strerror(errno));
  std::string buf;
  char chunk[1 << 16];
  for (;;) {
    ssize_t r = ::read(fd, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      ::close(fd);
      fail("{}: read failed: {}", path, std::strerror(errno));
    }
    if (r == 0) break;
    buf.append(chunk, size_t(r));
  }
  ::close(fd);
  return parse_step_log(reinterpret_cast<const uint8_t*>(buf.data()), buf.size(), path);
}

StepLogContents parse_step_log(const uint8_t* b, size_t n, const std::string& path) {
  StepLogContents out;
  out.file_bytes = n;
  ZO_CHECK(n >= 16 && std::memcmp(b, kMagic, 8) == 0, "{}: not a zo step log (bad magic)", path);
  uint32_t ver = get<uint32_t>(b + 8), hn = get<uint32_t>(b + 12);
  ZO_CHECK(ver == kVersion, "{}: step log version {} (this zo reads version {})", path, ver, kVersion);
  ZO_CHECK(hn <= kMaxHeader && 16 + size_t(hn) + 4 <= n, "{}: truncated or oversized header ({} bytes)", path, hn);
  ZO_CHECK(crc32(b + 16, hn) == get<uint32_t>(b + 16 + hn), "{}: header checksum mismatch", path);
  try {
    out.header = nlohmann::json::parse(b + 16, b + 16 + hn);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: header is not valid JSON: {}", path, e.what());
  }
  ZO_CHECK(out.header.is_object(), "{}: header is not a JSON object", path);
  size_t pos = 16 + hn + 4;
  out.valid_bytes = pos;
  while (pos < n) {
    std::string why;
    StepRecord r;
    if (n - pos < 12) {
      why = "short record";
    } else {
      uint32_t magic = get<uint32_t>(b + pos), len = get<uint32_t>(b + pos + 4);
      if (magic != kRecMagic) why = "bad record marker";
      else if (len > 64 + kMaxDirs * 12u || n - pos - 8 < size_t(len) + 4) why = "record runs past the end";
      else if (crc32(b + pos + 8, len) != get<uint32_t>(b + pos + 8 + len)) why = "record checksum mismatch";
      else if (std::string e = decode_payload(b + pos + 8, len, &r); !e.empty()) why = e;
      else if (r.step != out.records.size())
        why = fmt::format("step {} where step {} was expected", r.step, out.records.size());
      if (why.empty()) {
        pos += 12 + len;
        out.valid_bytes = pos;
        out.records.push_back(std::move(r));
        continue;
      }
    }
    // A damaged record is a torn tail only if no complete record could follow it.
    bool tail = n - pos < 12 + 36 + 12 + 4;
    if (!tail) {
      uint32_t len = get<uint32_t>(b + pos + 4);
      tail = get<uint32_t>(b + pos) == kRecMagic && (n - pos - 8 < size_t(len) + 4 || n - pos - 12 == len);
    }
    ZO_CHECK(tail, "{}: damaged record at byte {} (after step {}): {}", path, pos, out.records.size(), why);
    out.torn_warning = fmt::format("{}: dropped a torn last record at byte {} ({} bytes: {})", path, pos, n - pos, why);
    break;
  }
  return out;
}

StepLogWriter StepLogWriter::create(const std::string& path, const nlohmann::json& header, FsyncPolicy p) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
  ZO_CHECK(fd >= 0, "{}: cannot create step log: {}", path, std::strerror(errno));
  StepLogWriter w(fd, path, p);
  std::string h = header.dump();
  ZO_CHECK(h.size() <= kMaxHeader, "{}: header too large", path);
  std::string buf(kMagic, 8);
  put<uint32_t>(buf, kVersion);
  put<uint32_t>(buf, uint32_t(h.size()));
  buf += h;
  put<uint32_t>(buf, crc32(h.data(), h.size()));
  write_all(fd, buf, path);
  if (p != FsyncPolicy::Never) w.sync();
  return w;
}

StepLogWriter StepLogWriter::append_to(const std::string& path, uint64_t valid_bytes, FsyncPolicy p) {
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  ZO_CHECK(fd >= 0, "{}: cannot open step log for appending: {}", path, std::strerror(errno));
  StepLogWriter w(fd, path, p);
  struct stat st{};
  ZO_CHECK(::fstat(fd, &st) == 0, "{}: stat failed: {}", path, std::strerror(errno));
  if (uint64_t(st.st_size) != valid_bytes) {
    ZO_CHECK(::ftruncate(fd, off_t(valid_bytes)) == 0, "{}: cannot drop the torn tail: {}", path, std::strerror(errno));
    w.sync();
  }
  return w;
}

StepLogWriter::StepLogWriter(StepLogWriter&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)), policy_(o.policy_) {
  o.fd_ = -1;
}

StepLogWriter::~StepLogWriter() {
  if (fd_ < 0) return;
  if (policy_ != FsyncPolicy::Never) ::fsync(fd_);
  ::close(fd_);
}

void StepLogWriter::append(const StepRecord& r) {
  std::string p = encode_payload(r);
  std::string buf;
  buf.reserve(p.size() + 12);
  put<uint32_t>(buf, kRecMagic);
  put<uint32_t>(buf, uint32_t(p.size()));
  buf += p;
  put<uint32_t>(buf, crc32(p.data(), p.size()));
  write_all(fd_, buf, path_);  // one write: O_APPEND, so a kill leaves at most one torn record
  if (policy_ == FsyncPolicy::Every) sync();
}

void StepLogWriter::sync() {
  if (fd_ >= 0) ZO_CHECK(::fsync(fd_) == 0, "{}: fsync failed: {}", path_, std::strerror(errno));
}

}  // namespace zo
