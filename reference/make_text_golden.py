#!/usr/bin/env python3
"""Write the golden files of the CLIP text tower and tokenizer (testdata/golden/text/).

Run with the reference environment:
    .venv/bin/python reference/make_text_golden.py --bpe /tmp/open_clip/bpe_simple_vocab_16e6.txt.gz [--out DIR]

--bpe is CLIP's BPE file, which ships inside the PyPI package open_clip_torch (open_clip/bpe_simple_vocab_16e6.txt.gz);
fetch it outside the repository, e.g.
    .venv/bin/pip download open_clip_torch --no-deps -d /tmp/oc && unzip -o /tmp/oc/*.whl 'open_clip/*.gz' -d /tmp
(its sha256 is checked below). testdata/golden/text/README.md describes every file written.

Everything is computed with the real reference classes: transformers' CLIPTokenizer (the tokenizers-backed one of
transformers 5), CLIPModel, CLIPTextModel and diffusers' cosine_distance. No weights are downloaded: the tiny CLIP
model gets random text weights from a fixed seed, and its vision tower and visual projection are those of the golden
safety checker testdata/golden/models/tiny_quickgelu (made by make_golden.py), so that the text embeddings live in the
same 24-dimensional space as that checker's image embeddings, as CLIP ViT-L/14's do for the real checker.

Deterministic (fixed seeds, one torch thread): two runs give byte-identical files.
"""
import argparse
import gzip
import hashlib
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch

torch.set_num_threads(1)

import safetensors  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from diffusers.pipelines.stable_diffusion import safety_checker as sc_mod  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import CLIPConfig, CLIPModel, CLIPTextModel, CLIPTokenizer  # noqa: E402

transformers.logging.set_verbosity_error()
try:
    transformers.utils.logging.disable_progress_bar()
except AttributeError:
    pass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
N_MERGES = 49152 - 256 - 2  # what CLIP (and open_clip's SimpleTokenizer) keep: 48894 merges -> 49408 ids
CHECKER = "tiny_quickgelu"  # the golden safety checker whose vision tower the tiny CLIP shares
SEED = 2001
TEXT_CONFIG = dict(vocab_size=49408, hidden_size=16, intermediate_size=40, num_attention_heads=4, num_hidden_layers=2,
                   max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                   bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
SMALL_MERGES = 2000  # merges of the small tokenizer.json fixture


def AT(content, normalized):
    """An AddedToken as tokenizer_config.json files on the hub write it."""
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": normalized, "rstrip": False,
            "single_word": False}


# tokenizer_config.json variants. "openai" is the one of openai/clip-vit-large-patch14 (specials normalized=true in
# added_tokens_decoder) and is the model directory's own; "sd15" is runwayml/stable-diffusion-v1-5's tokenizer/ (specials
# as AddedToken objects, pad as a plain string); "sd2" is stabilityai/stable-diffusion-2's (pad_token "!"); "mixed" gives
# eos as a plain string and pad as a normalized AddedToken of the same text (which declaration counts?); "none" has no
# tokenizer_config.json at all.
TOKENIZER_CONFIGS = {
    "openai": {"add_prefix_space": False,
               "added_tokens_decoder": {
                   "49406": {"content": "<|startoftext|>", "lstrip": False, "normalized": True, "rstrip": False,
                             "single_word": False, "special": True},
                   "49407": {"content": "<|endoftext|>", "lstrip": False, "normalized": True, "rstrip": False,
                             "single_word": False, "special": True}},
               "bos_token": "<|startoftext|>", "clean_up_tokenization_spaces": True, "do_lower_case": True,
               "eos_token": "<|endoftext|>", "errors": "replace", "model_max_length": 77,
               "pad_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer", "unk_token": "<|endoftext|>"},
    "sd15": {"add_prefix_space": False, "bos_token": AT("<|startoftext|>", True), "do_lower_case": True,
             "eos_token": AT("<|endoftext|>", True), "errors": "replace", "model_max_length": 77,
             "pad_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer", "unk_token": AT("<|endoftext|>", True)},
    "sd2": {"add_prefix_space": False, "bos_token": AT("<|startoftext|>", True), "do_lower_case": True,
            "eos_token": AT("<|endoftext|>", True), "errors": "replace", "model_max_length": 77, "pad_token": "!",
            "tokenizer_class": "CLIPTokenizer", "unk_token": AT("<|endoftext|>", True)},
    "mixed": {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": AT("<|endoftext|>", True),
              "unk_token": "<|endoftext|>", "model_max_length": 77, "tokenizer_class": "CLIPTokenizer"},
    "none": None,
}

