#!/usr/bin/env python3
"""PyTorch/transformers baseline for `zo bench forward`: the same model shapes, batches and work.

Run (never touches the network; random weights, nothing is downloaded):
    /work/venv/bin/python tools/bench_forward_torch.py [--shapes opt-125m,smollm-135m]
        [--batches 16x64,4x512] [--repeat 5] [--threads 2] [--attn sdpa,eager] [--json]

Models: OPTForCausalLM with the facebook/opt-125m config and LlamaForCausalLM with the
HuggingFaceTB/SmolLM2-135M config, f32, eval(), torch.inference_mode(), use_cache=False (zo keeps no
KV cache in a scoring forward either), no attention mask (all sequences have length T, as in zo's bench).
Per shape x BxT x attention implementation, timed as the median of --repeat runs after one warm-up:
  keep1: model(ids, logits_to_keep=1).logits, then log_softmax and gather of 2 candidate ids at the
         last position: what zo's "candidate scoring" computes (vocabulary at one row per sequence).
  full:  model(ids).logits: all positions' logits, what a transformers user usually computes to score.
  linear_gflops_same_shapes: torch.nn.functional.linear (MKL) GFLOP/s on the block GEMM shapes zo's bench
         uses for its sgemm ceiling (median per shape, total FLOPs / total time).
Each combination runs in its own child process so its peak RSS is its own. Random init in transformers
briefly holds more than the weights, so after building the model the child resets the kernel's peak-RSS
mark (/proc/self/clear_refs, "5") and the forward peaks (getrusage ru_maxrss) cover loaded model +
forward only; peak_rss_bytes_process keeps the whole-process peak including init. The child measures
keep1 first, records the peak, then full (whose logits tensor alone is B*T*V*4 bytes).
--json prints one JSON object on the last line of stdout.
"""
import argparse
import gc
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

SHAPES = ("opt-125m", "smollm-135m")


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss():
    # Linux >= 4.0: writing 5 to clear_refs resets the peak RSS mark that ru_maxrss reports.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def build_model(shape, attn):
    # Published configs (facebook/opt-125m, HuggingFaceTB/SmolLM2-135M); weights random.
    from transformers import LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM
    if shape == "opt-125m":
        cfg = OPTConfig(vocab_size=50272, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        ffn_dim=3072, max_position_embeddings=2048, word_embed_proj_dim=768,
                        do_layer_norm_before=True, activation_function="relu", enable_bias=True,
                        dropout=0.0, attention_dropout=0.0, layerdrop=0.0, tie_word_embeddings=True,
                        pad_token_id=1, bos_token_id=2, eos_token_id=2)
        cls = OPTForCausalLM
    elif shape == "smollm-135m":
        cfg = LlamaConfig(vocab_size=49152, hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                          num_key_value_heads=3, head_dim=64, intermediate_size=1536, hidden_act="silu",
                          max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5,
                          tie_word_embeddings=True, bos_token_id=0, eos_token_id=0)
        cls = LlamaForCausalLM
    else:
        sys.exit(f"bench_forward_torch: unknown shape '{shape}' (known: {', '.join(SHAPES)})")
    model = cls._from_config(cfg, attn_implementation=attn)
    return model.eval()


def block_gemms(shape, n):
    # (M, N, K) of one block's linears at n tokens, y = x W^T, fused as zo's bench counts them:
    # q/k/v in one GEMM, and for LLaMA gate/up in one.
    if shape == "opt-125m":
        h, q, kv, f, fused = 768, 768, 768, 3072, 1
    else:
        h, q, kv, f, fused = 576, 576, 192, 1536, 2
    return [(n, q + 2 * kv, h), (n, h, q), (n, fused * f, h), (n, h, f)]


def linear_gflops(shape, n, repeat):
    # torch's own GEMM rate (MKL / oneDNN through F.linear) on the block shapes: its ceiling, to set
    # beside the OpenBLAS sgemm rate zo's bench measures.
    import torch
    flops = secs = 0.0
    for M, N, K in block_gemms(shape, n):
        x, w = torch.randn(M, K), torch.randn(N, K)
        secs += median_time(repeat, lambda: torch.nn.functional.linear(x, w))
        flops += 2.0 * M * N * K
    return flops / secs / 1e9


