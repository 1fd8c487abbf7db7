// The step log: a training run is a base checkpoint plus this append-only file.
//
//   header   "ZOSTEPLG" | u32 version (1) | u32 n | n bytes of JSON (base checkpoint, its hash,
//            every hyper-parameter) | u32 crc32(JSON)
//   record   u32 magic "ZOSR" | u32 n | n bytes of payload | u32 crc32(payload)
//   payload  u64 step | u32 flags | u32 q | f32 lr | f64 loss_a | f64 loss_b | q x (u64 seed, f32 g)
// Little-endian. The g and lr of a record are exactly the f32 values the update used, so replaying
// the records over the base gives the run's weights bit for bit. A record is appended with one
// write(); a process killed mid-write leaves a torn tail, which reading detects (short or bad
// checksum at the very end), reports, and drops. Damage anywhere else is an error.
#pragma once
#include <nlohmann/json.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace zo {

uint32_t crc32(const void* data, size_t n, uint32_t crc = 0);

struct StepRecord {
  enum Flags : uint32_t { kSkipped = 1 };  // non-finite loss: logged, never applied
  uint64_t step = 0;
  uint32_t flags = 0;
  float lr = 0;
  double loss_a = 0, loss_b = 0;  // two-sided: loss(W + eps z), loss(W - eps z); one-sided: loss(W + eps z), loss(W)
  std::vector<uint64_t> seeds;    // one per direction
  std::vector<float> g;           // projected gradient per direction
  bool skipped() const { return flags & kSkipped; }
};

enum class FsyncPolicy { Every, End, Never };
FsyncPolicy parse_fsync(const std::string& s);

struct StepLogContents {
  nlohmann::json header;
  std::vector<StepRecord> records;
  uint64_t valid_bytes = 0;   // where the last good record ends
  uint64_t file_bytes = 0;
  std::string torn_warning;   // non-empty when a torn tail was found (and dropped)
};

// Reads a whole log. Throws zo::Error on a bad header, a damaged record followed by more data, or
// steps that are not 0, 1, 2, ... in order.
StepLogContents read_step_log(const std::string& path);
// The same over bytes in memory (`name` is used in messages; the fuzz target's entry point).
StepLogContents parse_step_log(const uint8_t* data, size_t size, const std::string& name);

class StepLogWriter {
 public:
  // Creates a new log (fails if the file exists) and writes the header.
  static StepLogWriter create(const std::string& path, const nlohmann::json& header, FsyncPolicy p);
  // Reopens an existing log for appending, first truncating it to valid_bytes (drops a torn tail).
  static StepLogWriter append_to(const std::string& path, uint64_t valid_bytes, FsyncPolicy p);
  StepLogWriter(StepLogWriter&& o) noexcept;
  StepLogWriter& operator=(StepLogWriter&&) = delete;
  ~StepLogWriter();
  void append(const StepRecord& r);
  void sync();  // fsync now (End policy: called at exit)

 private:
  StepLogWriter(int fd, std::string path, FsyncPolicy p) : fd_(fd), path_(std::move(path)), policy_(p) {}
  int fd_ = -1;
  std::string path_;
  FsyncPolicy policy_;
};

}  // namespace zo
