#include "zo/train.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <optional>

#include "core/error.h"
#include "core/philox.h"
#include "core/json_num.h"
#include "core/wire.h"
#include "models/load.h"
#include "models/tokenizer.h"
#include "zo/bench.h"
#include "zo/data.h"
#include "zo/device.h"
#include "offload/residency.h"
#include "zo/defaults.h"
#include "zo/objective.h"
#include "zo/progress.h"
#include "zo/spsa.h"
#include "zo/task.h"
#include "zo/version.h"

namespace zo {
namespace fs = std::filesystem;
using json = nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Configuration

#define ZO_TRAIN_FIELDS(X)                                                                           \
  X(model) X(dtype) X(task) X(data) X(tmpl) X(label_field) X(label_words) X(n_train) X(n_dev) X(n_test) \
  X(data_seed) X(max_length) X(steps) X(batch) X(lr) X(eps) X(wd) X(momentum) X(seed) X(directions)   \
  X(one_sided) X(dist) X(optimizer) X(schedule) X(warmup) X(params) X(freeze) X(objective)            \
  X(eval_every) X(eval_batch) X(eval_at_start) X(test_at_best) X(fsync) X(offload) X(offload_file) X(ram_budget) \
  X(device) X(gpu_mem) X(gpu_reserve) X(wire_dtype) X(gemm) X(device_updates)

namespace {
// Config keys use the flag spelling: n_train -> "n-train"; tmpl -> "template".
std::string key_of(const char* field) {
  std::string k(field);
  if (k == "tmpl") return "template";
  for (char& ch : k)
    if (ch == '_') ch = '-';
  return k;
}
}  // namespace

json TrainConfig::to_json() const {
  json j;
#define X(f) j[key_of(#f)] = f;
  ZO_TRAIN_FIELDS(X)
#undef X
  return j;
}

namespace {
// One config value: integers through json_integer (a float out of an int's range would be undefined
// behaviour in get_to), the rest as nlohmann converts them (a wrong type throws).
template <typename T>
void read_field(const json& v, T& out, const std::string& key, const std::string& where) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    if (!json_integer(v, &out)) fail("{}: '{}' must be an integer in range (got {})", where, key, v.dump());
  } else {
    try {
      v.get_to(out);
    } catch (const json::exception& e) {
      fail("{}: '{}': {}", where, key, e.what());
    }
  }
}
}  // namespace