def median_time(repeat, fn):
    fn()  # warm-up: first touch of pages, oneDNN/MKL primitive caches, thread pool
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def run_one(shape, B, T, attn, repeat, threads):
    import inspect

    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(1234)
    rss_start = peak_rss_bytes()
    model = build_model(shape, attn)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())  # tied: counted once
    V = model.config.vocab_size
    gen = torch.Generator().manual_seed(7)
    ids = torch.randint(0, V, (B, T), generator=gen)
    cand = torch.tensor([11, 22])
    gc.collect()
    rss_process_load = peak_rss_bytes()
    reset = reset_peak_rss()
    has_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
    out = dict(shape=shape, batch=B, seq=T, tokens=B * T, attn=attn, threads=torch.get_num_threads(),
               weight_bytes=weight_bytes, rss_bytes_import=rss_start, rss_bytes_loaded=current_rss_bytes(),
               peak_rss_bytes_load=rss_process_load, peak_reset=reset, logits_to_keep_supported=has_keep)
    with torch.inference_mode():
        if has_keep:
            def score():
                last = model(ids, logits_to_keep=1, use_cache=False).logits[:, -1, :]
                return torch.log_softmax(last, dim=-1)[:, cand]
            t = median_time(repeat, score)
            out.update(keep1_seconds=t, keep1_tokens_per_second=B * T / t)
        else:
            out.update(keep1_seconds=None, keep1_tokens_per_second=None)
        out["peak_rss_bytes_keep1"] = peak_rss_bytes()

        def full():
            return model(ids, use_cache=False).logits
        t = median_time(repeat, full)
        out.update(full_seconds=t, full_tokens_per_second=B * T / t, peak_rss_bytes_full=peak_rss_bytes())
        out["linear_gflops_same_shapes"] = linear_gflops(shape, B * T, repeat)
    out["peak_rss_bytes_process"] = max(rss_process_load, out["peak_rss_bytes_full"])
    return out


def parse_batches(s):
    out = []
    for item in s.split(","):
        b, x, t = item.partition("x")
        if x != "x" or not b.isdigit() or not t.isdigit() or int(b) <= 0 or int(t) <= 0:
            sys.exit(f"bench_forward_torch: --batches: '{item}' is not BxT (e.g. 16x64)")
        out.append((int(b), int(t)))
    return out


def environment(threads):
    import torch
    import transformers
    cfg = torch.__config__.show()
    m = re.search(r"BLAS_INFO=([^,\s]+)", cfg)
    blas = m.group(1) if m else "unknown"
    mkl = next((ln.strip(" -") for ln in cfg.splitlines() if "Math Kernel Library" in ln), None)
    return dict(torch=torch.__version__, transformers=transformers.__version__, blas=blas, mkl=mkl,
                cpu_capability=torch.backends.cpu.get_cpu_capability(), threads=threads,
                mkldnn=torch.backends.mkldnn.is_available())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--batches", default="16x64,4x512")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--attn", default="sdpa,eager", help="attention implementations, comma separated")
    ap.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    ap.add_argument("--child", help=argparse.SUPPRESS)  # "shape:B:T:attn": run one combination, print JSON
    a = ap.parse_args()
    if a.repeat < 1 or a.threads < 1:
        sys.exit("bench_forward_torch: --repeat and --threads must be >= 1")

    if a.child:
        shape, B, T, attn = a.child.split(":")
        print(json.dumps(run_one(shape, int(B), int(T), attn, a.repeat, a.threads)))
        return

    env = environment(a.threads)
    print(f"torch {env['torch']} transformers {env['transformers']}, BLAS {env['blas']} ({env['mkl']}), "
          f"CPU capability {env['cpu_capability']}, {a.threads} threads", flush=True)
    results = []
    for shape in a.shapes.split(","):
        for B, T in parse_batches(a.batches):
            for attn in a.attn.split(","):
                cmd = [sys.executable, os.path.abspath(__file__), "--child", f"{shape}:{B}:{T}:{attn}",
                       "--repeat", str(a.repeat), "--threads", str(a.threads)]
                p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
                if p.returncode != 0:
                    sys.exit(f"bench_forward_torch: child {shape} {B}x{T} {attn} failed (exit {p.returncode})")
                r = json.loads(p.stdout.strip().splitlines()[-1])
                results.append(r)
                keep = f"{r['keep1_tokens_per_second']:8.0f}" if r["keep1_tokens_per_second"] else "     n/a"
                print(f"{shape:12} {B:>3}x{T:<4} {attn:5} full logits {r['full_tokens_per_second']:8.0f} tok/s | "
                      f"logits_to_keep=1 {keep} tok/s | peak RSS keep1 {r['peak_rss_bytes_keep1'] / 2**20:.0f} MiB, "
                      f"full {r['peak_rss_bytes_full'] / 2**20:.0f} MiB (weights {r['weight_bytes'] / 2**20:.0f} MiB, "
                      f"loaded {r['rss_bytes_loaded'] / 2**20:.0f} MiB, import {r['rss_bytes_import'] / 2**20:.0f} MiB, "
                      f"whole process {r['peak_rss_bytes_process'] / 2**20:.0f} MiB) | "
                      f"F.linear {r['linear_gflops_same_shapes']:.1f} GFLOP/s on block shapes", flush=True)
    if a.json:
        print(json.dumps(dict(env=env, repeat=a.repeat, results=results)))


if __name__ == "__main__":
    main()
