#!/usr/bin/env python3
"""Side-by-side table of `zo bench forward --json` and tools/bench_forward_torch.py --json results.

    python3 bench/forward_report.py OUT      (stdlib only; OUT holds zo-*.log, torch-*.log, machine.txt)

Reads the last line (the JSON object) of every zo-*.log and torch-*.log in OUT, writes OUT/results.json
(everything merged) and prints a Markdown table plus the issue's targets, each marked met or not met.
"""
import json
import pathlib
import sys

MiB = 2.0 ** 20
TARGET_SGEMM = 0.70   # 16x64 blocks forward >= 70% of the sgemm rate on the same shapes
TARGET_SCORE = 1.5    # candidate scoring >= 1.5x transformers computing full logits
TARGET_FULL = 1.0     # full logits >= 1.0x transformers
TARGET_RSS_SLACK = 0.10  # peak RSS <= stored weights * 1.10 + one block's activations


def last_json(path):
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    if not lines:
        sys.exit(f"forward_report: {path}: empty (did the run fail?)")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as e:
        sys.exit(f"forward_report: {path}: last line is not JSON ({e})")


def load(out):
    zo, torch, zo_env, torch_env = {}, {}, None, None
    for p in sorted(out.glob("zo-*.log")):
        j = last_json(p)
        zo_env = {k: v for k, v in j.items() if k != "results"}
        for r in j["results"]:
            zo[(r["shape"], r["batch"], r["seq"])] = r
    for p in sorted(out.glob("torch-*.log")):
        j = last_json(p)
        torch_env = j["env"]
        for r in j["results"]:
            torch[(r["shape"], r["batch"], r["seq"], r["attn"])] = r
    if not zo or not torch:
        sys.exit(f"forward_report: {out}: need zo-*.log and torch-*.log results")
    return zo, torch, zo_env, torch_env


def fmt_ratio(x):
    return "n/a" if x is None else f"{x:.2f}x"


def div(a, b):
    return None if a is None or not b else a / b


def rss_budget(z):
    return z["weight_bytes"] * (1 + TARGET_RSS_SLACK) + z["block_activation_bytes"]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: forward_report.py OUT")
    out = pathlib.Path(sys.argv[1])
    zo, torch, zo_env, torch_env = load(out)
    machine = (out / "machine.txt").read_text() if (out / "machine.txt").exists() else ""
    attns = sorted({k[3] for k in torch})
    ref = "sdpa" if "sdpa" in attns else attns[0]  # transformers' default attention is the reference

    print("## zo forward vs transformers\n")
    print("```\n" + machine.strip() + "\n```\n")
    print(f"zo: {zo_env.get('openblas')}, {zo_env.get('threads')} threads, dtype {zo_env.get('dtype')}  ")
    print(f"torch {torch_env['torch']}, transformers {torch_env['transformers']}, BLAS {torch_env['blas']} "
          f"({torch_env.get('mkl')}), CPU capability {torch_env['cpu_capability']}, {torch_env['threads']} threads; "
          f"reference attention: {ref}\n")
    print("| shape | BxT | zo blocks tok/s | zo GFLOP/s | sgemm GFLOP/s | zo/sgemm | zo score tok/s | "
          "torch full tok/s | score/torch full | torch keep1 tok/s | score/torch keep1 | zo full tok/s | "
          "zo full/torch full | zo RSS MiB | RSS budget MiB | torch RSS MiB (fwd / process) |")
    print("|" + "---|" * 16)
    targets = []
    for key in sorted(zo):
        shape, B, T = key
        z = zo[key]
        t = torch.get((shape, B, T, ref))
        if t is None:
            print(f"| {shape} | {B}x{T} | (no torch result) |")
            continue
        score_full = div(z["score_tokens_per_second"], t["full_tokens_per_second"])
        score_keep = div(z["score_tokens_per_second"], t["keep1_tokens_per_second"])
        full_full = div(z["logits_tokens_per_second"], t["full_tokens_per_second"])
        keep = "n/a" if t["keep1_tokens_per_second"] is None else f"{t['keep1_tokens_per_second']:.0f}"
        budget = rss_budget(z)
        torch_fwd = max(t["peak_rss_bytes_keep1"], t["peak_rss_bytes_full"])
        print(f"| {shape} | {B}x{T} | {z['blocks_tokens_per_second']:.0f} | {z['blocks_gflops']:.1f} | "
              f"{z['sgemm_gflops_same_shapes']:.1f} | {100 * z['fraction_of_sgemm']:.0f}% | "
              f"{z['score_tokens_per_second']:.0f} | {t['full_tokens_per_second']:.0f} | {fmt_ratio(score_full)} | "
              f"{keep} | {fmt_ratio(score_keep)} | {z['logits_tokens_per_second']:.0f} | {fmt_ratio(full_full)} | "
              f"{z['peak_rss_bytes_scoring'] / MiB:.0f} | {budget / MiB:.0f} | "
              f"{torch_fwd / MiB:.0f} / {t['peak_rss_bytes_process'] / MiB:.0f} |")
        tag = f"{shape} {B}x{T}"
        if (B, T) == (16, 64):
            targets.append(("forward >= 70% of sgemm", tag, z["fraction_of_sgemm"] >= TARGET_SGEMM,
                            f"{100 * z['fraction_of_sgemm']:.0f}%"))
        targets.append(("scoring >= 1.5x torch full logits", tag, score_full >= TARGET_SCORE, fmt_ratio(score_full)))
        targets.append(("full logits >= 1.0x torch", tag, full_full >= TARGET_FULL, fmt_ratio(full_full)))
        targets.append(("peak RSS <= weights + 10% + one block's activations", tag,
                        z["peak_rss_bytes_scoring"] <= budget,
                        f"{z['peak_rss_bytes_scoring'] / MiB:.0f} vs {budget / MiB:.0f} MiB"))

    if len(attns) > 1:
        print("\n### torch by attention implementation\n")
        print("| shape | BxT | attn | torch full tok/s | torch keep1 tok/s | zo score/torch full | "
              "zo score/torch keep1 | zo full/torch full |")
        print("|" + "---|" * 8)
        for key in sorted(torch):
            shape, B, T, attn = key
            t, z = torch[key], zo.get((shape, B, T))
            if z is None:
                continue
            keep = "n/a" if t["keep1_tokens_per_second"] is None else f"{t['keep1_tokens_per_second']:.0f}"
            print(f"| {shape} | {B}x{T} | {attn} | {t['full_tokens_per_second']:.0f} | {keep} | "
                  f"{fmt_ratio(div(z['score_tokens_per_second'], t['full_tokens_per_second']))} | "
                  f"{fmt_ratio(div(z['score_tokens_per_second'], t['keep1_tokens_per_second']))} | "
                  f"{fmt_ratio(div(z['logits_tokens_per_second'], t['full_tokens_per_second']))} |")

    print("\n### targets\n")
    print("| target | run | value | met |")
    print("|---|---|---|---|")
    for name, tag, ok, value in targets:
        print(f"| {name} | {tag} | {value} | {'yes' if ok else 'NO'} |")

    merged = dict(machine=machine, zo_env=zo_env, torch_env=torch_env, zo=list(zo.values()),
                  torch=list(torch.values()),
                  targets=[dict(target=n, run=tg, met=ok, value=v) for n, tg, ok, v in targets])
    (out / "results.json").write_text(json.dumps(merged, indent=1))


if __name__ == "__main__":
    main()