# The tokenizer corpus: strings that exercise every step (see cliptok's package documentation).
CORPUS = [
    "a photo of a cat", "A PHOTO OF A CAT", "a photo of a weapon", "An astronaut riding a horse on Mars, 4k, HDR",
    # contractions and apostrophes
    "don't", "Don't stop", "DON'T STOP", "I'm sure we'll see they're fine, you've said he'd go", "it's 'quoted'",
    "''s", "'s'", "rock'n'roll", "don\u2019t (curly apostrophe)", "o'clock's", "!'s", "'S 'T 'RE 'VE 'M 'LL 'D",
    # punctuation runs
    "!!!???...", "hello!!!world", "a--b==c", "(a)[b]{c}<d>", "...", "e-mail: test@example.com",
    "https://example.com/path?q=1&x=2#frag", "#hashtag @mention $100 50% C++ & C#", "<>|\\/~`^_",
    # special tokens in the text
    "<|endoftext|>", "<|startoftext|>", "<|ENDOFTEXT|>", "x<|startoftext|>y", "<|endoftext|>>", "<|endoftext|>\u0338",
    "<|startoftext|>hi<|endoftext|>", "<|startoftext|<|endoftext|>", "a <|endoftext|> b", "<|endof text|>",
    # numbers
    "12345", "3.14159", "1,000,000", "10th 2nd 1st", "\u0663\u0664\u0665 \u0968\u0969", "\u00bd \u2154 \u216b \u00b2\u00b3",
    # whitespace
    "  leading and trailing  ", "tab\tsep\nnew\r\nline\x0bvt\x0cff", "\u00a0nbsp\u3000ideo\u2003em\u2028ls\u0085nel",
    "zero\u200bwidth\ufeffbom\u2060wj", "\x1c\x1d\x1e\x1f unit seps", "", "   ", "\t\n",
    # letters, accents, case
    "h\u00e9llo w\u00f6rld", "He\u0301llo (combining acute)", "na\u00efve caf\u00e9 r\u00e9sum\u00e9",
    "\u0130stanbul \u0131\u0130", "\u03a3\u0391\u03a3 \u039f\u0394\u039f\u03a3", "stra\u00dfe STRASSE \u1e9e",
    "\ufb01 \ufb02 ligatures", "\u01c4 \u01c5 \u01c6", "\u212b \u2126 \u212a (compatibility singletons)",
    "\uff21\uff22\uff23 full width \uff11\uff12", "\u24b6\u24b7 \u2460\u2461", "\U0001d49c\U0001d4c1\U0001d4c5",
    # scripts
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", "\u4e2d\u6587\u5b57\u7b26\u6d4b\u8bd5",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8", "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",
    "\u0440\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442", "\u05e2\u05d1\u05e8\u05d9\u05ea",
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629", "\u0939\u093f\u0928\u094d\u0926\u0940", "\u0e44\u0e17\u0e22",
    # emoji
    "\U0001f600", "\U0001f44d\U0001f3fd", "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
    "\U0001f1eb\U0001f1f7", "I \u2764\ufe0f NY", "cat\U0001f408dog",
    # control characters and odd code points
    "\x00null\x00", "a\ufffdb", "soft\u00adhyphen", "\x7f\x80\x9f", "\U0010fffd private", "\ue000",
    # long
    "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis " * 3,
    "word " * 100, "a" * 300, "a photo of " + "very " * 80 + "big cat", "1" * 90,
]

# Texts embedded by the model (each also in CORPUS or close to it).
EMBED_TEXTS = [
    "a photo of a weapon", "a photo of a cat", "", "Don't stop!!! \U0001f600", "a <|endoftext|> b",
    "na\u00efve caf\u00e9 \u03a3\u0391\u03a3 \u0130stanbul", "a photo of " + "very " * 80 + "big cat",
    "A PHOTO OF A CAT",
]
# Texts whose cosine with the golden images (through the tiny checker's vision tower) is recorded.
CONCEPT_TEXTS = ["a photo of a weapon", "a photo of a cat", "blood"]


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def floats(a):
    return [float(x) for x in np.asarray(a, dtype=np.float32).reshape(-1)]


