#!/usr/bin/env python3
"""A timing model of one offloaded training step of the GPU engine (offload/gpu_engine.cu).

It answers, before a GPU is at hand: for a given --gpu-mem, which blocks the planner keeps resident,
and how long a step should take given the rates measured on the GPU machine, so that the runs of
bench/gpu.sh can be chosen where the issue's target (step <= 1.10x max(resident step, bytes / pinned
rate)) can be met, and a measurement can be compared with what the schedule allows.

The model, per step (one pass; both perturbed versions run through a block while it is at hand):
  - the device runs the blocks in order, c seconds each (the resident step / L);
  - the host updates the streamed one-way blocks in order, h seconds each, starting when the step
    begins (the update waits for the projected gradient of the step before);
  - a streamed block's upload starts when its host update is done, the link is free and its ring
    slot is free (two slots: the compute of the streamed block two before has ended); it takes u;
  - the first n streamed blocks are two-way: no host update; their f32 masters go up (u2) and come
    back after the block's compute (d2, on the other direction of the link);
  - the block computes once its upload is done.
The residency planner's arithmetic (offload/residency.cpp: sizes, how many blocks fit, which ones)
is mirrored here for OPT shapes; `--check` prints the masks to compare with the C++ planner.
Not modelled: the head and embeddings (in c), kernels' interference with the copies, the last
step's unoverlapped host update that a short benchmark includes (bench/README.md).

  python3 bench/step_model.py                 # OPT-13B, bf16 wire, the rates of GPU runs 5-6
  python3 bench/step_model.py --gpu-mem 30G 42G --placement first spread auto
  python3 bench/step_model.py --sweep           # the placements compared
"""
import argparse
import sys

GiB = 1 << 30
MiB = 1 << 20


def opt_layout(hidden, layers, vocab=50272, max_pos=2048):
    """(globals numel, block numel) of an OPT shape with random weights (zo/bench_forward.cpp)."""
    h, f = hidden, 4 * hidden
    block = 4 * (h * h + h) + (h * f + f) + (f * h + h) + 2 * 2 * h
    glob = vocab * h + (max_pos + 2) * h + 2 * h
    return glob, block


SHAPES = {"opt-1.3b": (2048, 24), "opt-6.7b": (4096, 32), "opt-13b": (5120, 40), "opt-30b": (7168, 48)}
# The resident step measured on an H100 (bench/README.md: run 4 for 1.3B and 6.7B, run 5 for 13B).
RESIDENT_STEP = {"opt-1.3b": 0.076, "opt-6.7b": 0.292, "opt-13b": 0.516}
WIRE_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "fp8": 1}


