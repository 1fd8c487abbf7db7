// Host probe for bench/gpu.sh: what the streaming engine's host updater can do on this machine.
// Per thread count (1, 2, 4, ... up to OpenMP's maximum): the rate of z generation in cache
// (Gaussian, Philox) and of a read-modify-write pass (zo::measure_host_rates, the rates behind
// `zo bench train`'s host floor), a STREAM-like triad's bandwidth over buffers far larger than the caches, and
// the updater's own work (core/wire.h update_and_encode: SGD step plus re-encode) in ns per weight,
// run from a std::thread as the engine runs it: Gaussian z with the bf16 and the fp8 wire, and
// Rademacher z with bf16 (its z is Philox alone, no Box-Muller). Also the CPU time used over the wall time
// of each run (the parallelism actually obtained) and the steal time the kernel reports (a virtual
// machine's vCPUs may not all be backed). Prints a short table, then one JSON line.
#include <omp.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/dtype.h"
#include "core/perturb.h"
#include "core/wire.h"
#include "zo/bench.h"

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

// Total steal ticks across CPUs (/proc/stat's 8th field), or -1.
long long steal_ticks() {
  std::ifstream f("/proc/stat");
  std::string cpu;
  long long v[8] = {};
  if (!(f >> cpu) || cpu != "cpu") return -1;
  for (auto& x : v) f >> x;
  return v[7];
}

std::string first_line(const char* path) {
  std::ifstream f(path);
  std::string s;
  std::getline(f, s);
  return s;
}

struct Row {
  int threads;
  double z_gvalues_s, triad_gb_s, update_ns_per_weight, update_parallelism, steal_s;
  double update_fp8_ns, update_rademacher_ns, rmw_gb_s;
  double before_ns, before_parallelism, before_rademacher_ns;
};

// The updater as it was before the prefetching, streaming and dynamic split of 2026-11-26, the
// baseline of this probe's "before" columns (public functions only): groups split statically among
// the threads; in each, z made 4096 values at a time and applied, then the group encoded with
// ordinary stores.
void update_and_encode_before(float* w, size_t n, uint64_t tid, const zo::UpdateTerm& term, zo::Dist dist,
                              uint16_t* dst) {
  const long groups = long(zo::wire_groups(n));
#pragma omp parallel for schedule(static)
  for (long g = 0; g < groups; g++) {
    const size_t g0 = size_t(g) * zo::kWireGroup, len = std::min(zo::kWireGroup, n - g0);
    float z[4096];
    for (size_t c = g0; c < g0 + len; c += 4096) {
      const size_t cl = std::min<size_t>(4096, g0 + len - c);
      zo::fill_z(z, term.seed, tid, c, cl, dist);  // serial below fill_z's parallel threshold
      for (size_t i = 0; i < cl; i++) w[c + i] = w[c + i] - 1e-4f * (term.coef * z[i]);
    }
    for (size_t i = g0; i < g0 + len; i++) dst[i] = zo::f32_to_bf16(w[i]);
  }
}

}  // namespace

