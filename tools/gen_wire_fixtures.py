#!/usr/bin/env python3
"""Generate zo's wire-dtype oracle: PyTorch's float32 -> bfloat16 / float16 / float8_e4m3fn casts.

Run (no network; needs torch, safetensors, numpy):
    /work/venv/bin/python tools/gen_wire_fixtures.py [--out tests/data/wire/casts.safetensors]

Tensors (all from numpy default_rng(20261126)):
    x           F32 [N]  N = 3 * 16384 + 1000: four groups of 16384 elements (the last one short) of
                         normal(0, 0.02) weights scaled by 1, 300, 1e-5 and 1; then, at the start, hand-picked
                         values: +-0, bf16/f16 rounding ties, f16 subnormals and its largest finite value,
                         e4m3's smallest subnormal, ties between e4m3 codes.
    bf16        I16 [N]  bits of x.to(torch.bfloat16)
    f16         I16 [N]  bits of x.to(torch.float16)
    fp8_scales  F32 [G]  one per group of 16384 elements: amax / 448 in float32 (1 when amax is 0)
    fp8         U8  [N]  bits of (x / scale_of_its_group).to(torch.float8_e4m3fn)
    fp8_table   F32 [256] float8_e4m3fn code k as float32 (k = 0..255; NaN codes stay NaN)
    sat_x       F32 [16] values around and beyond e4m3's largest finite value 448, both signs
    sat_fp8     U8  [16] bits of sat_x.to(torch.float8_e4m3fn) (no scale: torch saturates at 448)
"""
import argparse

import numpy as np
import torch
from safetensors.numpy import save_file

G = 16384


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/data/wire/casts.safetensors")
    a = ap.parse_args()
    rng = np.random.default_rng(20261126)
    n = 3 * G + 1000
    x = rng.normal(0.0, 0.02, n).astype(np.float32)
    x[G:2 * G] *= np.float32(300.0)
    x[2 * G:3 * G] *= np.float32(1e-5)
    special = np.array([
        0.0, -0.0,
        1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8,           # bf16 ties (to even: down, up)
        1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11,         # f16 ties
        2.0 ** -24, 3 * 2.0 ** -25, 2.0 ** -14 * 0.75,  # f16 subnormals (one a tie)
        65504.0 / 300, -1e-3, 6e-5,
        0.018, 0.0195, 2.0 ** -9 / 448 * 0.02,          # scaled by the group's scale below
    ], dtype=np.float32)
    x[:len(special)] = special
    xt = torch.from_numpy(x)
    bf16 = xt.to(torch.bfloat16).view(torch.int16).numpy()
    f16 = xt.to(torch.float16).view(torch.int16).numpy()
    groups = (n + G - 1) // G
    scales = np.empty(groups, np.float32)
    fp8 = np.empty(n, np.uint8)
    for g in range(groups):
        seg = xt[g * G:(g + 1) * G]
        amax = seg.abs().max()
        s = (amax / torch.tensor(448.0, dtype=torch.float32)) if amax > 0 else torch.tensor(1.0)
        scales[g] = s.item()
        fp8[g * G:(g + 1) * G] = (seg / s).to(torch.float8_e4m3fn).view(torch.uint8).numpy()
    table = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(torch.float8_e4m3fn).float().numpy()
    sat = np.array([440.0, 448.0, 455.0, 463.9, 464.0, 470.0, 479.0, 480.0, 1000.0, 3e38], dtype=np.float32)
    sat_x = np.concatenate([sat[:8], -sat[:8]]).astype(np.float32)
    sat_fp8 = torch.from_numpy(sat_x).to(torch.float8_e4m3fn).view(torch.uint8).numpy()
    save_file({"x": x, "bf16": bf16, "f16": f16, "fp8_scales": scales, "fp8": fp8, "fp8_table": table,
               "sat_x": sat_x, "sat_fp8": sat_fp8}, a.out,
              metadata={"generator": "tools/gen_wire_fixtures.py", "torch": torch.__version__})
    print(a.out, n, "values,", groups, "groups")


if __name__ == "__main__":
    main()
