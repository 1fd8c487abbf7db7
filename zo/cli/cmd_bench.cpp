// zo bench ...: throughput benchmarks (see bench/README.md).
#include <map>
#include <string>

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

  auto t = std::make_shared<BenchTrainArgs>();
  auto* tr = b->add_subcommand("train",
                               "MeZO training steps on SST-2 batches (rows in file order, as tools/mezo_torch.py): "
                               "steps/s, tokens/s, time split, peak RSS; --mode inference scores the same batches");
  tr->add_option("--shape", t->shape, "Random-weight shape: opt-125m, smollm-135m, opt-1.3b, opt-2.7b, opt-6.7b, opt-13b, opt-30b, opt-66b")->capture_default_str();
  tr->add_option("--model,-m", t->model, "A real checkpoint instead (folder, .gguf, or 'default')");
  tr->add_option("--data,-d", t->data, "SST-2 JSONL (or --seq-len for random prompts)");
  tr->add_option("--mode", t->mode, "train, or inference (one scoring forward per batch: the memory baseline)")
      ->capture_default_str();
  tr->add_option("--steps", t->steps, "Timed steps")->capture_default_str()->check(CLI::Range(1, 1000000));
  tr->add_option("--warmup", t->warmup, "Untimed steps first")->capture_default_str()->check(CLI::Range(0, 1000000));
  tr->add_option("--batch", t->batch, "Examples per step")->capture_default_str()->check(CLI::Range(1, 65536));
  tr->add_option("--lr", t->lr, "Learning rate")->capture_default_str();
  tr->add_option("--eps", t->eps, "Perturbation scale")->capture_default_str();
  tr->add_option("--dist", t->dist, "Direction distribution: gaussian or rademacher (cheaper to regenerate)")
      ->capture_default_str()
      ->check(CLI::IsMember({"gaussian", "rademacher"}));
  tr->add_option("--offload", t->offload,
                 "none, or disk: masters in a file (reports storage bytes per step, the file's cold read rate, "
                 "the fast tier's measured peak)")
      ->capture_default_str();
  tr->add_option("--offload-file", t->offload_file, "Disk tier file (default: in $TMPDIR, removed at once)");
  tr->add_flag("--cold", t->cold,
               "Disk tier: write back and drop the file's page cache every step, as on a machine whose RAM "
               "holds only the budget");
  tr->add_option("--seq-len", t->seq_len, "Without --data: random prompts of this many tokens (no tokenizer needed)");
  tr->add_option("--device", t->device, "cpu, or cuda (the GPU engine; reports link bytes and rates, GEMM rate "
                                        "against cuBLAS in the same run, peak device memory)")
      ->capture_default_str();
  byte_size(tr->add_option("--gpu-mem", t->gpu_mem,
                           "cuda: device bytes for weights and buffers; the rest streams (0: all resident)"));
  byte_size(tr->add_option("--gpu-reserve", t->gpu_reserve, "cuda with --gpu-mem: bytes kept for activations"));
  tr->add_option("--wire-dtype", t->wire, "cuda: how streamed blocks travel: f32, bf16, f16, fp8")->capture_default_str();
  tr->add_option("--gemm", t->gemm, "cuda: f32, tf32 or bf16 GEMMs")->capture_default_str();
  tr->add_option("--device-updates", t->device_updates,
                 "cuda with --gpu-mem: streamed blocks updated on the GPU and sent back as f32 (two-way), "
                 "the others on the host (the same results either way); auto: chosen at each step by a "
                 "timing model of the pass fed with the last step's measured compute, host and link times")
      ->transform(CLI::Transformer(std::map<std::string, int>{{"auto", -1}}))
      ->capture_default_str();
  tr->add_option("--placement", t->placement,
                 "cuda with --gpu-mem: which blocks stream: auto (the planner's rule: tail one-way, spread when "
                 "--device-updates is not 0, auto included), tail (alternating with resident blocks over the end of the model), spread "
                 "(over the whole model, each last in its group) or first (the rule auto replaced: block 0 streams); "
                 "the others are there to measure against auto in one run")
      ->capture_default_str();
  tr->add_flag("--json", t->json, "Print the result as one JSON object on the last line");
  tr->callback([&run, t] { run = [t] { return bench_train(*t); }; });
}

}  // namespace zo::cli
