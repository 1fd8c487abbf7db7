#!/usr/bin/env python3
"""zo's perturbation directions, re-made in Python from the written mapping (docs/ARCHITECTURE.md).

An independent implementation in exact integers and float64 math: it is the oracle the C++ test
tests/test_perturb.cpp compares against (pinned values printed by `--golden`), and a user's way to
regenerate any direction of a zo run without zo:

    python3 tools/zo_philox.py --seed 42 --name model.layers.0.self_attn.q_proj.weight --count 8
    python3 tools/zo_philox.py --golden      # the values pinned in tests/test_perturb.cpp
"""
import argparse
import math

M32 = 0xFFFFFFFF


def fnv1a64(name: str) -> int:
    h = 0xCBF29CE484222325
    for b in name.encode("utf-8"):
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def philox4x32_10(ctr, key):
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(10):
        if r:
            k0 = (k0 + 0x9E3779B9) & M32
            k1 = (k1 + 0xBB67AE85) & M32
        p0 = 0xD2511F53 * c0
        p1 = 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & M32, (p0 >> 32) ^ c3 ^ k1, p0 & M32
    return c0, c1, c2, c3


def words(seed: int, tid: int, j: int):
    ctr = (j & M32, j >> 32, tid & M32, tid >> 32)
    return philox4x32_10(ctr, (seed & M32, seed >> 32))


def z(seed: int, tid: int, i: int, dist: str = "gaussian") -> float:
    """Element i of tensor tid's direction under seed, in float64 (zo computes it in float32)."""
    w = words(seed, tid, i // 4)
    lane = i % 4
    if dist == "rademacher":
        return -1.0 if w[lane] >> 31 else 1.0
    wa, wb = (w[0], w[1]) if lane < 2 else (w[2], w[3])
    u1 = ((wa >> 8) + 1) * 2.0**-24
    u2 = (wb >> 8) * 2.0**-24
    r = math.sqrt(-2.0 * math.log(u1))
    return r * math.cos(2 * math.pi * u2) if lane % 2 == 0 else r * math.sin(2 * math.pi * u2)


def direction(seed: int, name: str, n: int, dist: str = "gaussian"):
    """The first n elements of parameter `name`'s direction under seed (float64 list)."""
    tid = fnv1a64(name)
    out = []
    for j in range((n + 3) // 4):
        w = words(seed, tid, j)
        if dist == "rademacher":
            out.extend(-1.0 if x >> 31 else 1.0 for x in w)
            continue
        for wa, wb in ((w[0], w[1]), (w[2], w[3])):
            r = math.sqrt(-2.0 * math.log(((wa >> 8) + 1) * 2.0**-24))
            a = 2 * math.pi * (wb >> 8) * 2.0**-24
            out.extend((r * math.cos(a), r * math.sin(a)))
    return out[:n]


GOLDEN = [  # (seed, name, element indices)
    (0, "model.embed_tokens.weight", [0, 1, 2, 3, 4, 5, 6, 7]),
    (42, "model.layers.0.self_attn.q_proj.weight", [0, 1, 2, 3, 1000001, 1000002, 123456789]),
    (0xFFFFFFFFFFFFFFFF, "lm_head.weight", [0, 5, 2**33 + 7]),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=lambda s: int(s, 0), default=0)
    ap.add_argument("--name", default="model.embed_tokens.weight")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--dist", choices=["gaussian", "rademacher"], default="gaussian")
    ap.add_argument("--golden", action="store_true")
    a = ap.parse_args()
    if a.golden:
        print("// tid, words of counter block 0, then (seed, tid, index, z) from tools/zo_philox.py")
        for seed, name, idx in GOLDEN:
            tid = fnv1a64(name)
            print(f'// "{name}" tid=0x{tid:016x} words(seed, tid, 0)=' + " ".join(f"0x{x:08x}" for x in words(seed, tid, 0)))
            for i in idx:
                print(f"{{0x{seed:016x}ull, 0x{tid:016x}ull, {i}ull, {z(seed, tid, i):.17g}, "
                      f"{z(seed, tid, i, 'rademacher'):.0f}}},")
        print("// philox4x32_10 zero counter, zero key:", " ".join(f"0x{x:08x}" for x in philox4x32_10((0, 0, 0, 0), (0, 0))))
        return
    tid = fnv1a64(a.name)
    for i in range(a.start, a.start + a.count):
        print(f"{i}\t{z(a.seed, tid, i, a.dist):.9g}")


if __name__ == "__main__":
    main()
