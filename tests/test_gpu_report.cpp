// bench/gpu_report.py, the table a GPU session's verdict on the offload target is read from, on a
// fixture of benchmark lines whose ratios are worked by hand here (no GPU needed). Skips without
// python3.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

namespace {

std::string run(const std::string& cmd) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  pclose(f);
  return out;
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> v;
  size_t at = 0;
  while (at < s.size()) {
    size_t nl = s.find('\n', at);
    if (nl == std::string::npos) nl = s.size();
    v.push_back(s.substr(at, nl - at));
    at = nl + 1;
  }
  return v;
}

// The row of run `name`, split at '|' (cells trimmed).
std::vector<std::string> row(const std::vector<std::string>& ls, const std::string& name) {
  for (const auto& l : ls) {
    if (l.rfind("| " + name + " |", 0) != 0) continue;
    std::vector<std::string> cells;
    size_t at = 1;
    while (at < l.size()) {
      size_t bar = l.find('|', at);
      if (bar == std::string::npos) break;
      std::string c = l.substr(at, bar - at);
      c.erase(0, c.find_first_not_of(' '));
      c.erase(c.find_last_not_of(' ') + 1);
      cells.push_back(c);
      at = bar + 1;
    }
    return cells;
  }
  return {};
}

}  // namespace

TEST(GpuReport, BoundsAndRatiosFollowTheIssuesFormula) {
  if (run("python3 -c 'print(1)' 2>/dev/null") != "1\n") GTEST_SKIP() << "python3 is not available";
  const std::string data = std::string(ZO_TEST_DATA) + "/gpu_report";
  const std::string script = std::string(ZO_TEST_DATA) + "/../../bench/gpu_report.py";
  const auto ls = lines(run("python3 '" + script + "' '" + data + "' prebuilt tests 1 2>&1"));
  ASSERT_GT(ls.size(), 10u);
  // Columns: run, blocks, s/step, steady s/step, ..., bound s (9), step/bound (10).
  struct Want {
    const char* name;
    const char* bound;
    const char* ratio;
  };
  // bound = max(the steady step of the resident run of the same shape and tokens per step (and
  // distribution, else any), H2D bytes / pinned rate); ratio = the run's steady step (else its mean)
  // over it.
  for (Want w : std::vector<Want>{
           {"opt-13b offload bf16 42G", "0.500", "1.08"},    // 0.54 / max(0.50, 0.11)
           {"opt-13b offload bf16 6700M", "0.800", "2.50"},  // 2.00 / max(0.50, 0.80): link-bound
           {"opt-13b offload rademacher", "0.500", "2.00"},  // no Rademacher resident run: the shape's
           {"opt-13b offload bf16 36G auto", "0.500", "1.10"},
           {"opt-1.3b offload bf16 6G", "0.080", "1.15"},    // one timed step: means, 0.092 / 0.080
           // Another workload: the resident run of the same tokens per step (3.15 / max(3.0, 0.8)); with
           // none (512 tokens), the link bound alone (2.4 / 0.3), never the 128-token resident step (0.5).
           {"opt-13b offload bf16 6700M 1024 tokens", "3.000", "1.05"},
           {"opt-13b offload bf16 6700M 512 tokens", "0.300", "8.00"},
           {"opt-13b resident 1024 tokens", "-", "-"},
           {"opt-13b resident", "-", "-"}}) {
    const auto c = row(ls, w.name);
    ASSERT_GE(c.size(), 11u) << w.name;
    EXPECT_EQ(c[9], w.bound) << w.name;
    EXPECT_EQ(c[10], w.ratio) << w.name;
  }
  EXPECT_EQ(row(ls, "opt-6.7b resident").at(1), "failed: zo: error: out of memory");
  EXPECT_EQ(row(ls, "opt-13b offload bf16 45G").at(1), "time budget");
  // auto's choices come before the table, and the table is printed last.
  size_t header = 0, autoline = 0;
  for (size_t i = 0; i < ls.size(); i++) {
    if (ls[i].rfind("| run |", 0) == 0) header = i;
    if (ls[i].find("two-way chosen [3, 2], model s 0.510 0.500, measured pass s 0.600 0.550 0.530") != std::string::npos)
      autoline = i;
  }
  EXPECT_GT(header, 0u);
  EXPECT_GT(autoline, 0u);
  EXPECT_LT(autoline, header);
  size_t last = ls.size();
  while (last > 0 && ls[last - 1].empty()) last--;
  ASSERT_GT(last, 0u);
  EXPECT_EQ(ls[last - 1].rfind("| opt-13b offload bf16 45G |", 0), 0u) << ls[last - 1];
}