def placement(L, R, rule, two_way=False):
    """Resident mask, as offload/residency.cpp chooses it. spread: streamed blocks spread over the
    whole pass, each last in its group; tail: alternating with resident ones over the last 2S blocks;
    auto (the planner's rule): tail one-way, spread with two-way blocks; first: the rule auto
    replaced (streamed blocks first in their groups); suffix (not in the planner): all at the end."""
    S = L - R
    if rule == "auto":
        rule = "spread" if two_way else "tail"
    if rule == "tail":
        T = min(L, 2 * S)
        b = L - T
        return [l < b or not ((l - b + 1) * S // T > (l - b) * S // T) for l in range(L)]
    if rule == "spread":
        return [not ((l + 1) * S // L > l * S // L) for l in range(L)]
    if rule == "first":
        return [(l + 1) * R // L > l * R // L for l in range(L)]
    if rule == "suffix":
        return [l < R for l in range(L)]
    raise ValueError(rule)


PLACEMENTS = ("first", "spread", "suffix", "tail", "auto")


def sweep():
    """Each placement against the best of them, over block counts, rates and two-way choices."""
    worst = {p: (1.0, None) for p in PLACEMENTS}
    total = {p: 0.0 for p in PLACEMENTS}
    tail_over_spread = {False: [], True: []}  # why the planner's auto splits by two-way
    n = 0
    for L, step_s in ((40, 0.516), (24, 0.076), (32, 0.292)):
        c = step_s / L
        for R in range(1, L):
            for hf in (0.5, 1, 2, 3, 3.6, 4.5):  # host update per block / compute per block
                for uf in (0.45, 0.9, 1.8):      # upload per block / compute per block
                    for two in (False, True):
                        t = {}
                        for p in PLACEMENTS:
                            m = placement(L, R, p, two)
                            ns = range(L - R + 1) if two else [0]
                            t[p] = min(step(m, c, hf * c, uf * c, k, 2.4 * c, 2.4 * c) for k in ns)
                        best = min(t.values())
                        tail_over_spread[two].append(t["tail"] / t["spread"])
                        n += 1
                        for p in PLACEMENTS:
                            total[p] += t[p] / best
                            if t[p] / best > worst[p][0]:
                                worst[p] = (t[p] / best, dict(L=L, R=R, host=hf, up=uf, two_way=two))
    print(f"{n} cases: step over the best placement's")
    for p in PLACEMENTS:
        print(f"  {p:7} mean {total[p] / n:.4f}  worst {worst[p][0]:.3f} at {worst[p][1]}")
    for two, r in tail_over_spread.items():
        print(f"  tail / spread, {'two-way' if two else 'one-way'}: mean {sum(r) / len(r):.4f}, "
              f"from {min(r):.3f} to {max(r):.3f}")


def plan(shape, gpu_mem, wire="bf16", two_way=False, reserve=GiB):
    """Resident block count, as offload/residency.cpp computes it (fp8 scales left out)."""
    hidden, L = SHAPES[shape]
    glob, block = opt_layout(hidden, L)
    blk = block * 4
    slot = max(WIRE_BYTES[wire], 4) if two_way else WIRE_BYTES[wire]
    streaming = 2 * block * slot + (0 if wire == "f32" else blk)
    base = 2 * glob * 4 + blk
    if gpu_mem <= base + streaming + reserve:
        return None
    left, R = gpu_mem - base - reserve, 0
    for l in range(L):
        last_fits_all = l == L - 1 and blk <= left
        if not last_fits_all and blk + streaming > left:
            break
        left -= blk
        R += 1
    return R


def step(mask, c, h, u, n2=0, u2=0.0, d2=0.0, slots=2):
    streamed = [l for l, r in enumerate(mask) if not r]
    host_end, t = [], 0.0
    for k in range(len(streamed)):
        if k >= n2:
            t += h
        host_end.append(t if k >= n2 else 0.0)
    free, dev, link, down = {}, 0.0, 0.0, 0.0
    k = 0
    for l, resident in enumerate(mask):
        if resident:
            dev += c
            continue
        two = k < n2
        start = max(host_end[k], link, free.get(k - slots, 0.0))
        link = start + (u2 if two else u)
        dev = max(dev, link) + c
        if two:
            down = max(down, dev) + d2
            free[k] = down
        else:
            free[k] = dev
        k += 1
    return max(dev, down, t)


def parse_size(s):
    mult = {"G": GiB, "M": MiB}
    return int(float(s[:-1]) * mult[s[-1]]) if s[-1] in mult else int(s)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="opt-13b", choices=sorted(SHAPES))
    ap.add_argument("--wire", default="bf16", choices=sorted(WIRE_BYTES))
    ap.add_argument("--gpu-mem", nargs="+", default=["6700M", "20G", "30G", "36G", "40G", "42G", "45G"])
    ap.add_argument("--placement", nargs="+", default=["first", "auto"], choices=list(PLACEMENTS))
    ap.add_argument("--resident-step", type=float, help="s, the resident step (default: the one measured for the shape)")
    ap.add_argument("--host-ns", type=float, default=0.150, help="host updater, ns per weight (runs 5-6: 0.147-0.150)")
    ap.add_argument("--h2d", type=float, default=50.0, help="GB/s one way while busy (runs 5-6: 49-50)")
    ap.add_argument("--both", type=float, default=40.0, help="GB/s each way with traffic both ways (39-41)")
    ap.add_argument("--check", action="store_true", help="print the planner's masks (compare with the C++ planner)")
    ap.add_argument("--sweep", action="store_true", help="compare the placements over many shapes and rates")
    a = ap.parse_args()
    if a.sweep:
        sweep()
        return 0

    hidden, L = SHAPES[a.shape]
    if a.resident_step is None:
        if a.shape not in RESIDENT_STEP:
            ap.error(f"--resident-step: no measured resident step for {a.shape}")
        a.resident_step = RESIDENT_STEP[a.shape]
    _, block = opt_layout(hidden, L)
    c = a.resident_step / L
    h = block * a.host_ns * 1e-9
    u = block * WIRE_BYTES[a.wire] / (a.h2d * 1e9)
    u2 = d2 = block * 4 / (a.both * 1e9)
    print(f"{a.shape}, {a.wire} wire: per block compute {c * 1e3:.1f} ms, host update {h * 1e3:.1f} ms, "
          f"upload {u * 1e3:.1f} ms (two-way: f32 up and back {u2 * 1e3:.1f} ms each)")
    print("step / resident step; two-way: the best n of the first streamed blocks (auto aims at it)")
    hdr = f"{'--gpu-mem':>9} {'resident':>8}" + "".join(f" {p + ' one-way':>14} {p + ' two-way':>18}" for p in a.placement)
    print(hdr)
    for g in a.gpu_mem:
        mem = parse_size(g)
        r1, r2 = plan(a.shape, mem, a.wire), plan(a.shape, mem, a.wire, two_way=True)
        if r1 is None:
            print(f"{g:>9} refused by the planner")
            continue
        row = f"{g:>9} {r1:>3}/{r2 if r2 is not None else '-':>3} "
        for p in a.placement:
            one = step(placement(L, r1, p, False), c, h, u) / a.resident_step
            row += f" {one:>13.2f}x"
            if r2 is None:
                row += f" {'-':>18}"
                continue
            m2 = placement(L, r2, p, True)
            best = min((step(m2, c, h, u, n, u2, d2), n) for n in range(L - r2 + 1))
            row += f" {best[0] / a.resident_step:>10.2f}x n={best[1]:<3}"
        print(row)
        if a.check:
            for tw, r in ((False, r1), (True, r2)):
                if r is not None:
                    print(f"{'':>9} {'2way' if tw else '1way'} R={r:2d} "
                          + "".join("R" if x else "." for x in placement(L, r, "auto", tw)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
