#!/usr/bin/env python3
"""Side-by-side table of `zo bench forward --json` and tools/bench_forward_torch.py --json results.

    python3 bench/forward_report.py OUT      (stdlib only; OUT holds zo-*.log, torch-*.log, machine.txt)

Reads the last line (the JSON object) of every zo-*.log and torch-*.log in OUT, writes OUT/results.json
(everything merged) and prints a Markdown table plus the issue's targets, each marked met or not met.
With several rounds (files ...-rK.log) each number is the median over rounds; a ratio is the median of
the per-round ratios (zo and torch of one round ran back to back), shown with its min-max over rounds.
"""
import json
import pathlib
import re
import statistics
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


def round_of(path):
    m = re.search(r"-r(\d+)\.log$", path.name)
    return int(m.group(1)) if m else 1


def load(out):
    # key -> {round: result}
    zo, torch, zo_env, torch_env = {}, {}, None, None
    for p in sorted(out.glob("zo-*.log")):
        j = last_json(p)
        zo_env = {k: v for k, v in j.items() if k != "results"}
        for r in j["results"]:
            zo.setdefault((r["shape"], r["batch"], r["seq"]), {})[round_of(p)] = r
    for p in sorted(out.glob("torch-*.log")):
        j = last_json(p)
        torch_env = j["env"]
        for r in j["results"]:
            torch.setdefault((r["shape"], r["batch"], r["seq"], r["attn"]), {})[round_of(p)] = r
    if not zo or not torch:
        sys.exit(f"forward_report: {out}: need zo-*.log and torch-*.log results")
    return zo, torch, zo_env, torch_env


def med(rounds, field):
    vals = [r[field] for r in rounds.values() if r.get(field) is not None]
    return statistics.median(vals) if vals else None


def ratio(zr, tr, zf, tf):
    """Per-round zo/torch ratios of zr[.][zf] / tr[.][tf] over the rounds both have: (median, min, max)."""
    rs = [zr[k][zf] / tr[k][tf] for k in zr if k in tr and tr[k].get(tf)]
    return (statistics.median(rs), min(rs), max(rs)) if rs else None


def fr(x, spread=False):
    if x is None:
        return "n/a"
    if spread and x[1] != x[2]:
        return f"{x[0]:.2f}x ({x[1]:.2f}-{x[2]:.2f})"
    return f"{x[0]:.2f}x"


def fn(x, digits=0):
    return "n/a" if x is None else f"{x:.{digits}f}"