int main() {
  const int max_t = omp_get_max_threads();
  cpu_set_t set;
  CPU_ZERO(&set);
  sched_getaffinity(0, sizeof(set), &set);
  const int affinity = CPU_COUNT(&set);
  std::string model, flags;
  {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line)) {
      if (model.empty() && line.rfind("model name", 0) == 0) model = line.substr(line.find(':') + 2);
      if (flags.empty() && line.rfind("flags", 0) == 0) flags = line;
    }
  }
  const bool avx512 = flags.find(" avx512f") != std::string::npos, avx2 = flags.find(" avx2") != std::string::npos;
  const size_t n_tri = size_t(128) << 20;  // 3 x 512 MiB
  const size_t n_upd = size_t(256) << 20;  // 1 GiB of f32 masters, 512 MiB of bf16
  std::vector<float> a(n_tri), b(n_tri, 1.0f), c(n_tri, 2.0f), w(n_upd);
  std::vector<uint16_t> enc(n_upd);
  std::vector<float> scales(zo::wire_groups(n_upd));
  zo::fill_z(w.data(), 3, 5, 0, n_upd, zo::Dist::Gaussian);
  const zo::UpdateTerm term{42, 1e-3f};
  std::vector<int> counts;
  for (int t = 1; t < max_t; t *= 2) counts.push_back(t);
  counts.push_back(max_t);
  std::vector<Row> rows;
  const long hz = sysconf(_SC_CLK_TCK);
  for (int t : counts) {
    omp_set_num_threads(t);
    Row r{t, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    {  // z in cache and a read-modify-write pass: the rates behind bench train's host floor
      const zo::HostRates hr = zo::measure_host_rates(zo::Dist::Gaussian);
      r.z_gvalues_s = hr.z_gvalues_s;
      r.rmw_gb_s = hr.rmw_gb_s;
    }
    {  // triad, best of 3
      double best = 1e30;
      for (int k = 0; k < 3; k++) {
        auto t0 = Clock::now();
#pragma omp parallel for schedule(static)
        for (long i = 0; i < long(n_tri); i++) a[size_t(i)] = b[size_t(i)] + 0.5f * c[size_t(i)];
        best = std::min(best, since(t0));
      }
      r.triad_gb_s = 3.0 * 4.0 * double(n_tri) / best / 1e9;
    }
    // The updater's work over the 1 GiB of masters, from a std::thread as in offload/gpu_engine.cu;
    // best of 2 runs.
    auto update_ns = [&](zo::Dist dist, zo::WireDType wire, double* cpu_over_wall, bool before = false) {
      double best = 1e30, par = 0;
      for (int k = 0; k < 2; k++) {
        const double c0 = cpu_seconds();
        double wall = 0;
        std::thread th([&] {
          omp_set_num_threads(t);
          auto t0 = Clock::now();
          if (before)
            update_and_encode_before(w.data(), n_upd, 9, term, dist, enc.data());
          else
            zo::update_and_encode(w.data(), nullptr, n_upd, 9, &term, 1, dist, zo::OptKind::SGD, 1e-4f, 0.0f, 0.0f,
                                  wire, enc.data(), scales.data());
          wall = since(t0);
        });
        th.join();
        if (wall < best) best = wall, par = (cpu_seconds() - c0) / wall;
      }
      if (cpu_over_wall) *cpu_over_wall = par;
      return best / double(n_upd) * 1e9;
    };
    const long long s0 = steal_ticks();
    r.update_ns_per_weight = update_ns(zo::Dist::Gaussian, zo::WireDType::BF16, &r.update_parallelism);
    const long long s1 = steal_ticks();
    r.steal_s = (s0 >= 0 && s1 >= 0) ? double(s1 - s0) / double(hz) : -1;
    r.before_ns = update_ns(zo::Dist::Gaussian, zo::WireDType::BF16, &r.before_parallelism, true);
    r.before_rademacher_ns = update_ns(zo::Dist::Rademacher, zo::WireDType::BF16, nullptr, true);
    r.update_fp8_ns = update_ns(zo::Dist::Gaussian, zo::WireDType::FP8, nullptr);
    r.update_rademacher_ns = update_ns(zo::Dist::Rademacher, zo::WireDType::BF16, nullptr);
    rows.push_back(r);
  }
  std::printf("host: %s | %d CPUs allowed, OpenMP max %d | avx512f %s, avx2 %s | cpu.max '%s'\n", model.c_str(), affinity,
              max_t, avx512 ? "yes" : "no", avx2 ? "yes" : "no", first_line("/sys/fs/cgroup/cpu.max").c_str());
  std::printf(
      "| threads | z Gvalues/s (cache) | triad GB/s | read-modify-write GB/s | update+bf16 ns/weight | CPU/wall | "
      "steal s | update+fp8 ns/weight | Rademacher update+bf16 ns/weight | before: update+bf16 ns/weight | before: CPU/wall | before: Rademacher ns/weight |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows)
    std::printf("| %d | %.2f | %.1f | %.1f | %.3f | %.1f | %.2f | %.3f | %.3f | %.3f | %.1f | %.3f |\n", r.threads, r.z_gvalues_s,
                r.triad_gb_s, r.rmw_gb_s, r.update_ns_per_weight, r.update_parallelism, r.steal_s, r.update_fp8_ns,
                r.update_rademacher_ns, r.before_ns, r.before_parallelism, r.before_rademacher_ns);
  std::ostringstream js;
  js << "{\"host\": \"" << model << "\", \"cpus_allowed\": " << affinity << ", \"omp_max\": " << max_t
     << ", \"avx512f\": " << (avx512 ? "true" : "false") << ", \"rows\": [";
  for (size_t i = 0; i < rows.size(); i++) {
    const Row& r = rows[i];
    js << (i ? ", " : "") << "{\"threads\": " << r.threads << ", \"z_gvalues_s\": " << r.z_gvalues_s
       << ", \"triad_gb_s\": " << r.triad_gb_s << ", \"rmw_gb_s\": " << r.rmw_gb_s << ", \"update_ns_per_weight\": " << r.update_ns_per_weight
       << ", \"cpu_over_wall\": " << r.update_parallelism << ", \"steal_s\": " << r.steal_s
       << ", \"update_fp8_ns_per_weight\": " << r.update_fp8_ns
       << ", \"update_rademacher_ns_per_weight\": " << r.update_rademacher_ns
       << ", \"before_update_ns_per_weight\": " << r.before_ns << ", \"before_cpu_over_wall\": " << r.before_parallelism
       << ", \"before_rademacher_ns_per_weight\": " << r.before_rademacher_ns
       << "}";
  }
  js << "]}";
  std::printf("%s\n", js.str().c_str());
  return 0;
}
