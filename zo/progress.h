// Progress reporting for long work: a redrawn bar on a terminal, plain periodic lines otherwise
// (logs and CI stay readable). Writes to stderr so stdout keeps only results (--json).
#pragma once
#include <chrono>
#include <string>

namespace zo {

class Progress {
 public:
  Progress(std::string label, long total, bool enabled = true);
  ~Progress();
  // `done` items of `total`; `extra` is shown after the rate (e.g. "loss 0.693").
  void update(long done, const std::string& extra = "");
  void finish(const std::string& extra = "");

 private:
  void draw(long done, const std::string& extra, bool final);
  std::string label_;
  long total_;
  bool enabled_, tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_;
  long last_done_ = 0;
};

}  // namespace zo
