#!/usr/bin/env python3
"""Generate the safetensors oracle fixtures for tests/test_safetensors.cpp.

Every file here is written by the Python `safetensors` package (and huggingface_hub for the shard
split), never by zo, so the C++ reader and writer are checked against someone else's implementation.

Run (no network):
    /work/venv/bin/python tools/gen_safetensors_fixtures.py --out tests/data/safetensors
One-off manual check that a file written by zo's C++ writer loads in Python (safetensors and
transformers' load_state_dict) with the expected values:
    ZO_SAFETENSORS_DUMP=/tmp/zo_written.safetensors build/bin/test_safetensors
    /work/venv/bin/python tools/gen_safetensors_fixtures.py --check-cpp /tmp/zo_written.safetensors

Files written under OUT:
  single/model.safetensors   every dtype zo reads (F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL), a 0-d
                             tensor, empty tensors, extreme values, metadata; also a one-file HF folder
  sharded/                   model-0000K-of-00002.safetensors + model.safetensors.index.json as
                             huggingface_hub.split_torch_state_dict_into_shards plans them
  writer_ref.safetensors     safetensors.torch.save_file of writer_input() below; the C++ test builds
                             the same input, writes it with zo::write_safetensors and compares bytes
  ../../fuzz/corpus/safetensors/   three small seeds for the fuzz target (see write_fuzz_seeds)
  expected.json              per file: metadata, and per tensor dtype, shape and the values flattened
                             row-major (floats as float64 of the stored value; "nan"/"inf"/"-inf" as
                             strings, since JSON has no such numbers)
"""
import argparse
import json
import math
import os
import shutil
import struct

import torch
from huggingface_hub import split_torch_state_dict_into_shards
from safetensors import safe_open
from safetensors.torch import save_file

DTYPE_NAMES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}


def all_dtypes():
    g = torch.Generator().manual_seed(1234)
    t = {}
    t["f32"] = torch.randn(2, 3, generator=g)
    t["f32_special"] = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e-45, 3.4e38])
    t["f16"] = torch.tensor([1.0, -2.5, 65504.0, 6e-8, 1e-5, 0.1], dtype=torch.float16)  # max, subnormals
    t["bf16"] = (torch.randn(2, 2, generator=g) * 100).to(torch.bfloat16)               # rounded by torch
    t["f64"] = torch.tensor([math.pi, -1e300, 5e-324], dtype=torch.float64)
    t["i64"] = torch.tensor([-(2**63), 2**63 - 1, 0, -7], dtype=torch.int64)
    t["i32"] = torch.tensor([[-(2**31), 2**31 - 1], [1, -1]], dtype=torch.int32)
    t["i16"] = torch.tensor([-32768, 32767, 3], dtype=torch.int16)
    t["i8"] = torch.tensor([-128, 127, 0, -1], dtype=torch.int8)
    t["u8"] = torch.tensor([0, 255, 128], dtype=torch.uint8)
    t["bool"] = torch.tensor([True, False, True, True, False])
    t["scalar"] = torch.tensor(0.75)                  # 0-d: shape []
    t["empty"] = torch.zeros(0, 3)                    # empty: shape [0, 3], no bytes
    t["empty_i64"] = torch.zeros(4, 0, dtype=torch.int64)
    t["model.layers.0.self_attn.q_proj.weight"] = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 8
    return t


def writer_input():
    """Mirror of writer_input() in tests/test_safetensors.cpp: values from integer formulas, exact in
    every dtype, names chosen to exercise the writer's order (dtype size, then name) and escaping."""
    t = {}
    t["b.weight"] = torch.tensor([i * 0.25 - 0.5 for i in range(6)], dtype=torch.float32).reshape(2, 3)
    t["a.bias"] = torch.tensor([1.0, -2.0, 3.5], dtype=torch.float32)
    t["emb"] = torch.tensor([1.5, -2.0, 0.125, 256.0], dtype=torch.bfloat16).reshape(2, 2)
    t["h"] = torch.tensor([0.5, -1.25, 1024.0], dtype=torch.float16)
    t["pos"] = torch.tensor([-3, 2**40], dtype=torch.int64)
    t["ids"] = torch.tensor([7, -8, 9], dtype=torch.int32)
    t["s16"] = torch.tensor([-300, 300], dtype=torch.int16)
    t["q"] = torch.tensor([-128, -1, 0, 127], dtype=torch.int8)
    t["u"] = torch.tensor([0, 200], dtype=torch.uint8)
    t["mask"] = torch.tensor([True, False, True])
    t["scalar"] = torch.tensor(-0.5, dtype=torch.float64)
    t["empty"] = torch.zeros(0, 4, dtype=torch.float32)
    t['quote"back\\slash\ttab/\u00e9'] = torch.tensor([2.0], dtype=torch.float32)
    return t


WRITER_METADATA = {"format": "pt"}  # one key: Python writes a HashMap, so several keys come in random order


