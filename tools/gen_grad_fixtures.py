#!/usr/bin/env python3
"""Generate zo's gradient oracle: float64 autograd gradients of two losses on the tiny test models.

Run (never touches the network; needs torch, transformers, safetensors, numpy):
    /work/venv/bin/python tools/gen_grad_fixtures.py [--data tests/data] [--only opt_pre_ln]
        [--grad-dtype auto|f64|f32] [--fd-checks 6]
Reads tests/data/models/<variant>/ (written by tools/gen_model_fixtures.py) for the variants opt_pre_ln
(OPT, pre-LN, biases, tied head) and llama_gqa (LLaMA, GQA, untied head), loads each with
dtype=torch.float64, attn_implementation="sdpa", eval() (dropout off), and writes
tests/data/grad/<variant>.safetensors. Deterministic for a given torch/transformers version.

Tensors in <variant>.safetensors:
    ids             I64 [24]  three sequences back to back, lengths 11, 8, 5: numpy
                              default_rng(1234).integers(0, vocab_size, 24), split in order
    lens            I64 [3]   11, 8, 5
    loss            F64 [1]   LM loss: sum over sequences s and positions i = 0..L_s-2 of
                              -log p(ids_s[i+1] | ids_s[:i+1]), divided by the number of targets
                              (sum of L_s - 1 = 21): one token mean over the whole batch. Each sequence is
                              run alone (batch 1, no padding, no attention mask).
    grad.<name>     F64 or F32, the parameter's shape: d loss / d parameter, for every parameter that
                    model.named_parameters() reports, under the name model.safetensors stores it by.
                    A tied head is one parameter: its gradient (input embedding use + output head use)
                    sits under the embedding's name, and there is no lm_head entry.
    cls_prompts     I64 [12]  the first two sequences truncated to 7 and 5 tokens, back to back
    cls_lens        I64 [2]   7, 5
    cls_cands       I64 [2]   the candidate tokens 3 and 5 (each candidate is one token)
    cls_labels      I64 [2]   1, 0 (index of the gold candidate per prompt)
    cls_loss        F64 [1]   classification loss: score(p, c) = log p(c | p), read at the last prompt
                              position of the sequence p + [c] run alone (one token, so the mean
                              log-prob is that one value); loss = mean over prompts of
                              -log softmax(score(p, c_0), score(p, c_1))[label]
    cls_grad.<name> as grad.<name>, for cls_loss.
Metadata (safetensors header __metadata__, key "info", a JSON string): grad_dtype, torch/transformers
versions, the worst finite-difference error.

Gradient dtype: --grad-dtype auto keeps F64 when the file stays under 1.5 MB and otherwise stores F32
(the f32 rounding of the f64 gradient, relative error <= 2^-24, ample for an oracle of an f32 runtime).
With the shipped models, opt_pre_ln (29.5k parameters) stays F64 and llama_gqa (107k) becomes F32.

Float64 throughout: HF's eager attention runs its softmax in float32, LlamaRMSNorm casts its input to
float32 and the rotary embedding computes its angles in float32, whatever the model dtype. The script
uses attn_implementation="sdpa" (f64 on CPU) and replaces, per module instance, the RMSNorm forward with
the same formula in the input dtype and the rotary cos/sin with the default-RoPE formula in f64. Without
this the finite-difference check fails by 1e-3..1e-1 (f32 noise over a 1e-5 step).

Padding index: HF builds the token embedding as nn.Embedding(..., padding_idx=pad_token_id), and PyTorch
then drops the gradient flowing into that row from the lookup, although the forward pass does read it
(the weights are random). The script sets padding_idx = None so the saved gradient is the true derivative
of the loss, which zo must reproduce. (The shipped ids, seed 1234, happen to contain no pad id, so this
changes nothing today; it guards other seeds and vocabularies, and the fd check then tests that row.)

Check: for each objective, central finite differences in float64 (h = 1e-5 relative to the weight)
on --fd-checks random coordinates plus one coordinate of every embedding row the ids use as pad id;
the relative error must stay below 1e-6 or the script exits non-zero.
"""
import argparse
import json
import os
import sys
import types

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zo_philox  # noqa: E402  (zo's directions, re-made in Python)
from transformers import AutoModelForCausalLM  # noqa: E402

VARIANTS = ("opt_pre_ln", "llama_gqa")
LENS = [11, 8, 5]
CLS_LENS = [7, 5]
CLS_CANDS = [3, 5]
CLS_LABELS = [1, 0]
MAX_BYTES = 1.5e6
FD_TOL = 1e-6