def rss_limit(z):
    # zo reports the limit itself (newer builds); the same formula otherwise.
    return z.get("rss_limit_bytes") or z["weight_bytes"] * (1 + TARGET_RSS_SLACK) + z["block_activation_bytes"]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: forward_report.py OUT")
    out = pathlib.Path(sys.argv[1])
    zo, torch, zo_env, torch_env = load(out)
    machine = (out / "machine.txt").read_text() if (out / "machine.txt").exists() else ""
    attns = sorted({k[3] for k in torch})
    ref = "sdpa" if "sdpa" in attns else attns[0]  # transformers' default attention is the reference
    n_rounds = max(len(v) for v in zo.values())

    print("## zo forward vs transformers\n")
    print("```\n" + machine.strip() + "\n```\n")
    print(f"zo: {zo_env.get('openblas')}, {zo_env.get('threads')} threads, dtype {zo_env.get('dtype')}  ")
    print(f"torch {torch_env['torch']}, transformers {torch_env['transformers']}, BLAS {torch_env['blas']} "
          f"({torch_env.get('mkl')}), CPU capability {torch_env['cpu_capability']}, {torch_env['threads']} threads; "
          f"reference attention: {ref}; {n_rounds} round(s), medians" + (" (ratio min-max over rounds)" if n_rounds > 1 else "")
          + "\n")
    print("| shape | BxT | zo blocks tok/s | zo GFLOP/s | sgemm GFLOP/s | zo/sgemm | torch linear GFLOP/s | "
          "zo score tok/s | torch full tok/s | score/torch full | torch keep1 tok/s | score/torch keep1 | "
          "zo full tok/s | zo full/torch full | zo RSS MiB | RSS limit MiB | torch RSS MiB (fwd / process) |")
    print("|" + "---|" * 17)
    targets = []
    for key in sorted(zo):
        shape, B, T = key
        zr, tr = zo[key], torch.get((shape, B, T, ref))
        if tr is None:
            print(f"| {shape} | {B}x{T} | (no torch result) |")
            continue
        score_full = ratio(zr, tr, "score_tokens_per_second", "full_tokens_per_second")
        score_keep = ratio(zr, tr, "score_tokens_per_second", "keep1_tokens_per_second")
        full_full = ratio(zr, tr, "logits_tokens_per_second", "full_tokens_per_second")
        frac = [r["fraction_of_sgemm"] for r in zr.values()]
        frac_m = (statistics.median(frac), min(frac), max(frac))
        rss = max(r["peak_rss_bytes_scoring"] for r in zr.values())  # worst round
        limit = min(rss_limit(r) for r in zr.values())
        torch_fwd = max(max(r["peak_rss_bytes_keep1"], r["peak_rss_bytes_full"]) for r in tr.values())
        torch_proc = max(r["peak_rss_bytes_process"] for r in tr.values())
        frac_s = f"{100 * frac_m[0]:.0f}%" + (f" ({100 * frac_m[1]:.0f}-{100 * frac_m[2]:.0f})" if n_rounds > 1 else "")
        print(f"| {shape} | {B}x{T} | {fn(med(zr, 'blocks_tokens_per_second'))} | {fn(med(zr, 'blocks_gflops'), 1)} | "
              f"{fn(med(zr, 'sgemm_gflops_same_shapes'), 1)} | {frac_s} | "
              f"{fn(med(tr, 'linear_gflops_same_shapes'), 1)} | "
              f"{fn(med(zr, 'score_tokens_per_second'))} | {fn(med(tr, 'full_tokens_per_second'))} | "
              f"{fr(score_full, True)} | {fn(med(tr, 'keep1_tokens_per_second'))} | {fr(score_keep, True)} | "
              f"{fn(med(zr, 'logits_tokens_per_second'))} | {fr(full_full, True)} | "
              f"{rss / MiB:.0f} | {limit / MiB:.0f} | {torch_fwd / MiB:.0f} / {torch_proc / MiB:.0f} |")
        tag = f"{shape} {B}x{T}"
        if (B, T) == (16, 64):
            targets.append(("forward >= 70% of sgemm", tag, frac_m[0] >= TARGET_SGEMM, frac_s))
        targets.append(("scoring >= 1.5x torch full logits", tag,
                        score_full is not None and score_full[0] >= TARGET_SCORE, fr(score_full, True)))
        targets.append(("full logits >= 1.0x torch", tag,
                        full_full is not None and full_full[0] >= TARGET_FULL, fr(full_full, True)))
        targets.append(("peak RSS <= weights + 10% + one block's activations", tag, rss <= limit,
                        f"{rss / MiB:.0f} vs {limit / MiB:.0f} MiB"))

    if len(attns) > 1:
        print("\n### torch by attention implementation\n")
        print("| shape | BxT | attn | torch full tok/s | torch keep1 tok/s | zo score/torch full | "
              "zo score/torch keep1 | zo full/torch full |")
        print("|" + "---|" * 8)
        for key in sorted(torch):
            shape, B, T, attn = key
            tr, zr = torch[key], zo.get((shape, B, T))
            if zr is None:
                continue
            print(f"| {shape} | {B}x{T} | {attn} | {fn(med(tr, 'full_tokens_per_second'))} | "
                  f"{fn(med(tr, 'keep1_tokens_per_second'))} | "
                  f"{fr(ratio(zr, tr, 'score_tokens_per_second', 'full_tokens_per_second'))} | "
                  f"{fr(ratio(zr, tr, 'score_tokens_per_second', 'keep1_tokens_per_second'))} | "
                  f"{fr(ratio(zr, tr, 'logits_tokens_per_second', 'full_tokens_per_second'))} |")

    print("\n### targets\n")
    print("| target | run | value | met |")
    print("|---|---|---|---|")
    for name, tag, ok, value in targets:
        print(f"| {name} | {tag} | {value} | {'yes' if ok else 'NO'} |")

    def flat(d):
        return [dict(r, round=k) for rounds in d.values() for k, r in sorted(rounds.items())]
    merged = dict(machine=machine, zo_env=zo_env, torch_env=torch_env, zo=flat(zo), torch=flat(torch),
                  targets=[dict(target=n, run=tg, met=ok, value=v) for n, tg, ok, v in targets])
    (out / "results.json").write_text(json.dumps(merged, indent=1))


if __name__ == "__main__":
    main()