def write_json(path, obj, indent=1):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent, ensure_ascii=True)
        f.write("\n")


# ----------------------------------------------------------------------------------------------------------------
# tokenizer files

def bytes_to_unicode_order():
    """CLIP's byte-level alphabet in vocabulary order: printable bytes stand for themselves, the others get U+0100..."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    stand_in, n = {}, 0
    for b in range(256):
        if b in printable:
            stand_in[b] = chr(b)
        else:
            stand_in[b] = chr(256 + n)
            n += 1
    return [stand_in[b] for b in printable] + [stand_in[b] for b in range(256) if b not in printable]


def clip_vocab(bpe_path):
    """vocab (list, id order) and merges (list of 'a b') the way CLIP builds them from its BPE file."""
    if sha256_file(bpe_path) != BPE_SHA256:
        sys.exit(f"make_text_golden: {bpe_path}: unexpected sha256 (want {BPE_SHA256})")
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = lines[1:1 + N_MERGES]
    assert all(len(m.split(" ")) == 2 for m in merges)
    alphabet = bytes_to_unicode_order()
    vocab = alphabet + [c + "</w>" for c in alphabet] + ["".join(m.split(" ")) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408 and len(set(vocab)) == len(vocab)
    return vocab, merges


def write_tokenizer_files(d, vocab, merges, config):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False, separators=(",", ":"))
    with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    if config is not None:
        write_json(os.path.join(d, "tokenizer_config.json"), config, indent=2)


def encode_corpus(tok):
    """ids with truncation to 77 (as diffusers tokenizes prompts) and the full content ids."""
    out = []
    for s in CORPUS:
        ids = tok(s, truncation=True, max_length=77).input_ids
        full = tok(s, add_special_tokens=False).input_ids
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        assert ids[1:-1] == full[:75]
        out.append({"ids": ids, "content_ids": full})
    return out


def unicode_dump(tok):
    """How the reference tokenizer classifies and normalises every code point (see README)."""
    bt = tok.backend_tokenizer
    norm, pre = bt.normalizer, bt.pre_tokenizer
    runs, normalized = [], {}
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        # "!cc!" splits into 1 piece (c is neither letter, number nor space), 2 (space, dropped), 3 (letters), 4 (numbers)
        k = len(pre.pre_tokenize_str("!" + c + c + "!"))
        cls = {1: "P", 2: "W", 3: "L", 4: "N"}[k]
        if runs and runs[-1][2] == cls and runs[-1][1] + 1 == cp - (2048 if cp == 0xE000 else 0):
            runs[-1][1] = cp
        else:
            runs.append([cp, cp, cls])
        n = norm.normalize_str(c)
        if n != c:
            normalized[f"{cp:x}"] = [ord(x) for x in n]
    return {"classes": runs, "normalized": normalized,
            "note": "classes: [first, last, class] runs over all code points but surrogates (P other, W white space, "
                    "L letter, N number) as CLIP's pre-tokenizer sees them; normalized: the normaliser's output for "
                    "each code point it changes"}


def small_tokenizer_json(vocab, merges, d):
    """tokenizer.json fixture: CLIP's pipeline with the first SMALL_MERGES merges, written by transformers, with
    <|endoftext|> marked normalized and the merges in the legacy "a b" string form (the tokenizers library reads
    either form, not a mixture; the Go tests convert to the other)."""
    small = vocab[:512] + ["".join(m.split(" ")) for m in merges[:SMALL_MERGES]] + ["<|startoftext|>", "<|endoftext|>"]
    tok = CLIPTokenizer(vocab={t: i for i, t in enumerate(small)}, merges=[tuple(m.split(" ")) for m in
                                                                          merges[:SMALL_MERGES]])
    with tempfile.TemporaryDirectory() as tmp:
        tok.save_pretrained(tmp)
        with open(os.path.join(tmp, "tokenizer.json"), encoding="utf-8") as f:
            tj = json.load(f)
    for a in tj["added_tokens"]:
        if a["content"] == "<|endoftext|>":
            a["normalized"] = True
    tj["model"]["merges"] = [" ".join(m) for m in tj["model"]["merges"]]
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, separators=(",", ":"))
    write_json(os.path.join(d, "tokenizer_config.json"),
               {"model_max_length": 77, "tokenizer_class": "CLIPTokenizer", "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}, indent=2)
    loaded = CLIPTokenizer.from_pretrained(d)
    raw = tokenizers.Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    assert loaded.eos_token_id == len(small) - 1
    return loaded, raw


# ----------------------------------------------------------------------------------------------------------------
# the tiny CLIP model

def init_text_weights(model, seed):
    g = torch.Generator().manual_seed(seed)
    params = {n: p for n, p in model.named_parameters() if n.startswith("text_")}
    with torch.no_grad():
        for name in sorted(params):
            p = params[name]
            if "norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.25 * torch.randn(p.shape, generator=g))
            elif name.endswith("token_embedding.weight"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif name.endswith("position_embedding.weight"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            elif name.endswith(".weight"):
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)
            elif name.endswith(".bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            else:
                raise RuntimeError(f"no init rule for {name}")
            p.copy_(p.half().float())  # stored as float16: make the float32 model hold exactly those values


def build_model(checker_dir):
    with open(os.path.join(checker_dir, "config.json")) as f:
        ccfg = json.load(f)
    vision = {k: ccfg["vision_config"][k] for k in ("hidden_size", "intermediate_size", "num_attention_heads",
                                                    "num_hidden_layers", "patch_size", "image_size", "hidden_act",
                                                    "layer_norm_eps")}
    cfg = CLIPConfig(text_config=dict(TEXT_CONFIG), vision_config=vision, projection_dim=ccfg["projection_dim"])
    model = CLIPModel(cfg).eval()
    init_text_weights(model, SEED)
    # the checker's vision tower and projection (keys vision_model.vision_model.* -> vision_model.*)
    sd = model.state_dict()
    copied = 0
    with safe_open(os.path.join(checker_dir, "model.safetensors"), "pt") as f:
        for k in f.keys():
            if k.startswith("vision_model.vision_model.") and not k.endswith("position_ids"):
                dst = "vision_model." + k[len("vision_model.vision_model."):]
            elif k == "visual_projection.weight":
                dst = k
            else:
                continue
            with torch.no_grad():
                sd[dst].copy_(f.get_tensor(k))
            copied += 1
    vision_keys = [k for k in sd if k.startswith("vision_model.") or k == "visual_projection.weight"]
    assert copied == len(vision_keys), (copied, len(vision_keys))
    return model


def save_model(model, d):
    """save_pretrained, then rewrite model.safetensors with the text tower in float16 (vision stays float32)."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        tensors = {}
        with safe_open(os.path.join(tmp, "model.safetensors"), "pt") as f:
            for k in sorted(f.keys()):
                t = f.get_tensor(k)
                if k.startswith("text_model.") or k == "text_projection.weight":
                    t = t.half()
                tensors[k] = t.contiguous()
        shutil.copy(os.path.join(tmp, "config.json"), os.path.join(d, "config.json"))
    save_file(tensors, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    os.chmod(os.path.join(d, "model.safetensors"), 0o644)
    loaded = CLIPModel.from_pretrained(d, dtype=torch.float32).eval()
    a, b = model.state_dict(), loaded.state_dict()
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    return loaded


def text_features(model, tok, texts):
    """input_ids as diffusers makes them (padding to 77 with the pad token, truncation), pooled output and
    projected text embeddings, as CLIPModel computes them."""
    enc = tok(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = model.text_model(input_ids=enc.input_ids)
        pooled = out.pooler_output
        embeds = model.get_text_features(input_ids=enc.input_ids).pooler_output
        assert torch.equal(model.text_projection(pooled), embeds)
        # the attention mask changes nothing at the pooled position (causal attention)
        masked = model.text_model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).pooler_output
        assert (masked - pooled).abs().max() < 1e-5
    return enc.input_ids, pooled.numpy(), embeds.numpy()


def pooled_with_config(model, tok, texts, **changes):
    """Pooled output of a CLIPTextModel built from the text config with `changes` and the same weights."""
    cfg = model.config.text_config.to_dict()
    cfg.update(changes)
    tm = CLIPTextModel(transformers.CLIPTextConfig(**cfg)).eval()
    missing = tm.load_state_dict({k[len("text_model."):]: v for k, v in model.state_dict().items()
                                  if k.startswith("text_model.")}, strict=False)
    assert not missing.missing_keys, missing
    enc = tok(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with torch.no_grad():
        return enc.input_ids, tm(input_ids=enc.input_ids).pooler_output.numpy()


def text_encoder_layouts(model, tok, texts, pooled, out):
    """A pipeline's text_encoder/ (CLIPTextModel) with the tiny CLIP's text weights, in both key layouts: the hub's
    text_model.* and the bare one transformers 5 writes. Both must load into CLIPTextModel and give CLIPModel's pooled
    output. The Go tests build the same folders from model.safetensors; only the config is stored."""
    enc = tok(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with tempfile.TemporaryDirectory() as tmp:
        tm = CLIPTextModel(model.config.text_config).eval()
        tm.save_pretrained(tmp)
        shutil.copy(os.path.join(tmp, "config.json"), os.path.join(out, "text_encoder_config.json"))
        with safe_open(os.path.join(out, "clip", "model.safetensors"), "pt") as f:
            hub = {k: f.get_tensor(k) for k in f.keys() if k.startswith("text_model.")}
        results = {}
        for layout, tensors in (("text_model", hub),
                                ("bare", {k[len("text_model."):]: v for k, v in hub.items()})):
            save_file(tensors, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
            m = CLIPTextModel.from_pretrained(tmp, dtype=torch.float32).eval()
            with torch.no_grad():
                p = m(input_ids=enc.input_ids).pooler_output.numpy()
            assert np.abs(p - pooled).max() < 1e-6, layout
            results[layout] = float(np.abs(p - pooled).max())
    return results


# ----------------------------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bpe", required=True, help="open_clip's bpe_simple_vocab_16e6.txt.gz")
    ap.add_argument("--out", default=os.path.join(ROOT, "testdata", "golden", "text"))
    args = ap.parse_args()
    out = args.out
    golden = os.path.dirname(out.rstrip("/"))
    checker_dir = os.path.join(golden, "models", CHECKER)
    os.makedirs(out, exist_ok=True)
    for entry in os.listdir(out):  # everything but the README is regenerated
        if entry != "README.md":
            p = os.path.join(out, entry)
            shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    clip_dir = os.path.join(out, "clip")

    vocab, merges = clip_vocab(args.bpe)
    write_tokenizer_files(clip_dir, vocab, merges, TOKENIZER_CONFIGS["openai"])
    tok = CLIPTokenizer.from_pretrained(clip_dir)
    assert type(tok).__name__ == "CLIPTokenizer" and tok.model_max_length == 77
    assert tok.bos_token_id == 49406 and tok.eos_token_id == 49407 and tok.pad_token_id == 49407

    # tokenizer goldens: the model directory's tokenizer and the tokenizer_config.json variants
    tokenizer = {"corpus": CORPUS, "variants": {}}
    cfg_dir = os.path.join(out, "tokenizer_configs")
    os.makedirs(cfg_dir)
    for name, cfg in TOKENIZER_CONFIGS.items():
        if name == "openai":
            t = tok
        else:
            if cfg is not None:
                write_json(os.path.join(cfg_dir, name + ".json"), cfg, indent=2)
            with tempfile.TemporaryDirectory() as tmp:
                write_tokenizer_files(tmp, vocab, merges, cfg)
                t = CLIPTokenizer.from_pretrained(tmp)
        tokenizer["variants"][name] = {
            "tokenizer_config": None if cfg is None else ("clip/tokenizer_config.json" if name == "openai" else
                                                          f"tokenizer_configs/{name}.json"),
            "bos": t.bos_token_id, "eos": t.eos_token_id, "pad": t.pad_token_id,
            "encodings": encode_corpus(t)}
    # the tokenizer.json fixture
    tj_dir = os.path.join(out, "tokenizer_json")
    small, raw = small_tokenizer_json(vocab, merges, tj_dir)
    enc = encode_corpus(small)
    for s, e in zip(CORPUS, enc):  # the tokenizers library itself agrees
        assert raw.encode(s).ids == e["ids"][:1] + e["content_ids"] + e["ids"][-1:], s
    tokenizer["variants"]["tokenizer_json"] = {"dir": "tokenizer_json", "bos": small.bos_token_id,
                                               "eos": small.eos_token_id, "pad": small.pad_token_id,
                                               "encodings": enc}
    tokenizer["generator"] = generator_string()
    write_json(os.path.join(out, "tokenizer_expected.json"), tokenizer, indent=None)
    write_json(os.path.join(out, "unicode.json"), unicode_dump(tok), indent=None)
    print(f"make_text_golden: {len(CORPUS)} corpus strings, {len(tokenizer['variants'])} tokenizer variants")

    # the tiny CLIP model
    model = build_model(checker_dir)
    loaded = save_model(model, clip_dir)
    ids, pooled, embeds = text_features(loaded, tok, EMBED_TEXTS)
    # eager attention gives the same (the default is sdpa)
    eager = CLIPModel.from_pretrained(clip_dir, dtype=torch.float32, attn_implementation="eager").eval()
    _, pooled_e, embeds_e = text_features(eager, tok, EMBED_TEXTS)
    assert np.abs(embeds_e - embeds).max() < 1e-5 and np.abs(pooled_e - pooled).max() < 1e-5

    texts = []
    for i, s in enumerate(EMBED_TEXTS):
        row = [int(x) for x in ids[i]]
        n_content = len(tok(s, add_special_tokens=False).input_ids)
        texts.append({"text": s, "input_ids": row, "truncated": n_content > 75, "content_tokens": n_content,
                      "pooled_output": floats(pooled[i]), "text_embeds": floats(embeds[i])})

    # pooling rules: eos_token_id 2 (legacy configs: argmax of input_ids) gives the same; eos_token_id 269 (".</w>")
    # pools at the first "." (or at position 0 when there is none)
    variants = {}
    for name, eos in (("eos2", 2), ("eos_period", 269)):
        vids, vpooled = pooled_with_config(loaded, tok, EMBED_TEXTS + ["a cat. a dog."], eos_token_id=eos)
        cfg = json.load(open(os.path.join(clip_dir, "config.json")))
        cfg["text_config"]["eos_token_id"] = eos
        write_json(os.path.join(out, f"config_{name}.json"), cfg, indent=2)
        if eos == 2:
            assert np.abs(vpooled[:len(EMBED_TEXTS)] - pooled).max() == 0
        variants[name] = {"config": f"config_{name}.json", "texts": EMBED_TEXTS + ["a cat. a dog."],
                          "pooled_output": [floats(p) for p in vpooled]}
    period = variants["eos_period"]["pooled_output"]
    assert np.abs(np.array(period[0]) - pooled[0]).max() > 1e-3  # pooled elsewhere: the rule matters

    layouts = text_encoder_layouts(loaded, tok, EMBED_TEXTS, pooled, out)

    # the same embedding space: the CLIP's image features are the checker's image embeddings
    with open(os.path.join(checker_dir, "expected.json")) as f:
        chk = json.load(f)
    names = [im["file"] for im in chk["images"]]
    pix = np.stack([np.fromfile(os.path.join(golden, "pixels", n + ".pixel_values.f32"), dtype="<f4")
                    .reshape(3, 224, 224) for n in names])
    with torch.no_grad():
        img = loaded.get_image_features(pixel_values=torch.from_numpy(pix)).pooler_output
    want = np.array([im["image_embeds"] for im in chk["images"]], dtype=np.float32)
    img_err = float(np.abs(img.numpy() - want).max())
    assert img_err < 1e-5, img_err
    _, _, cembeds = text_features(loaded, tok, CONCEPT_TEXTS)
    with torch.no_grad():
        cos = sc_mod.cosine_distance(torch.from_numpy(want), torch.from_numpy(cembeds)).numpy()
    concepts = {"checker": f"models/{CHECKER}", "texts": CONCEPT_TEXTS, "images": names,
                "cos": [floats(row) for row in cos],
                "image_embeds_max_abs_diff": img_err}

    expected = {
        "generator": generator_string(),
        "model": {"dir": "clip", "text_config": {k: getattr(loaded.config.text_config, k) for k in TEXT_CONFIG},
                  "projection_dim": loaded.config.projection_dim,
                  "attn_implementation": loaded.config.text_config._attn_implementation,
                  "files": {f: sha256_file(os.path.join(clip_dir, f)) for f in sorted(os.listdir(clip_dir))}},
        "texts": texts,
        "pooling_variants": variants,
        "text_encoder": {"config": "text_encoder_config.json", "layouts_max_abs_diff": layouts},
        "concepts": concepts,
    }
    write_json(os.path.join(out, "expected.json"), expected)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(out) for f in fs)
    print(f"make_text_golden: wrote {out} ({total} bytes)")


def generator_string():
    return (f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}, torch {torch.__version__}, "
            f"numpy {np.__version__}, safetensors {safetensors.__version__}")


if __name__ == "__main__":
    main()
