#!/usr/bin/env python3
"""One-off check that transformers loads a zo export unchanged (not part of the test suite: it
needs torch and transformers).

    zo convert default --out /tmp/smol_hf
    python tools/check_export.py /tmp/smol_hf --default-ref tests/data/default_model_ref.json
    zo convert tests/data/models/opt_post_ln --out /tmp/opt_hf
    python tools/check_export.py /tmp/opt_hf --fixture tests/data/models/opt_post_ln

With --default-ref: compares the last-position logits at the recorded ids with what transformers
computed on the original GGUF. With --fixture: compares all logits with the fixture's ref.safetensors.
"""
import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("export")
    ap.add_argument("--default-ref")
    ap.add_argument("--fixture")
    a = ap.parse_args()
    m = AutoModelForCausalLM.from_pretrained(a.export, dtype=torch.float32).eval()
    worst = 0.0
    with torch.no_grad():
        if a.default_ref:
            ref = json.load(open(a.default_ref))
            for p in ref["prompts"]:
                lg = m(torch.tensor([p["prompt_ids"]])).logits[0, -1]
                err = (lg[p["fixed_ids"]] - torch.tensor(p["logits_at_fixed_ids"])).abs().max().item()
                print(f"{p['name']}: max |logit - reference| = {err:.3g}")
                worst = max(worst, err)
        if a.fixture:
            from safetensors.torch import load_file

            r = load_file(os.path.join(a.fixture, "ref.safetensors"))
            lg = m(r["input_ids"], attention_mask=r["attention_mask"]).logits
            keep = r["attention_mask"].bool()
            err = (lg - r["logits"]).abs()[keep].max().item()
            print(f"fixture: max |logit - reference| = {err:.3g}")
            worst = max(worst, err)
    print("OK" if worst < 1e-4 else "MISMATCH")
    raise SystemExit(0 if worst < 1e-4 else 1)


if __name__ == "__main__":
    main()
