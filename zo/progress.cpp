#include "zo/progress.h"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

namespace zo {

namespace {
std::string hms(double s) {
  if (!(s >= 0) || s > 1e7) return "--:--";
  long t = long(s + 0.5);
  return t >= 3600 ? fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60) : fmt::format("{:02}:{:02}", t / 60, t % 60);
}
}  // namespace

Progress::Progress(std::string label, long total, bool enabled)
    : label_(std::move(label)), total_(total), enabled_(enabled), tty_(isatty(2) != 0) {
  start_ = last_ = std::chrono::steady_clock::now();
}

Progress::~Progress() {
  if (enabled_ && !finished_ && tty_) std::fputs("\n", stderr);
}

void Progress::update(long done, const std::string& extra) {
  if (!enabled_ || (!tty_ && total_ > 0 && done >= total_)) return;  // finish() prints the last line
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_).count();
  // Terminal: redraw at most 10 times a second. Plain output: a line every 10 s or 25% of the work.
  bool quarter = total_ > 0 && (done * 4 / total_) != (last_done_ * 4 / total_);
  if (tty_ ? since < 0.1 : (since < 10.0 && !quarter)) return;
  last_ = now;
  last_done_ = done;
  draw(done, extra, false);
}

void Progress::finish(const std::string& extra) {
  if (!enabled_ || finished_) return;
  finished_ = true;
  draw(total_, extra, true);
}

void Progress::draw(long done, const std::string& extra, bool final) {
  double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double rate = el > 0 ? double(done) / el : 0.0;
  double eta = rate > 0 && total_ > done ? double(total_ - done) / rate : 0.0;
  std::string tail = fmt::format("{}/{} {:.2f}/s {} ETA {}{}{}", done, total_, rate, hms(el), hms(eta),
                                 extra.empty() ? "" : "  ", extra);
  if (tty_) {
    constexpr int kWidth = 24;
    int fill = total_ > 0 ? int(double(done) / double(total_) * kWidth) : 0;
    std::string bar(size_t(std::min(fill, kWidth)), '#');
    bar.resize(kWidth, '.');
    std::fprintf(stderr, "\r\033[K%s [%s] %s%s", label_.c_str(), bar.c_str(), tail.c_str(), final ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s: %s\n", label_.c_str(), tail.c_str());
  }
  std::fflush(stderr);
}

}  // namespace zo