def load_model(folder):
    # sdpa, not eager: HF's eager attention runs its softmax in float32 even for f64 models, which
    # leaves ~1e-7 relative noise in the loss and ruins the finite-difference check
    m = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64, attn_implementation="sdpa")
    m.eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.Embedding):
            mod.padding_idx = None  # true derivative: keep the pad row's lookup gradient (see docstring)
        elif type(mod).__name__ == "LlamaRMSNorm":
            mod.forward = types.MethodType(rms_norm_f64, mod)
        elif type(mod).__name__ == "LlamaRotaryEmbedding":
            mod.forward = types.MethodType(rotary_f64, mod)
    return m


def rms_norm_f64(self, x):
    # HF's RMSNorm casts its input to float32 (a downcast for f64 models); same formula, input dtype
    return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))


def rotary_f64(self, x, position_ids):
    # HF computes inv_freq and the angles in float32; recompute cos/sin of the default RoPE in f64
    cfg = self.config
    dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    if self.rope_type != "default":
        sys.exit(f"rope_type {self.rope_type}: only the default RoPE is recomputed in f64")
    inv = 1.0 / (cfg.rope_parameters["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    freqs = position_ids[..., None].to(torch.float64) * inv
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def lm_loss(model, seqs):
    total, count = 0.0, 0
    for s in seqs:
        logits = model(torch.tensor([s]), use_cache=False).logits[0]  # [L, V] f64
        lp = torch.log_softmax(logits[:-1], dim=-1)
        tgt = torch.tensor(s[1:])
        total = total - lp.gather(1, tgt[:, None]).sum()
        count += len(s) - 1
    return total / count


def cls_loss(model, prompts, cands, labels):
    total = 0.0
    for p, y in zip(prompts, labels):
        scores = []
        for c in cands:
            logits = model(torch.tensor([p + [c]]), use_cache=False).logits[0]
            scores.append(torch.log_softmax(logits[len(p) - 1], dim=-1)[c])
        total = total - torch.log_softmax(torch.stack(scores), dim=0)[y]
    return total / len(prompts)


def gradients(model, loss_fn):
    model.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return loss.detach().item(), grads


def fd_check(model, loss_fn, grads, coords, label):
    """Central differences in f64 at (name, flat index) coordinates; returns the worst relative error."""
    params = dict(model.named_parameters())
    worst = 0.0
    with torch.no_grad():
        for name, idx in coords:
            flat = params[name].data.view(-1)
            w = flat[idx].item()
            h = 1e-5 * max(1.0, abs(w))
            flat[idx] = w + h
            lp = loss_fn().item()
            flat[idx] = w - h
            lm = loss_fn().item()
            flat[idx] = w
            fd = (lp - lm) / (2 * h)
            g = grads[name].view(-1)[idx].item()
            rel = abs(fd - g) / max(abs(fd), abs(g), 1e-9)
            worst = max(worst, rel)
            print(f"  {label} fd {name}[{idx}]: autograd {g:+.10e} fd {fd:+.10e} rel err {rel:.2e}")
    return worst


def pick_coords(grads, n, rng, extra):
    names = sorted(grads)
    sizes = np.array([grads[k].numel() for k in names], dtype=np.float64)
    out = list(extra)
    while len(out) < n + len(extra):
        name = names[rng.choice(len(names), p=sizes / sizes.sum())]
        g = grads[name].view(-1)
        idx = int(rng.integers(0, g.numel()))
        # skip coordinates whose gradient is ~0 (relative error would measure round-off only)
        if abs(g[idx].item()) > 1e-6 * g.abs().max().item():
            out.append((name, idx))
    return out


FD_SEEDS = [1, 2, 3, 4, 5, 6]
FD_EPS = 1e-3


def gen_variant(data, variant, grad_dtype, n_fd):
    folder = os.path.join(data, "models", variant)
    with safe_open(os.path.join(folder, "model.safetensors"), "pt") as f:
        stored = set(f.keys())
    model = load_model(folder)
    cfg = model.config
    V = cfg.vocab_size
    names = [n for n, _ in model.named_parameters()]
    missing = [n for n in names if n not in stored]
    if missing:
        sys.exit(f"{variant}: parameters not named in model.safetensors: {missing}")
    unused = sorted(stored - set(names))
    if unused:
        print(f"{variant}: stored tensors without their own parameter (tied): {unused}")

    ids = np.random.default_rng(1234).integers(0, V, sum(LENS)).tolist()
    seqs, off = [], 0
    for n in LENS:
        seqs.append(ids[off:off + n])
        off += n
    prompts = [seqs[i][:k] for i, k in enumerate(CLS_LENS)]

    def f_lm():
        return lm_loss(model, seqs)

    def f_cls():
        return cls_loss(model, prompts, CLS_CANDS, CLS_LABELS)

    loss, grads = gradients(model, f_lm)
    closs, cgrads = gradients(model, f_cls)
    print(f"{variant}: V={V} params={sum(g.numel() for g in grads.values())} lm loss={loss:.10f} "
          f"cls loss={closs:.10f}")

    # embedding rows of the pad id get an explicit check when the ids use it
    emb = next(n for n in names if n.endswith("embed_tokens.weight"))
    width = grads[emb].shape[1]
    pad_extra = [(emb, cfg.pad_token_id * width)] if cfg.pad_token_id in ids else []
    rng = np.random.default_rng(99)
    worst = fd_check(model, f_lm, grads, pick_coords(grads, n_fd, rng, pad_extra), "lm")
    pad_cls = [(emb, cfg.pad_token_id * width)] if any(cfg.pad_token_id in p for p in prompts) else []
    worst = max(worst, fd_check(model, f_cls, cgrads, pick_coords(cgrads, n_fd, rng, pad_cls), "cls"))
    print(f"{variant}: finite-difference check worst rel err {worst:.2e} (limit {FD_TOL:g})")
    if worst >= FD_TOL:
        sys.exit(f"{variant}: autograd and finite differences disagree (rel err {worst:.2e})")

    n_par = sum(g.numel() for g in grads.values())
    if grad_dtype == "auto":
        grad_dtype = "f64" if 2 * n_par * 8 < MAX_BYTES else "f32"
    gd = torch.float64 if grad_dtype == "f64" else torch.float32

    def packed(xs):
        return torch.tensor([t for x in xs for t in x], dtype=torch.int64)

    out = {"ids": packed(seqs), "lens": torch.tensor(LENS, dtype=torch.int64),
           "loss": torch.tensor([loss], dtype=torch.float64),
           "cls_prompts": packed(prompts), "cls_lens": torch.tensor(CLS_LENS, dtype=torch.int64),
           "cls_cands": torch.tensor(CLS_CANDS, dtype=torch.int64),
           "cls_labels": torch.tensor(CLS_LABELS, dtype=torch.int64),
           "cls_loss": torch.tensor([closs], dtype=torch.float64)}
    # Central differences along zo's own directions (tools/zo_philox.py), in float64, at zo's
    # eps: the directional derivative SPSA estimates, curvature included (the tiny models' LayerNorm
    # over small embeddings is far from linear at eps = 1e-3, so grad.z alone is not the target).
    params = dict(model.named_parameters())
    fd_lm, fd_cls = [], []
    with torch.no_grad():
        for seed in FD_SEEDS:
            zs = {n: torch.tensor(zo_philox.direction(seed, n, params[n].numel()), dtype=torch.float64)
                  .view_as(params[n]) for n in names}
            row = []
            for f in (f_lm, f_cls):
                for n in names:
                    params[n].add_(FD_EPS * zs[n])
                lp = f().item()
                for n in names:
                    params[n].sub_(2 * FD_EPS * zs[n])
                lm_ = f().item()
                for n in names:
                    params[n].add_(FD_EPS * zs[n])
                row.append((lp - lm_) / (2 * FD_EPS))
            fd_lm.append(row[0])
            fd_cls.append(row[1])
            print(f"{variant}: seed {seed} central difference (eps {FD_EPS}) lm {row[0]:+.6f} cls {row[1]:+.6f}")
    out["fd_seeds"] = torch.tensor(FD_SEEDS, dtype=torch.int64)
    out["fd_eps"] = torch.tensor([FD_EPS], dtype=torch.float64)
    out["fd_lm"] = torch.tensor(fd_lm, dtype=torch.float64)
    out["fd_cls"] = torch.tensor(fd_cls, dtype=torch.float64)
    for n in names:
        out[f"grad.{n}"] = grads[n].to(gd).contiguous()
        out[f"cls_grad.{n}"] = cgrads[n].to(gd).contiguous()
    meta = {"grad_dtype": grad_dtype, "torch": torch.__version__, "transformers": transformers.__version__,
            "fd_worst_rel_err": f"{worst:.3e}", "model": f"models/{variant}",
            "note": "float64 eval, sdpa attention, RMSNorm and RoPE patched to f64, "
                    "embedding padding_idx disabled (true derivative)"}
    os.makedirs(os.path.join(data, "grad"), exist_ok=True)
    path = os.path.join(data, "grad", f"{variant}.safetensors")
    # one metadata key holding sorted JSON: the header's map order would otherwise vary run to run
    save_file(out, path, metadata={"info": json.dumps(meta, sort_keys=True)})
    print(f"{variant}: wrote {path} ({os.path.getsize(path)} bytes, grads {grad_dtype})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="tests/data")
    ap.add_argument("--only", action="append", choices=VARIANTS)
    ap.add_argument("--grad-dtype", choices=["auto", "f64", "f32"], default="auto")
    ap.add_argument("--fd-checks", type=int, default=6)
    a = ap.parse_args()
    torch.set_num_threads(1)  # same reduction order every run
    torch.use_deterministic_algorithms(True)
    for v in a.only or VARIANTS:
        gen_variant(a.data, v, a.grad_dtype, a.fd_checks)


if __name__ == "__main__":
    main()
