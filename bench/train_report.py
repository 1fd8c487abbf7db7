#!/usr/bin/env python3
"""Table of a bench/run_train_bench.sh results folder: zo MeZO vs the PyTorch MeZO reference."""
import json
import os
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def main():
    out = sys.argv[1]
    shapes = sorted({f.split(".")[0] for f in os.listdir(out) if f.endswith(".zo_train.json")})
    mib = 2**20
    print(open(os.path.join(out, "machine.txt")).read().strip().replace("\n", "  \n"))
    print()
    print("| model | zo steps/s | torch steps/s | speed-up | zo tokens/s | torch tokens/s | zo train peak RSS | "
          "zo inference peak | train/inference | torch peak RSS | zo/torch RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    splits = []
    for s in shapes:
        z = load(os.path.join(out, f"{s}.zo_train.json"))
        zi = load(os.path.join(out, f"{s}.zo_inference.json"))
        t = load(os.path.join(out, f"{s}.torch.json"))
        tp = t.get("peak_rss_bytes_after_build") or t["peak_rss_bytes"]
        print(f"| {s} | {z['steps_per_second']:.3f} | {t['steps_per_second']:.3f} | "
              f"**{z['steps_per_second'] / t['steps_per_second']:.2f}x** | {z['tokens_per_second']:.0f} | "
              f"{t['tokens_per_second']:.0f} | {z['peak_rss_bytes'] / mib:.0f} MiB | {zi['peak_rss_bytes'] / mib:.0f} MiB | "
              f"**{z['peak_rss_bytes'] / zi['peak_rss_bytes']:.3f}** | {tp / mib:.0f} MiB | {z['peak_rss_bytes'] / tp:.2f} |")
        splits.append((s, z["seconds_per_step"], z["split_seconds_per_step"], t["seconds_per_step"],
                       t["seconds_per_step_split"]))
    print()
    print("Where a step's time goes (seconds per step):")
    print()
    print("| model | side | step | forward (blocks) | head | perturb | update | data |")
    print("|---|---|---|---|---|---|---|---|")
    for s, zt, zs, tt, ts in splits:
        print(f"| {s} | zo | {zt:.3f} | {zs['forward']:.3f} | {zs['head']:.3f} | {zs['perturb']:.3f} | {zs['update']:.3f} | - |")
        print(f"| {s} | torch | {tt:.3f} | {ts.get('forward', 0):.3f} (with head) | - | {ts.get('perturb', 0):.3f} | "
              f"{ts.get('update', 0):.3f} | {ts.get('data', 0):.3f} |")

if __name__ == "__main__":
    main()
