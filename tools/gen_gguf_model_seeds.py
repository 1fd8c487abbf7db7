#!/usr/bin/env python3
"""Seeds for tests/fuzz/fuzz_gguf_model.cpp: tiny LLaMA GGUF files that zo loads as a model and a tokenizer.

Run (no network; needs gguf and numpy):
    /work/venv/bin/python tools/gen_gguf_model_seeds.py
Deterministic (fixed seed). Files written, in tests/fuzz/corpus/gguf_model/:

bpe_tied.gguf   2 blocks, hidden 32 (2 heads of 16, 1 KV head), FFN 32; embeddings tied to the head;
                Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, F16 and F32 tensors. Tokenizer "gpt2" (pre "smollm"):
                the 256 byte-level symbols, nine merges that spell "Hello world", one control token.
spm_untied.gguf the same shapes with its own output.weight. Tokenizer "llama": the first 300 pieces
                of tests/data/tokenizers/gguf_llama/metadata.json (specials, the 256 byte pieces,
                scored pieces).
nan_norm.gguf   hidden 8 (2 heads of 4), FFN 8, F16 weights, the bpe tokenizer, and a NaN in
                blk.0.attn_norm.weight: NaN then flows through every kernel of the forward (the
                UBSan build once found exp's float-to-int conversion undefined for it).
"""
import json
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fuzz" / "corpus" / "gguf_model"
BLOCKS, CONTEXT = 2, 64
HIDDEN = FFN = HEADS = KV_HEADS = HEAD_DIM = 0  # set by write()


def byte_symbols():
    """GPT-2's byte -> printable character table (bytes that print stand for themselves)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def add_weights(w, rng, vocab, tied, nan):
    types = [Q.F16] if nan else [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.F16]

    def tensor(name, rows, cols, qt):
        x = (rng.standard_normal((rows, cols)) * 0.2).astype(np.float32)
        if qt == Q.F16:
            w.add_tensor(name, x.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(x, qt), raw_dtype=qt)

    tensor("token_embd.weight", vocab, HIDDEN, types[-1] if nan else Q.Q8_0)
    for b in range(BLOCKS):
        p = f"blk.{b}."
        norm = (1 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32)
        if nan and b == 0:
            norm[1] = np.nan
        w.add_tensor(p + "attn_norm.weight", norm)
        w.add_tensor(p + "ffn_norm.weight", (1 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32))
        shapes = [("attn_q", HEADS * HEAD_DIM, HIDDEN), ("attn_k", KV_HEADS * HEAD_DIM, HIDDEN),
                  ("attn_v", KV_HEADS * HEAD_DIM, HIDDEN), ("attn_output", HIDDEN, HEADS * HEAD_DIM),
                  ("ffn_gate", FFN, HIDDEN), ("ffn_up", FFN, HIDDEN), ("ffn_down", HIDDEN, FFN)]
        for i, (name, rows, cols) in enumerate(shapes):
            tensor(p + name + ".weight", rows, cols, types[(i + b) % len(types)])
    w.add_tensor("output_norm.weight", np.ones(HIDDEN, dtype=np.float32))
    if not tied:
        tensor("output.weight", vocab, HIDDEN, Q.Q8_0)


def write(path, tokenizer, tied, seed, small=False):
    global HIDDEN, FFN, HEADS, KV_HEADS, HEAD_DIM
    HIDDEN, FFN, HEADS, KV_HEADS, HEAD_DIM = (8, 8, 2, 1, 4) if small else (32, 32, 2, 1, 16)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(CONTEXT)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(BLOCKS)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    tokens = tokenizer(w)
    add_weights(w, np.random.default_rng(seed), len(tokens), tied, nan=small)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{path.relative_to(ROOT)}: {path.stat().st_size} bytes, vocab {len(tokens)}")


def bpe(w):
    symbols = byte_symbols()
    merges = ["H e", "l l", "He ll", "Hell o", "\u0120 w", "o r", "\u0120w or", "l d", "\u0120wor ld"]
    tokens = symbols + ["".join(m.split(" ")) for m in merges] + ["<|endoftext|>"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([1] * (len(tokens) - 1) + [3])
    w.add_token_merges(merges)
    w.add_bos_token_id(len(tokens) - 1)
    w.add_eos_token_id(len(tokens) - 1)
    return tokens


def spm(w):
    meta = json.loads((ROOT / "tests/data/tokenizers/gguf_llama/metadata.json").read_text())
    n = 300
    tokens = meta["tokens"][:n]
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(meta["token_types"][:n])
    w.add_token_scores(meta["scores"][:n])
    w.add_bos_token_id(meta["bos"])
    w.add_eos_token_id(meta["eos"])
    w.add_unk_token_id(meta["unk"])
    w.add_add_bos_token(True)
    return tokens


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    write(OUT / "bpe_tied.gguf", bpe, True, 1)
    write(OUT / "spm_untied.gguf", spm, False, 2)
    write(OUT / "nan_norm.gguf", bpe, True, 3, small=True)


if __name__ == "__main__":
    main()