def values(x):
    flat = x.reshape(-1)
    if x.dtype.is_floating_point:
        out = []
        for v in flat.double().tolist():
            out.append("nan" if math.isnan(v) else ("inf" if v == math.inf else ("-inf" if v == -math.inf else v)))
        return out
    return [int(v) for v in flat.tolist()]


def describe(path):
    """What the Python package reads back from a file, in expected.json form."""
    out = {"metadata": {}, "tensors": {}}
    with safe_open(path, framework="pt") as f:
        out["metadata"] = f.metadata() or {}
        for k in f.keys():
            x = f.get_tensor(k)
            out["tensors"][k] = {"dtype": DTYPE_NAMES[x.dtype], "shape": list(x.shape), "values": values(x)}
    return out


def generate(out):
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(os.path.join(out, "single"))
    os.makedirs(os.path.join(out, "sharded"))
    expected = {}

    single = os.path.join(out, "single", "model.safetensors")
    save_file(all_dtypes(), single, metadata={"format": "pt", "source": "gen_safetensors_fixtures.py"})
    expected["single/model.safetensors"] = describe(single)

    # A small LLaMA-like state dict, split into two shards the way transformers' save_pretrained does.
    g = torch.Generator().manual_seed(99)
    sd = {
        "model.embed_tokens.weight": torch.randn(8, 4, generator=g),
        "model.layers.0.mlp.up_proj.weight": torch.randn(6, 4, generator=g).to(torch.bfloat16),
        "model.layers.0.input_layernorm.weight": torch.ones(4),
        "model.norm.weight": torch.full((4,), 0.5),
        "lm_head.weight": torch.randn(8, 4, generator=g),
    }
    split = split_torch_state_dict_into_shards(sd, max_shard_size=200)
    assert split.is_sharded and len(split.filename_to_tensors) == 2, split.filename_to_tensors
    for fname, names in split.filename_to_tensors.items():
        save_file({n: sd[n].contiguous() for n in names}, os.path.join(out, "sharded", fname), metadata={"format": "pt"})
    index = {"metadata": split.metadata, "weight_map": split.tensor_to_filename}
    with open(os.path.join(out, "sharded", "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.write("\n")
    sharded = {"metadata": {}, "tensors": {}, "weight_map": split.tensor_to_filename}
    for fname in split.filename_to_tensors:
        sharded["tensors"].update(describe(os.path.join(out, "sharded", fname))["tensors"])
    expected["sharded"] = sharded

    ref = os.path.join(out, "writer_ref.safetensors")
    save_file(writer_input(), ref, metadata=WRITER_METADATA)
    expected["writer_ref.safetensors"] = describe(ref)

    write_fuzz_seeds(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fuzz", "corpus", "safetensors"))

    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(r, n)) for r, _, ns in os.walk(out) for n in ns)
    print(f"wrote {out} ({total} bytes)")


def write_fuzz_seeds(corpus):
    """Seeds for tests/fuzz/fuzz_safetensors.cpp: two files from the Python writer and one hand-made
    header in an older writer's style (no padding, offsets not in key order, an unknown field)."""
    os.makedirs(corpus, exist_ok=True)
    save_file(writer_input(), os.path.join(corpus, "writer_input.safetensors"), metadata=WRITER_METADATA)
    save_file({"s": torch.tensor(1.5, dtype=torch.bfloat16), "e": torch.zeros(0, 2, dtype=torch.int64)},
              os.path.join(corpus, "scalar_empty.safetensors"))
    header = json.dumps({"z": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]},
                         "a": {"dtype": "F32", "shape": [1, 1], "data_offsets": [3, 7], "note": [1]},
                         "__metadata__": {"k": "v"}}).encode()
    with open(os.path.join(corpus, "unpadded.safetensors"), "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header + bytes([1, 2, 3]) + struct.pack("<f", -0.25))


def check_cpp(path):
    """Load a file written by zo's C++ writer (the writer_input() tensors) with safetensors and with
    transformers, and compare with the Python-written reference."""
    from transformers.modeling_utils import load_state_dict

    want = writer_input()
    for label, got in [("safetensors", {k: v for k, v in describe_tensors(path).items()}),
                       ("transformers", load_state_dict(path))]:
        assert set(got) == set(want), (label, sorted(got), sorted(want))
        for k, v in want.items():
            assert got[k].dtype == v.dtype and got[k].shape == v.shape and torch.equal(got[k], v), (label, k)
        print(f"{path}: {len(got)} tensors load in {label} and equal the reference values")
    with safe_open(path, framework="pt") as f:
        print("metadata:", f.metadata())


def describe_tensors(path):
    with safe_open(path, framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data", "safetensors"))
    ap.add_argument("--check-cpp", metavar="FILE", help="check a file written by zo instead of generating")
    a = ap.parse_args()
    if a.check_cpp:
        check_cpp(a.check_cpp)
    else:
        generate(os.path.normpath(a.out))