TrainConfig TrainConfig::from_json(const json& j, const std::string& where, const TrainConfig& base) {
  ZO_CHECK(j.is_object(), "{}: a training config must be a JSON object", where);
  TrainConfig c = base;
  std::vector<std::string> known;
#define X(f) known.push_back(key_of(#f));
  ZO_TRAIN_FIELDS(X)
#undef X
  for (auto& [k, v] : j.items()) {
    (void)v;
    ZO_CHECK(std::find(known.begin(), known.end(), k) != known.end(), "{}: unknown key '{}'", where, k);
  }
  try {
#define X(f) \
  if (j.contains(key_of(#f))) read_field(j.at(key_of(#f)), c.f, key_of(#f), where);
    ZO_TRAIN_FIELDS(X)
#undef X
  } catch (const json::exception& e) {
    fail("{}: {}", where, e.what());
  }
  return c;
}

TrainConfig TrainConfig::from_json(const json& j, const std::string& where) { return from_json(j, where, TrainConfig()); }

void TrainConfig::validate() const {
  ZO_CHECK(!data.empty(), "no training data: give --data FILE.jsonl");
  ZO_CHECK(dtype == "f32", "--dtype {}: training keeps f32 master weights (bf16 masters would round updates away)", dtype);
  ZO_CHECK(n_train >= 1 && n_dev >= 0 && n_test >= 0, "--n-train must be >= 1, --n-dev and --n-test >= 0");
  ZO_CHECK(steps >= 0 && batch >= 1 && batch <= 1 << 16, "--steps must be >= 0 and --batch in 1..65536");
  ZO_CHECK(std::isfinite(lr) && lr >= 0, "--lr {}: expected a number >= 0", lr);
  ZO_CHECK(std::isfinite(eps) && eps > 0, "--eps {}: expected a positive number", eps);
  ZO_CHECK(std::isfinite(wd) && wd >= 0, "--wd {}: expected a number >= 0", wd);
  ZO_CHECK(momentum >= 0 && momentum < 1, "--momentum {}: expected [0, 1)", momentum);
  ZO_CHECK(directions >= 1 && directions <= 4096, "--directions {}: expected 1..4096", directions);
  ZO_CHECK(dist == "gaussian" || dist == "rademacher", "--dist '{}': expected gaussian or rademacher", dist);
  ZO_CHECK(optimizer == "sgd" || optimizer == "momentum" || optimizer == "sign",
           "--optimizer '{}': expected sgd, momentum or sign", optimizer);
  ZO_CHECK(schedule == "constant" || schedule == "linear" || schedule == "cosine",
           "--schedule '{}': expected constant, linear or cosine", schedule);
  ZO_CHECK(warmup >= 0, "--warmup must be >= 0");
  ZO_CHECK(objective == "ce" || objective == "nll" || objective == "accuracy",
           "--objective '{}': expected ce, nll or accuracy", objective);
  ZO_CHECK(eval_every >= 0 && eval_batch >= 1, "--eval-every must be >= 0 and --eval-batch >= 1");
  ZO_CHECK(max_length >= 0, "--max-length must be >= 0");
  parse_fsync(fsync);
  ZO_CHECK(offload == "none" || offload == "disk", "--offload '{}': expected none or disk", offload);
  ZO_CHECK(ram_budget >= 0, "--ram-budget must be >= 0");
  ZO_CHECK(!(offload == "disk" && optimizer == "momentum"),
           "--optimizer momentum keeps a model-sized state in RAM: not available with --offload disk");
  ZO_CHECK(device == "cpu" || device == "cuda", "--device '{}': expected cpu or cuda", device);
  ZO_CHECK(gpu_mem >= 0 && gpu_reserve >= 0, "--gpu-mem and --gpu-reserve must be >= 0");
  parse_wire_dtype(wire_dtype);
  ZO_CHECK(gemm == "f32" || gemm == "tf32" || gemm == "bf16", "--gemm '{}': expected f32, tf32 or bf16", gemm);
  check_device_updates(device_updates, device, gpu_mem);
  if (device == "cpu")
    ZO_CHECK(gpu_mem == 0, "--gpu-mem applies to --device cuda");
  else {
    ZO_CHECK(offload == "none", "--offload disk is the CPU's tier; with --device cuda, --gpu-mem streams blocks from RAM");
    ZO_CHECK(directions <= 16, "--device cuda: at most 16 directions per step (got {})", directions);
  }
}

namespace {
// The disk tier's RAM need: the globals stay resident; blocks come and go (two at a time, with slack).
void check_budget(const Model& m, double budget) {
  if (budget <= 0) return;
  size_t globals = 0;
  for (const Param& p : m.params)
    if (p.block < 0) globals += p.numel * dtype_size(m.storage);
  double need = double(globals) + 2.0 * double(m.max_block_numel()) * double(dtype_size(m.storage));
  ZO_CHECK(need <= budget, "--ram-budget {:.0f} MiB is below what the disk tier needs resident: {:.0f} MiB (embeddings, "
           "head and norms {:.0f} MiB + two blocks of {:.0f} MiB)",
           budget / 1048576.0, need / 1048576.0, double(globals) / 1048576.0,
           double(m.max_block_numel()) * double(dtype_size(m.storage)) / 1048576.0);
}
}  // namespace

double lr_at(const TrainConfig& c, long t) {
  if (c.warmup > 0 && t < c.warmup) return c.lr * double(t + 1) / double(c.warmup);
  if (c.schedule == "constant" || c.steps <= c.warmup) return c.lr;
  double p = double(t - c.warmup) / double(c.steps - c.warmup);
  p = std::min(1.0, std::max(0.0, p));
  if (c.schedule == "linear") return c.lr * (1.0 - p);
  return c.lr * 0.5 * (1.0 + std::cos(M_PI * p));
}

uint64_t weights_hash(const Model& m) {
  uint64_t h = rng::splitmix64(m.params.size());
  for (const Param& p : m.params) {
    h = rng::splitmix64(h ^ rng::fnv1a64(p.name.data(), p.name.size()));
    for (int64_t d : p.shape) h = rng::splitmix64(h ^ uint64_t(d));
  }
  ZO_CHECK(m.storage == DType::F32, "weights_hash: f32 masters expected");
  const uint32_t* w = static_cast<const uint32_t*>(m.arena());
  const size_t n = m.numel(), kPiece = size_t(1) << 20;
  const long np = long((n + kPiece - 1) / kPiece);
  std::vector<uint64_t> part(static_cast<size_t>(np));
  // Pieces in groups of 16 (64 MiB), so that a disk-tier model is read a group at a time.
  int next_block = 0;
  for (long g0 = 0; g0 < np; g0 += 16) {
    const long g1 = std::min(np, g0 + 16);
#pragma omp parallel for schedule(static)
    for (long c = g0; c < g1; c++) {
      uint64_t x = uint64_t(c) * 0x9e3779b97f4a7c15ull;
      size_t e = std::min(n, size_t(c + 1) * kPiece);
      for (size_t i = size_t(c) * kPiece; i < e; i++) x = (x ^ w[i]) * 0x100000001b3ull + (x >> 29);
      part[size_t(c)] = x;
    }
    const size_t done = std::min(n, size_t(g1) * kPiece);
    while (next_block < m.cfg.n_layers && m.block_end(next_block) <= done) m.release_block(next_block++, false);
  }
  for (uint64_t x : part) h = rng::splitmix64(h ^ x);
  return h;
}

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::atomic<int> g_stop{0};
extern "C" void on_stop_signal(int sig) {
  g_stop.store(1);
  std::signal(sig, SIG_DFL);  // a second Ctrl-C ends the process at once (the log stays readable)
}

// A permutation of 0..n-1 from a seed (Fisher-Yates over splitmix64: the same on every platform).
std::vector<long> permutation(long n, uint64_t seed) {
  std::vector<long> p(static_cast<size_t>(n));
  for (long i = 0; i < n; i++) p[size_t(i)] = i;
  uint64_t s = seed;
  for (long i = n - 1; i > 0; i--) {
    s = rng::splitmix64(s);
    long j = long(s % uint64_t(i + 1));
    std::swap(p[size_t(i)], p[size_t(j)]);
  }
  return p;
}

void write_atomic(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    ZO_CHECK(f.good(), "{}: cannot write", tmp);
    f << text;
    f.flush();
    ZO_CHECK(f.good(), "{}: write failed", tmp);
  }
  fs::rename(tmp, path);
}

json read_json_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  ZO_CHECK(f.good(), "{}: cannot open", path);
  try {
    return json::parse(f);
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
}

}  // namespace

json read_best(const std::string& dir) {
  const fs::path p = fs::path(dir) / "best.json";
  if (!fs::exists(p)) return json();
  json best = read_json_file(p.string());  // from disk: checked before its numbers are used
  long s = 0;
  ZO_CHECK(best.is_object() && best.contains("steps") && json_integer(best["steps"], &s) && s >= 0 &&
               best.contains("dev_loss") && best["dev_loss"].is_number(),
           "{}: best.json is malformed (expected {{\"steps\": N, \"dev_loss\": X}}); remove it to rebuild it", dir);
  return best;
}

namespace {

TaskSpec task_of(const TrainConfig& c) {
  if (!c.tmpl.empty() || !c.label_words.empty()) {
    ZO_CHECK(!c.tmpl.empty() && c.label_words.size() >= 2, "--template and at least two --label-words go together");
    return task_from_json({{"name", "custom"}, {"template", c.tmpl}, {"label_words", c.label_words},
                           {"label_field", c.label_field}},
                          "config");
  }
  return task_from_name(c.task);
}

// The run's data: train / dev / test carved from one file by a seeded permutation, disjoint.
struct RunData {
  TaskSpec task;
  bool cls = true;
  ClassData train, dev, test;                         // classification
  std::vector<std::vector<int32_t>> ltrain, ldev, ltest;  // lm
  long n_train() const { return cls ? long(train.examples.size()) : long(ltrain.size()); }
};

RunData load_data(const TrainConfig& c, const Tokenizer& tok, int model_ctx) {
  RunData d;
  d.task = task_of(c);
  d.cls = d.task.kind == TaskSpec::Kind::Classification;
  auto rows = read_jsonl(c.data);
  long n = long(rows.size());
  ZO_CHECK(n >= c.n_train + c.n_dev + 1 || (n >= c.n_train + c.n_dev && c.n_test == 0),
           "{}: {} rows, but --n-train {} + --n-dev {} need more (plus at least one test row unless --n-test 0)",
           c.data, n, c.n_train, c.n_dev);
  long n_test = std::min(c.n_test, n - c.n_train - c.n_dev);
  auto perm = permutation(n, rng::splitmix64(c.data_seed ^ 0x64617461ull));
  auto take = [&](long from, long count) {
    std::vector<json> out;
    for (long i = from; i < from + count; i++) out.push_back(std::move(rows[size_t(perm[size_t(i)])]));
    return out;
  };
  auto tr = take(0, c.n_train), dv = take(c.n_train, c.n_dev), te = take(c.n_train + c.n_dev, n_test);
  int max_len = c.max_length > 0 ? std::min(c.max_length, model_ctx) : model_ctx;
  if (d.cls) {
    d.train = encode_classification(d.task, tok, tr, c.data, max_len);
    d.dev = encode_classification(d.task, tok, dv, c.data, max_len);
    d.test = encode_classification(d.task, tok, te, c.data, max_len);
  } else {
    d.ltrain = encode_lm(d.task, tok, tr, c.data, max_len);
    if (!dv.empty()) d.ldev = encode_lm(d.task, tok, dv, c.data, max_len);
    if (!te.empty()) d.ltest = encode_lm(d.task, tok, te, c.data, max_len);
  }
  return d;
}

// Training examples of step t: consecutive draws from per-epoch permutations of the train split.
std::vector<long> batch_indices(const TrainConfig& c, long n_train, long t) {
  // The permutation of the current epoch is cached, keyed by everything it depends on.
  struct Cache {
    uint64_t data_seed = 0;
    long n_train = -1, epoch = -1;
    std::vector<long> perm;
  };
  static thread_local Cache cache;
  std::vector<long> idx;
  for (long i = 0; i < c.batch; i++) {
    long k = t * c.batch + i, epoch = k / n_train;
    if (cache.epoch != epoch || cache.n_train != n_train || cache.data_seed != c.data_seed)
      cache = {c.data_seed, n_train, epoch, permutation(n_train, rng::splitmix64(c.data_seed ^ uint64_t(epoch)) + 1)};
    idx.push_back(cache.perm[size_t(k % n_train)]);
  }
  return idx;
}

LossPlan classification_plan(const ClassData& d, const std::vector<long>& idx, const std::string& objective) {
  std::vector<const std::vector<int32_t>*> prompts;
  std::vector<int> labels;
  for (long i : idx) {
    prompts.push_back(&d.examples[size_t(i)].prompt);
    labels.push_back(d.examples[size_t(i)].label);
  }
  return classification_loss_plan(prompts, labels, d.candidates, objective);
}

LossPlan lm_plan(const std::vector<std::vector<int32_t>>& seqs, const std::vector<long>& idx) {
  std::vector<std::vector<int32_t>> chosen;
  for (long i : idx) chosen.push_back(seqs[size_t(i)]);
  return lm_loss_plan(chosen);
}

SpsaOptions spsa_options(const TrainConfig& c) {
  SpsaOptions o;
  o.eps = float(c.eps);
  o.n_dirs = c.directions;
  o.one_sided = c.one_sided;
  o.dist = c.dist == "rademacher" ? Dist::Rademacher : Dist::Gaussian;
  o.opt = c.optimizer == "momentum" ? OptKind::Momentum : c.optimizer == "sign" ? OptKind::Sign : OptKind::SGD;
  o.wd = float(c.wd);
  o.momentum = float(c.momentum);
  o.params = c.params;
  o.freeze = c.freeze;
  return o;
}

json eval_split(const Scorer& e, const RunData& d, const char* which, int batch) {
  EvalOptions o;
  o.batch_size = batch;
  o.progress = false;
  json j;
  j["split"] = which;
  std::string w(which);
  if (d.cls) {
    const ClassData& cd = w == "dev" ? d.dev : d.test;
    if (cd.examples.empty()) return json();
    EvalResult r = evaluate_classification(e, cd, o);
    j["loss"] = r.ce;
    j["gold_nll"] = r.loss;
    j["accuracy"] = r.accuracy;
    j["examples"] = r.examples;
    j["seconds"] = r.seconds;
  } else {
    const auto& s = w == "dev" ? d.ldev : d.ltest;
    if (s.empty()) return json();
    EvalResult r = evaluate_lm(e, s, o);
    j["loss"] = r.loss;
    j["perplexity"] = r.perplexity;
    j["examples"] = r.examples;
    j["seconds"] = r.seconds;
  }
  return j;
}

void append_line(std::ofstream& f, const json& j) {
  f << j.dump() << '\n';
  f.flush();
}

// A string field of a run's log header (from disk: its type checked before use); fallback if absent.
std::string header_string(const json& h, const char* key, const std::string& fallback, const std::string& path) {
  if (!h.contains(key)) return fallback;
  ZO_CHECK(h[key].is_string(), "{}: the log header's '{}' is not a string", path, key);
  return h[key].get<std::string>();
}

}  // namespace

Model rebuild_from_run(const std::string& dir, long n_steps, json* info, bool progress) {
  std::string log_path = (fs::path(dir) / "steps.zolog").string();
  StepLogContents log = read_step_log(log_path);
  if (!log.torn_warning.empty()) fmt::print(stderr, "warning: {}\n", log.torn_warning);
  ZO_CHECK(log.header.contains("config") && log.header.contains("base_hash"), "{}: header lacks config or base_hash",
           log_path);
  TrainConfig cfg = TrainConfig::from_json(log.header["config"], log_path + " header");
  std::string path = header_string(log.header, "model_path", cfg.model, log_path);
  LoadOptions lo{DType::F32};
  if (cfg.offload == "disk") lo.backing_file = (fs::path(dir) / fmt::format("rebuild-{}.f32", ::getpid())).string();
  Model m = load_model(path, lo);
  if (!lo.backing_file.empty()) ::unlink(lo.backing_file.c_str());  // the mapping keeps it until we are done
  uint64_t h = weights_hash(m);
  const std::string logged_hash = header_string(log.header, "base_hash", "", log_path);
  ZO_CHECK(fmt::format("{:016x}", h) == logged_hash, "{}: the base checkpoint {} has hash {:016x}, the log was made on {}",
           log_path, path, h, logged_hash);
  long n = long(log.records.size());
  ZO_CHECK(n_steps <= n, "{}: the weights after {} steps were asked, the log holds {}", log_path, n_steps, n);
  long last = n_steps < 0 ? n - 1 : n_steps - 1;
  Engine e(m);
  Spsa spsa(m, e, spsa_options(cfg));
  Progress bar("replay", last + 1, progress && last >= 0);
  for (long t = 0; t <= last; t++) {
    spsa.apply(log.records[size_t(t)]);
    if ((t & 15) == 0) bar.update(t + 1);
  }
  bar.finish();
  if (info) {
    *info = log.header;
    (*info)["replayed_steps"] = last + 1;
    (*info)["logged_steps"] = n;
  }
  return m;
}

// Until the step log exists, a failed setup leaves nothing behind that it made: the masters file
// it created (the disk tier: as large as the model) and the run folder, if it created it and it is
// still empty. A bad data file or tokenizer found after the model's load costs no disk.
struct SetupGuard {
  fs::path dir, masters;
  bool made_dir = false, made_masters = false, armed = true;
  ~SetupGuard() {
    if (!armed) return;
    std::error_code ec;
    if (made_masters) fs::remove(masters, ec);
    if (made_dir && fs::is_empty(dir, ec)) fs::remove(dir, ec);
  }
};

json run_train(TrainConfig cfg, const RunOptions& o) {
  ZO_CHECK(!o.out.empty(), "no run folder: give --out DIR");
  const fs::path dir(o.out);
  const std::string log_path = (dir / "steps.zolog").string(), cfg_path = (dir / "config.json").string();
  StepLogContents prior;
  if (o.resume) {
    ZO_CHECK(fs::exists(log_path), "{}: no run to resume (no steps.zolog)", o.out);
    long steps = cfg.steps;
    prior = read_step_log(log_path);
    if (!prior.torn_warning.empty()) fmt::print(stderr, "warning: {}\n", prior.torn_warning);
    // The log's header is the authority (config.json is a copy for people to read).
    ZO_CHECK(prior.header.contains("config"), "{}: the log header has no config", log_path);
    cfg = TrainConfig::from_json(prior.header["config"], log_path + " header");
    if (steps > cfg.steps) cfg.steps = steps;  // --steps may extend a run
  } else {
    ZO_CHECK(!fs::exists(log_path), "{}: holds a run already (use --resume, or another --out)", o.out);
  }
  cfg.validate();
  const std::string model_path =
      o.resume ? header_string(prior.header, "model_path", cfg.model, log_path) : resolve_model(cfg.model);
  SetupGuard guard;
  guard.dir = dir;
  guard.made_dir = !fs::exists(dir);
  fs::create_directories(dir);

  auto t_setup = Clock::now();
  LoadOptions lo{DType::F32};
  if (cfg.offload == "disk") {
    lo.backing_file = cfg.offload_file.empty() ? (dir / "masters.f32").string() : cfg.offload_file;
    guard.masters = lo.backing_file;
    guard.made_masters = !fs::exists(lo.backing_file);
  }
  Model m = load_model(model_path, lo);  // a resumed disk-tier run starts again from the base: replay below
  check_budget(m, cfg.ram_budget);
  m.track_resident(cfg.offload == "disk");
  Tokenizer tok = load_tokenizer(model_path);
  const std::string base_hash = fmt::format("{:016x}", weights_hash(m));
  RunData data = load_data(cfg, tok, m.cfg.max_pos);
  Engine e(m);
  Spsa spsa(m, e, spsa_options(cfg));
  if (cfg.device == "cuda" && !o.device_factory) {  // before anything is written: no run left behind
    ZO_CHECK(cuda_built(), "--device cuda: this zo was built without the CUDA toolkit (install nvcc and rebuild)");
    ZO_CHECK(cuda_devices() > 0, "--device cuda: no CUDA device is visible (no driver or no GPU)");
    plan_residency(m, size_t(cfg.gpu_mem), cfg.gpu_mem > 0 ? size_t(cfg.gpu_reserve) : 0, parse_wire_dtype(cfg.wire_dtype),
                   cfg.device_updates != 0);
  }
  // The device starts from the base weights; a resumed run's replay below goes through it, so its
  // optimizer state (momentum) is rebuilt where it lives.
  std::unique_ptr<StepDevice> dev;
  Scorer scorer = engine_scorer(e);
  if (cfg.device == "cuda") {
    DeviceOptions dopt;
    dopt.gemm = cfg.gemm;
    dopt.gpu_mem = size_t(cfg.gpu_mem);
    dopt.reserve = cfg.gpu_mem > 0 ? size_t(cfg.gpu_reserve) : 0;
    dopt.wire = cfg.wire_dtype;
    dopt.device_updates = cfg.device_updates;
    dev = o.device_factory ? o.device_factory(m) : make_cuda_device(m, dopt);
    spsa.set_device(dev.get());
    StepDevice* d = dev.get();
    scorer = [d](const Batch& b, const std::vector<int32_t>* keep, const std::vector<int32_t>& rows,
                 const std::vector<int32_t>& ids) { return d->logprobs(b, keep, rows, ids); };
    if (!o.quiet) fmt::print(stderr, "device: {}\n", dev->describe());
  }
  if (!o.quiet)
    fmt::print(stderr,
               "zo train: {} ({:.1f}M parameters, {:.1f}M trained), {} train / {} dev / {} test examples\n"
               "memory: weights {:.0f} MiB, optimizer state {:.0f} MiB{}, working copies {:.0f} MiB\n",
               model_path, double(m.numel()) / 1e6, double(spsa.n_trainable()) / 1e6, data.n_train(),
               data.cls ? data.dev.examples.size() : data.ldev.size(),
               data.cls ? data.test.examples.size() : data.ltest.size(), double(m.bytes()) / 1048576.0,
               double(spsa.momentum_bytes()) / 1048576.0, cfg.optimizer == "momentum" ? " (momentum: one f32 per weight)" : "",
               2.0 * double(m.max_block_numel()) * 4 / 1048576.0);

  json header;
  header["format"] = "zo step log";
  header["zo_version"] = version();
  header["model_path"] = model_path;
  header["base_hash"] = base_hash;
  header["config"] = cfg.to_json();
  long start = 0;
  std::optional<StepLogWriter> log;
  if (o.resume) {
    const std::string logged_hash = header_string(prior.header, "base_hash", "", log_path);
    ZO_CHECK(logged_hash == base_hash,
             "{}: the base checkpoint {} changed since the run began (hash {} now, {} in the log)", o.out, model_path,
             base_hash, logged_hash);
    Progress bar("replay", long(prior.records.size()), o.progress && !prior.records.empty());
    for (auto& r : prior.records) {
      spsa.apply(r);
      start++;
      bar.update(start);
    }
    bar.finish();
    log.emplace(StepLogWriter::append_to(log_path, prior.valid_bytes, parse_fsync(cfg.fsync)));
  } else {
    write_atomic(cfg_path, cfg.to_json().dump(2) + "\n");
    log.emplace(StepLogWriter::create(log_path, header, parse_fsync(cfg.fsync)));
  }
  guard.armed = false;  // the run exists: its files stay
  std::ofstream metrics((dir / "metrics.jsonl").string(), std::ios::app);
  ZO_CHECK(metrics.good(), "{}: cannot open metrics.jsonl", o.out);
  json best = read_best(o.out);
  json summary;
  summary["setup_seconds"] = since(t_setup);

  auto evaluate = [&](long step_done, const char* which) {
    if (!dev) spsa.flush();  // a device evaluates its own weights
    json r = eval_split(scorer, data, which, cfg.eval_batch);
    if (r.is_null()) return r;
    r["type"] = "eval";
    r["step"] = step_done;  // weights after this many steps
    append_line(metrics, r);
    if (!o.quiet)
      fmt::print(stderr, "\n[eval] after {} steps: {} loss {:.4f}{}\n", step_done, which, r["loss"].get<double>(),
                 r.contains("accuracy") ? fmt::format("  accuracy {:.4f}", r["accuracy"].get<double>()) : "");
    if (std::string(which) == "dev" && (best.is_null() || r["loss"].get<double>() < best["dev_loss"].get<double>())) {
      best = {{"steps", step_done}, {"dev_loss", r["loss"]}};
      if (r.contains("accuracy")) best["dev_accuracy"] = r["accuracy"];
      write_atomic((dir / "best.json").string(), best.dump(2) + "\n");
    }
    return r;
  };

  if (start == 0 && cfg.eval_at_start) {
    summary["dev_at_start"] = evaluate(0, "dev");
    summary["test_at_start"] = evaluate(0, "test");
  }

  g_stop.store(0);
  auto old_int = std::signal(SIGINT, on_stop_signal);
  auto old_term = std::signal(SIGTERM, on_stop_signal);
  auto t_train = Clock::now();
  long done_here = 0, tokens = 0, skipped = 0;
  bool stopped = false;
  Progress bar("train", cfg.steps, o.progress);
  double ema = std::nan("");
  for (long t = start; t < cfg.steps; t++) {
    if (g_stop.load() || (o.stop_after >= 0 && done_here >= o.stop_after)) {
      stopped = true;
      break;
    }
    auto idx = batch_indices(cfg, data.n_train(), t);
    LossPlan plan = data.cls ? classification_plan(data.train, idx, cfg.objective) : lm_plan(data.ltrain, idx);
    std::vector<uint64_t> seeds;
    for (int d = 0; d < cfg.directions; d++) seeds.push_back(rng::direction_seed(cfg.seed, uint64_t(t), uint32_t(d)));
    auto ts = Clock::now();
    StepRecord r = spsa.step(uint64_t(t), seeds, float(lr_at(cfg, t)), plan);
    log->append(r);  // logged before it is applied: the log is the truth
    spsa.set_pending(r);
    double sec = since(ts);
    done_here++;
    tokens += long(plan.batch.n_tokens()) * (cfg.one_sided ? cfg.directions + 1 : 2 * cfg.directions);
    skipped += r.skipped();
    double loss = 0.5 * (r.loss_a + r.loss_b);
    if (!r.skipped()) ema = std::isnan(ema) ? loss : 0.95 * ema + 0.05 * loss;
    json sj = {{"type", "step"}, {"step", t}, {"loss", loss}, {"loss_a", r.loss_a}, {"loss_b", r.loss_b},
               {"g", r.g}, {"lr", r.lr}, {"seconds", sec}, {"tokens", plan.batch.n_tokens()}};
    if (r.skipped()) sj["skipped"] = true;
    append_line(metrics, sj);
    if (r.skipped() && !o.quiet) fmt::print(stderr, "\nstep {}: non-finite loss, step skipped (logged, not applied)\n", t);
    bar.update(t + 1, fmt::format("loss {:.4f} (avg {:.4f}) g {:+.3g}", loss, ema, double(r.g[0])));
    if (cfg.eval_every > 0 && (t + 1) % cfg.eval_every == 0 && t + 1 < cfg.steps) evaluate(t + 1, "dev");
  }
  const double train_sec = since(t_train);
  bar.finish();
  std::signal(SIGINT, old_int);
  std::signal(SIGTERM, old_term);
  spsa.flush();
  log->sync();
  const long steps_done = start + done_here;

  summary["run"] = o.out;
  summary["model"] = model_path;
  summary["base_hash"] = base_hash;
  summary["steps"] = steps_done;
  summary["steps_this_process"] = done_here;
  summary["skipped_steps"] = skipped;
  summary["stopped"] = stopped;
  summary["train_seconds"] = train_sec;
  summary["steps_per_second"] = train_sec > 0 ? double(done_here) / train_sec : 0.0;
  summary["tokens_per_second"] = train_sec > 0 ? double(tokens) / train_sec : 0.0;
  const StepTimes& st = spsa.times();
  summary["seconds"] = {{"forward", st.forward}, {"head", st.head}, {"perturb", st.perturb}, {"update", st.update}};
  summary["trainable_parameters"] = spsa.n_trainable();
  summary["peak_rss_bytes"] = peak_rss_bytes();
  if (dev) summary["device"] = {{"kind", "cuda"}, {"plan", dev->plan()}, {"stats", dev->stats()}};
  if (m.file_backed()) {
    summary["offload"] = {{"file", m.backing_file()}, {"masters_bytes", m.bytes()},
                          {"ram_budget_bytes", cfg.ram_budget}, {"fast_tier_peak_bytes", m.peak_resident_bytes()}};
  }
  if (!stopped) {
    summary["dev_final"] = evaluate(steps_done, "dev");
    summary["test_final"] = evaluate(steps_done, "test");
    summary["best"] = best;
    if (cfg.test_at_best && !best.is_null() && best["steps"].get<long>() != steps_done && !summary["test_final"].is_null()) {
      long bs = best["steps"].get<long>();
      if (bs == 0) {
        summary["test_at_best"] = summary["test_at_start"];
      } else {
        // The best weights are base + the log's first bs records: rebuild, never stored.
        Model mb = rebuild_from_run(o.out, bs, nullptr, o.progress);
        Engine eb(mb);
        summary["test_at_best"] = eval_split(engine_scorer(eb), data, "test", cfg.eval_batch);
      }
    } else if (!best.is_null()) {
      summary["test_at_best"] = summary["test_final"];
    }
  }
  write_atomic((dir / "summary.json").string(), summary.dump(2) + "\n");
  return summary;
}

}  // namespace zo
