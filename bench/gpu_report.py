#!/usr/bin/env python3
"""The table bench/gpu.sh prints last: probe figures, then resident vs offloaded training per shape.

usage: gpu_report.py OUT BUILD TESTS SECONDS  (reads OUT/probe.json and OUT/bench.jsonl)

Per run: seconds per step (the mean over the timed steps, with the last step's host update waited
for, and the steady step: the mean after the first timed step, without that wait), tokens/s,
bytes over PCIe per step and the rates (achieved while busy,
and pinned host-to-device measured in the same process), and for an offloaded run the bound
max(resident step time of the same shape and tokens per step, bytes / measured rate) and its steady step over that bound
(the issue's target: <= 1.10; a training run of many steps pays the last host update once, so the
steady step is its step time). GEMM: the step's GEMM FLOPs over its time against cuBLAS's rate on
the model's largest GEMM in the same run, for the whole step and for the GEMM calls alone (CUDA events
around each). Memory: the engine's peak and the whole device's. Host floor (offloaded runs): the
least time the host needs per step at its rates measured in the same run, max(8 bytes per streamed
weight at its read-modify-write rate, the streamed weights' z at its z rate); docs/ARCHITECTURE.md,
"ZO2 streaming", explains why this, not the link, bounds the offloaded step.
"""
import json
import os
import sys


def main():
    out, build, tests, secs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    try:
        p = json.load(open(os.path.join(out, "probe.json")))
    except Exception:
        p = {}
    runs = []
    try:
        for line in open(os.path.join(out, "bench.jsonl")):
            line = line.strip()
            if line:
                runs.append(json.loads(line))
    except FileNotFoundError:
        pass
    g = lambda k: p.get(k, "-")
    print(f"card: {g('device')} | build: {build} | script: {secs} s")
    print(f"tests: {tests.strip()}")
    print(f"probe: H2D pinned {g('h2d_pinned_gb_s')} GB/s, D2H pinned {g('d2h_pinned_gb_s')} GB/s, "
          f"H2D pageable {g('h2d_pageable_gb_s')} GB/s, D2D {g('d2d_gb_s_read_plus_write')} GB/s, "
          f"perturb {g('perturb_gvalues_s')} Gvalues/s")
    att = p.get("attention_tile_load_ms")
    if att:  # OPT-13B's attention for one block and version, per way of loading the key/value tiles
        print("attention tile loads, ms: " + ", ".join(f"{k} {v:.3f}" for k, v in att.items()))
    print()
    # The bound's compute time: the resident run of the same shape, tokens per step and direction
    # distribution, else of the same shape and tokens per step (never of another workload: a step of
    # 16 x 1024 tokens is bounded by the resident step at 16 x 1024); with none, the link bound alone.
    steady = lambda r: r.get("steady_seconds_per_step", r["seconds_per_step"])
    work = lambda r: (r["shape"], r.get("packed_tokens_per_step"))
    resident = {}
    for r in runs:
        if "seconds_per_step" in r and r.get("device", {}).get("plan", {}).get("streamed_blocks", 1) == 0:
            resident[work(r) + (r.get("dist", "gaussian"),)] = steady(r)
            resident.setdefault(work(r), steady(r))
    hdr = ["run", "blocks res/str/2-way", "s/step", "steady s/step", "tokens/s", "H2D GB/step", "D2H GB/step", "GB/s achieved", "GB/s pinned",
           "bound s", "step/bound", "compute/step", "host upd s", "host floor s", "GEMM TFLOP/s", "% cuBLAS", "in-GEMM % cuBLAS", "dev peak GiB", "dev used GiB",
           "host RSS GiB"]
    # --device-updates auto: the split chosen at each update, the pass the model gave for it, and the
    # passes measured (timed steps only; blocks alone in the model, the whole pass measured).
    for r in runs:
        st = r.get("device", {}).get("stats", {})
        if st.get("two_way_chosen"):
            fmt = lambda v: " ".join(f"{x:.3f}" for x in v)
            print(f"{r['name']}: two-way chosen {st['two_way_chosen']}, model s {fmt(st.get('two_way_model_seconds', []))}, "
                  f"measured pass s {fmt(st.get('pass_seconds_each', []))}")
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for r in runs:
        if "seconds_per_step" not in r:
            why = r.get("skipped") or (f"failed: {r['failed']}" if r.get("failed") else "?")
            print(f"| {r.get('name')} | {why} |" + " |" * (len(hdr) - 2))
            continue
        d = r.get("device", {})
        pl, st, ln, gm = d.get("plan", {}), d.get("stats", {}), d.get("link", {}), d.get("gemm", {})
        s = r["seconds_per_step"]
        gb = ln.get("h2d_bytes_per_step", 0) / 1e9
        bound, ratio = "-", "-"
        if pl.get("streamed_blocks", 0) > 0:
            rb = ln.get("h2d_bound_seconds_per_step", 0)
            b = max(resident.get(work(r) + (r.get("dist", "gaussian"),), resident.get(work(r), 0)), rb)
            bound = f"{b:.3f}"
            ratio = f"{steady(r) / b:.2f}" if b > 0 else "-"
        hf = d.get("host_floor")  # max(f32 masters read + written, z made) at the host's measured rates
        floor = f"{hf['seconds_per_step']:.3f}" if hf else "-"
        sd = f"{r['steady_seconds_per_step']:.3f}" if "steady_seconds_per_step" in r else "-"
        print(f"| {r['name']} | {pl.get('resident_blocks', '-')}/{pl.get('streamed_blocks', '-')}/"
              f"{pl.get('two_way_blocks', 0)} | {s:.3f} | {sd} | "
              f"{r.get('tokens_per_second', 0):.0f} | {gb:.2f} | {ln.get('d2h_bytes_per_step', 0) / 1e9:.2f} | "
              f"{ln.get('h2d_achieved_gb_s', 0):.1f} | "
              f"{ln.get('h2d_pinned_measured_gb_s', 0):.1f} | {bound} | {ratio} | {d.get('overlap', 0):.2f} | "
              f"{d.get('host_update_seconds_per_step', 0):.3f} | {floor} | {gm.get('step_tflops', 0):.1f} | "
              f"{100 * gm.get('fraction_of_cublas', 0):.0f} | {100 * gm.get('in_gemm_fraction_of_cublas', 0):.0f} | "
              f"{st.get('device_peak_bytes', 0) / 2**30:.2f} | "
              f"{st.get('device_used_peak_bytes', 0) / 2**30:.2f} | {r.get('peak_rss_bytes', 0) / 2**30:.1f} |")


if __name__ == "__main__":
    main()
