// zo bench ...: throughput benchmarks (see bench/README.md).
#include "zo/bench.h"
#include "zo/cli/cli.h"

namespace zo::cli {

void add_bench(CLI::App& app, Runner& run) {
  auto* b = app.add_subcommand("bench", "Benchmarks: throughput against the measured hardware ceiling");
  b->require_subcommand(1);
  auto a = std::make_shared<BenchForwardArgs>();
  auto* f = b->add_subcommand("forward",
                              "Forward throughput on OPT-125m- and SmolLM-135M-shaped weights: tokens/s, GFLOP/s, "
                              "and the OpenBLAS sgemm rate on the same GEMM shapes, measured in the same run");
  f->add_option("--shapes", a->shapes, "Model shapes: opt-125m, smollm-135m (comma separated)")->capture_default_str();
  f->add_option("--batches", a->batches, "BxT pairs, comma separated")->capture_default_str();
  f->add_option("--repeat", a->repeat, "Timed repetitions (the median is reported)")->capture_default_str()->check(CLI::Range(1, 1000));
  f->add_option("--dtype", a->dtype, "Master weight storage: f32 or bf16")->capture_default_str();
  f->add_flag("--json", a->json, "Print the results as one JSON object on the last line");
  f->callback([&run, a] { run = [a] { return bench_forward(*a); }; });
}

}  // namespace zo::cli
