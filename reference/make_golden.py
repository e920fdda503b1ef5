#!/usr/bin/env python3
"""Write the golden files that the Go tests compare against (testdata/golden/).

Run with the reference environment:  .venv/bin/python reference/make_golden.py [--out DIR]
(`make golden` runs scripts/setup-reference.sh first). testdata/golden/README.md describes every file.

Everything here uses the real reference classes:
  * diffusers' StableDiffusionSafetyChecker (constructed from a transformers CLIPConfig) for the model, its
    `forward` (the verdicts) and `forward_onnx` (for contrast);
  * transformers' CLIPImageProcessorPil (the Pillow path of CLIPImageProcessor) with the SD v1 feature-extractor
    configuration for the preprocessing;
  * diffusers' StableDiffusionPipeline.run_safety_checker / VaeImageProcessor.postprocess for the tensor path.
No weights are downloaded: each model gets random weights from a fixed seed, and its thresholds are chosen after
the cosine similarities of the golden images are known, so that every branch of the scoring rule is exercised.

The script is deterministic (fixed seeds, one torch thread): running it twice on one machine gives byte-identical
files (another CPU can differ in the last bits of the model outputs: see testdata/golden/README.md).
"""
import argparse
import hashlib
import itertools
import json
import os
import shutil
import sys
import tempfile
from types import SimpleNamespace

import numpy as np
import PIL
from PIL import Image

import torch

torch.set_num_threads(1)  # one thread: bit-reproducible CPU results from run to run

import diffusers  # noqa: E402
import safetensors  # noqa: E402
import transformers  # noqa: E402
from diffusers import StableDiffusionPipeline  # noqa: E402
from diffusers.image_processor import VaeImageProcessor  # noqa: E402
from diffusers.pipelines.stable_diffusion import safety_checker as sc_mod  # noqa: E402
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker  # noqa: E402
from safetensors import safe_open  # noqa: E402
from transformers import CLIPConfig  # noqa: E402
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil  # noqa: E402

import warnings  # noqa: E402

# Pillow warns when convert("RGB") drops a palette's transparency: that is the behaviour the golden files record.
warnings.filterwarnings("ignore", message="Palette images with Transparency")
transformers.logging.set_verbosity_error()
diffusers.logging.set_verbosity_error()
try:  # no progress bars in the log
    transformers.utils.logging.disable_progress_bar()
except AttributeError:
    pass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_CONCEPTS, N_SPECIAL = 17, 3
# A score counts as "clear" (hit or miss) when its unrounded value is at least this far from 0; only the cases
# designed to sit on the rounding edge come closer.
CLEAR = 0.002
# JPEG decoders differ in their IDCT (a step or two of 8 bits); on these tiny random models that moves a cosine by up
# to ~0.003. So no designed case uses a JPEG image, and every score of a JPEG image stays this far from 0.
LOSSY_CLEAR = 0.015
LOSSY_EXT = (".jpg", ".jpeg")
ADJUSTMENT = 0.01  # diffusers' special-care adjustment

# The SD v1 feature extractor's preprocessor_config.json, in the legacy form that the hub checkpoints carry
# (CompVis/stable-diffusion-safety-checker, runwayml/stable-diffusion-v1-5/feature_extractor).
HUB_PREPROCESSOR = {
    "crop_size": 224,
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "size": 224,
}

# The tiny model configurations (vision tower + projection). `layout` says which checkpoint key layout
# model.safetensors gets (see README): "hub" = vision_model.vision_model.* as on the hub (what transformers 5 writes
# for a model loaded from a hub checkpoint); "hub+position_ids" = the same plus the int64
# vision_model.vision_model.embeddings.position_ids buffer, like the CompVis checkpoint; "transformers5" =
# vision_model.* (what transformers 5 writes for a freshly constructed model).
CONFIGS = [
    dict(name="tiny_quickgelu", seed=1001, projection_dim=24, layout="hub+position_ids", extra_formats=True,
         preprocessor="hub", minimal_config=None,
         vision=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                     patch_size=14, image_size=224, hidden_act="quick_gelu", layer_norm_eps=1e-5)),
    dict(name="tiny_gelu_eps", seed=1002, projection_dim=20, layout="hub", extra_formats=False,
         preprocessor="hub", minimal_config=None,
         vision=dict(hidden_size=48, intermediate_size=64, num_attention_heads=3, num_hidden_layers=3,
                     patch_size=16, image_size=224, hidden_act="gelu", layer_norm_eps=1e-6)),
    dict(name="tiny_gelu_new_odd", seed=1003, projection_dim=16, layout="hub", extra_formats=False,
         preprocessor="hub", minimal_config=None,
         vision=dict(hidden_size=40, intermediate_size=72, num_attention_heads=5, num_hidden_layers=1,
                     patch_size=32, image_size=224, hidden_act="gelu_new", layer_norm_eps=1e-5)),
    # config.json is written by hand with only these keys: transformers' defaults apply to the rest
    # (hidden_act quick_gelu, layer_norm_eps 1e-5, image_size 224, num_channels 3).
    dict(name="tiny_defaults", seed=1004, projection_dim=12, layout="transformers5", extra_formats=False,
         preprocessor="transformers5",
         minimal_config={
             "architectures": ["StableDiffusionSafetyChecker"],
             "model_type": "clip",
             "projection_dim": 12,
             "vision_config": {"hidden_size": 32, "intermediate_size": 40, "num_attention_heads": 2,
                               "num_hidden_layers": 1, "patch_size": 28},
         },
         vision=None),
]
TENSOR_PATH_CONFIG = "tiny_quickgelu"


# ----------------------------------------------------------------------------------------------------------------
# small helpers

def sha256_bytes(b):
    return hashlib.sha256(b).hexdigest()


def sha256_file(path):
    with open(path, "rb") as f:
        return sha256_bytes(f.read())


def f32_le_bytes(a):
    return np.ascontiguousarray(np.asarray(a, dtype="<f4")).tobytes()


def floats(a):
    """float32 values as JSON numbers (each the exact float64 value of the float32, so it round-trips)."""
    return [float(x) for x in np.asarray(a, dtype=np.float32).reshape(-1)]


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


# ----------------------------------------------------------------------------------------------------------------
# golden images: synthetic, deterministic, each from its own seed

def smooth_field(rng, h, w, channels, waves=6, lo=0.0, hi=255.0):
    """A sum of random plane waves and blobs, scaled to [lo, hi]: smooth 'photo-like' content."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.zeros((h, w, channels))
    for c in range(channels):
        f = np.zeros((h, w))
        for _ in range(waves):
            fx, fy = rng.uniform(-4, 4, size=2) * np.pi / max(h, w)
            f += rng.uniform(0.3, 1.0) * np.sin(fx * x + fy * y + rng.uniform(0, 2 * np.pi))
        for _ in range(3):
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.1, 0.4) * min(h, w)
            f += rng.uniform(-1.5, 1.5) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        f = (f - f.min()) / (f.max() - f.min() + 1e-12)
        out[..., c] = lo + f * (hi - lo)
    return out


def add_shapes(rng, img, n=4):
    """Hard-edged discs and rectangles (edges make the resampling filter matter)."""
    h, w, c = img.shape
    y, x = np.mgrid[0:h, 0:w]
    for i in range(n):
        color = rng.uniform(0, 255, size=c)
        if i % 2 == 0:
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.25) * min(h, w)
            m = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        else:
            x0, y0 = rng.integers(0, w), rng.integers(0, h)
            m = (x >= x0) & (x < x0 + rng.integers(w // 8 + 1, w // 2 + 2)) & \
                (y >= y0) & (y < y0 + rng.integers(h // 8 + 1, h // 2 + 2))
        img[m] = color
    return img


def to_u8(a):
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def make_images(img_dir):
    """Writes the golden images; returns [(file name, description)] in a fixed order."""
    os.makedirs(img_dir, exist_ok=True)
    out = []

    def rng(seed):
        return np.random.default_rng(seed)

    # 1. SD output size: smooth gradient + shapes + a little noise, RGB PNG (downscaling 512 -> 224).
    r = rng(11)
    a = add_shapes(r, smooth_field(r, 512, 512, 3, waves=5), n=5)
    a = to_u8(a + r.integers(-1, 2, size=a.shape))
    Image.fromarray(a, "RGB").save(os.path.join(img_dir, "sd_512x512.png"))
    out.append(("sd_512x512.png", "512x512 RGB PNG (Stable Diffusion's output size): downscaling, square"))

    # 2. 300x200 RGB: landscape, shortest edge 200 -> upscaling to 224, width int(224*300/200)=336, crop.
    r = rng(12)
    a = smooth_field(r, 200, 300, 3)
    a[:, ::7] = a[:, ::7] * 0.4  # thin vertical stripes
    Image.fromarray(to_u8(add_shapes(r, a)), "RGB").save(os.path.join(img_dir, "rgb_300x200.png"))
    out.append(("rgb_300x200.png", "300x200 RGB PNG: landscape, slight upscaling, horizontal crop"))

    # 3. 100x260 RGBA with partial alpha; colour values under transparent pixels are not zero, so dropping
    #    alpha (what convert("RGB") does) and compositing give different results.
    r = rng(13)
    rgb = add_shapes(r, smooth_field(r, 260, 100, 3))
    alpha = np.tile(np.linspace(0, 255, 260)[:, None], (1, 100))
    alpha[:40, :] = 0            # fully transparent band with visible colour underneath
    alpha[100:140, 30:70] = 128  # half transparent square
    a = np.dstack([to_u8(rgb), to_u8(alpha)])
    Image.fromarray(a, "RGBA").save(os.path.join(img_dir, "rgba_100x260.png"))
    out.append(("rgba_100x260.png", "100x260 RGBA PNG with partial and zero alpha: portrait, upscaling, "
                                    "alpha dropped without compositing"))

    # 4. 64x64 greyscale (mode L): strong upscaling.
    r = rng(14)
    a = add_shapes(r, smooth_field(r, 64, 64, 1), n=3)[..., 0]
    Image.fromarray(to_u8(a), "L").save(os.path.join(img_dir, "gray_64x64.png"))
    out.append(("gray_64x64.png", "64x64 8-bit greyscale PNG (mode L): strong upscaling"))

    # 5. 16-bit greyscale (Pillow mode I;16). Values mostly 0..400: Pillow 13 converts I;16 -> RGB by clamping
    #    to 255 (not by taking the high byte), so the content stays visible and the clamp matters.
    r = rng(15)
    a = smooth_field(r, 120, 180, 1, lo=0, hi=400)[..., 0]
    a[10:30, 10:60] = 60000      # far above 255
    a[50:70, 100:170] = 256 * 3 + 7
    a = np.clip(np.rint(a + r.integers(0, 4, size=a.shape)), 0, 65535).astype(np.uint16)
    Image.fromarray(a).save(os.path.join(img_dir, "gray16_180x120.png"))
    out.append(("gray16_180x120.png", "180x120 16-bit greyscale PNG (mode I;16); convert('RGB') clamps to 255"))

    # 6. 224x224 palette PNG (mode P) with a tRNS chunk: exactly the model size (no resize, no crop);
    #    convert("RGB") takes the palette colours and ignores the transparency.
    r = rng(16)
    rgb = add_shapes(r, smooth_field(r, 224, 224, 3), n=6)
    p = Image.fromarray(to_u8(rgb), "RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    trns = bytes([0, 96, 200] + [255] * 61)
    p.save(os.path.join(img_dir, "palette_224x224.png"), transparency=trns)
    out.append(("palette_224x224.png", "224x224 palette PNG (mode P, 64 colours) with tRNS transparency: exactly "
                                       "224 (no resize, no crop); palette colours used, alpha ignored"))

    # 7. 900x120: very elongated -> width int(224*900/120)=1680, centre crop.
    r = rng(17)
    a = add_shapes(r, smooth_field(r, 120, 900, 3, waves=8), n=8)
    Image.fromarray(to_u8(a), "RGB").save(os.path.join(img_dir, "wide_900x120.png"))
    out.append(("wide_900x120.png", "900x120 RGB PNG: very elongated, resized to 1680x224 then centre-cropped"))

    # 8. JPEG, quality 90 (4:2:0), 320x240.
    r = rng(18)
    a = add_shapes(r, smooth_field(r, 240, 320, 3), n=4)
    Image.fromarray(to_u8(a), "RGB").save(os.path.join(img_dir, "photo_320x240.jpg"), quality=90)
    out.append(("photo_320x240.jpg", "320x240 baseline JPEG, quality 90, 4:2:0"))

    # 9. CMYK JPEG (Pillow writes an Adobe APP14 marker; Pillow converts CMYK -> RGB without an ICC profile).
    r = rng(19)
    a = smooth_field(r, 160, 200, 4, lo=0, hi=200)
    Image.fromarray(to_u8(a), "CMYK").save(os.path.join(img_dir, "cmyk_200x160.jpg"), quality=90)
    out.append(("cmyk_200x160.jpg", "200x160 CMYK JPEG (Adobe marker), quality 90"))

    # 10. GIF, two frames: the first frame is the image (Pillow opens frame 0, mode P). No transparency.
    r = rng(20)
    f0 = Image.fromarray(to_u8(add_shapes(r, smooth_field(r, 200, 160, 3))), "RGB")
    f1 = Image.fromarray(to_u8(smooth_field(r, 200, 160, 3)), "RGB")
    f0 = f0.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    f1 = f1.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    f0.save(os.path.join(img_dir, "anim_160x200.gif"), save_all=True, append_images=[f1], duration=100, loop=0)
    out.append(("anim_160x200.gif", "160x200 GIF, two frames, 128-colour palette: the first frame is used"))

    # 11. BMP, 24-bit, width 150 (rows padded to 4 bytes).
    r = rng(21)
    a = add_shapes(r, smooth_field(r, 100, 150, 3))
    Image.fromarray(to_u8(a), "RGB").save(os.path.join(img_dir, "image_150x100.bmp"))
    out.append(("image_150x100.bmp", "150x100 24-bit BMP (bottom-up rows, padded)"))

    # 12. TIFF, RGB, LZW.
    r = rng(22)
    a = add_shapes(r, smooth_field(r, 170, 130, 3))
    Image.fromarray(to_u8(a), "RGB").save(os.path.join(img_dir, "image_130x170.tiff"), compression="tiff_lzw")
    out.append(("image_130x170.tiff", "130x170 RGB TIFF, LZW compression"))

    # 13. WebP, lossless.
    r = rng(23)
    a = add_shapes(r, smooth_field(r, 180, 180, 3))
    Image.fromarray(to_u8(a), "RGB").save(os.path.join(img_dir, "image_180x180.webp"), lossless=True, quality=80,
                                          method=4, exact=True)
    out.append(("image_180x180.webp", "180x180 lossless WebP (VP8L)"))
    return out


def make_tensor_batch():
    """A [2,3,64,96] float32 batch as a diffusion pipeline holds it after VAE decoding (values in [-1,1] and a
    little beyond, to exercise the clamp), plus values on rounding edges of (x*0.5+0.5)*255."""
    r = np.random.default_rng(31)
    b = np.zeros((2, 3, 64, 96), dtype=np.float64)
    for i in range(2):
        f = smooth_field(r, 64, 96, 3)
        if i == 1:
            f = add_shapes(r, f, n=3)
        f = f / 255.0 * 2.3 - 1.15  # [-1.15, 1.15]: beyond +-1 at the extremes
        b[i] = f.transpose(2, 0, 1) + r.normal(0, 0.02, size=(3, 64, 96))
    b = b.astype(np.float32)
    # exact values: 0 -> 127.5 (numpy rounds half to even: 128), +-1, beyond +-1, -0.0
    b[0, :, 0, :8] = np.array([0.0, -0.0, 1.0, -1.0, 1.5, -1.5, 3.0, -3.0], dtype=np.float32)
    # values whose (x*0.5+0.5)*255 lands exactly on k+0.5 in float32 (ties) where representable
    ks = np.arange(8, dtype=np.float64)
    b[1, :, 0, :8] = ((ks * 30 + 0.5) / 255.0 * 2.0 - 1.0).astype(np.float32)
    return b


# ----------------------------------------------------------------------------------------------------------------
# model construction and weights

def build_config(cfg):
    if cfg["minimal_config"] is not None:
        mc = dict(cfg["minimal_config"])
        return CLIPConfig(vision_config=mc["vision_config"], projection_dim=mc["projection_dim"])
    return CLIPConfig(vision_config=dict(cfg["vision"]), projection_dim=cfg["projection_dim"],
                      # a tiny text config keeps config.json free of a big unused text tower description
                      text_config=dict(hidden_size=16, intermediate_size=32, num_attention_heads=2,
                                       num_hidden_layers=1))


def init_weights(model, seed):
    """Random weights from a fixed seed, scaled so that activations stay O(1) and every weight matters
    (layer norms get weights around 1 and biases around 0, not exactly 1 and 0)."""
    g = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in sorted(params):
            p = params[name]
            if name in ("concept_embeds", "special_care_embeds", "concept_embeds_weights",
                        "special_care_embeds_weights"):
                continue  # set by choose_thresholds
            if "norm" in name:  # pre_layrnorm, layer_norm1/2, post_layernorm
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.25 * torch.randn(p.shape, generator=g))
            elif name.endswith("class_embedding"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif name.endswith("position_embedding.weight"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            elif name.endswith("patch_embedding.weight"):
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
            elif name.endswith(".weight"):  # q/k/v/out_proj, fc1, fc2, visual_projection
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)
            elif name.endswith(".bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            else:
                raise RuntimeError(f"no init rule for {name}")


def embed(model, clip_input):
    """pooled_output and image_embeds exactly as forward computes them."""
    with torch.no_grad():
        pooled = model.vision_model(clip_input)[1]
        embeds = model.visual_projection(pooled)
        cos = sc_mod.cosine_distance(embeds, model.concept_embeds).cpu().float().numpy()
        scos = sc_mod.cosine_distance(embeds, model.special_care_embeds).cpu().float().numpy()
    return pooled.float().numpy(), embeds.float().numpy(), cos, scos


def cosines(embeds, concept, special):
    e = torch.from_numpy(embeds)
    with torch.no_grad():
        cos = sc_mod.cosine_distance(e, torch.from_numpy(concept)).float().numpy()
        scos = sc_mod.cosine_distance(e, torch.from_numpy(special)).float().numpy()
    return cos, scos


# ----------------------------------------------------------------------------------------------------------------
# the scoring rule, re-computed the way StableDiffusionSafetyChecker.forward computes it

def score_forward(cos_row, scos_row, cw, sw):
    """One image. cos_row/scos_row/cw/sw: float32 arrays. forward computes `concept_cos - concept_threshold +
    adjustment` with a numpy float32 and two Python floats, which under NumPy 2 (NEP 50) stays float32, then
    round(x, 3) (numpy's: float32 x*1000, half to even, /1000). The adjustment becomes 0.01 as soon as a special
    score is > 0, and applies from then on, also to the remaining special concepts."""
    adjustment = 0.0
    special_scores, special_care, concept_scores, bad = [], [], [], []
    for k in range(len(scos_row)):
        s = np.round(scos_row[k] - float(sw[k]) + adjustment, 3)
        special_scores.append(s)
        if s > 0:
            special_care.append(k)
            adjustment = ADJUSTMENT
    for k in range(len(cos_row)):
        s = np.round(cos_row[k] - float(cw[k]) + adjustment, 3)
        concept_scores.append(s)
        if s > 0:
            bad.append(k)
    assert all(isinstance(s, np.float32) for s in special_scores + concept_scores)
    return dict(special_scores=np.array(special_scores, np.float32), special_care=special_care,
                concept_scores=np.array(concept_scores, np.float32), bad_concepts=bad, nsfw=bool(bad),
                adjustment=adjustment)


def unrounded(cos_row, scos_row, cw, sw, with_special_adjustments=False):
    """The float32 values that forward rounds (same order as score_forward), and the adjustment for the concepts
    (optionally also the adjustment in effect for each special concept)."""
    adjustment = 0.0
    sp, co, sp_adj = [], [], []
    for k in range(len(scos_row)):
        v = scos_row[k] - float(sw[k]) + adjustment
        sp.append(v)
        sp_adj.append(adjustment)
        if np.round(v, 3) > 0:
            adjustment = ADJUSTMENT
    for k in range(len(cos_row)):
        co.append(cos_row[k] - float(cw[k]) + adjustment)
    if with_special_adjustments:
        return np.array(sp, np.float32), np.array(co, np.float32), adjustment, sp_adj
    return np.array(sp, np.float32), np.array(co, np.float32), adjustment


class RoundRecorder:
    """Replaces the builtin round() inside diffusers' safety_checker module while forward runs, to capture
    every score exactly as forward computes it."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, ndigits=None):
        y = round(x, ndigits)
        self.calls.append((x, y))
        return y

    def __enter__(self):
        sc_mod.round = self
        return self

    def __exit__(self, *exc):
        del sc_mod.round


# ----------------------------------------------------------------------------------------------------------------
# threshold choice

def edge_threshold(c, target):
    """A float32 threshold w with float32(c - w) close to `target` (0.0004 or 0.0007)."""
    w = np.float32(float(c) - target)
    return w


def choose_thresholds(cos, scos, names, golden_idx, tensor_idx, rng):
    """Pick special_care_embeds_weights and concept_embeds_weights so that the designed cases happen.

    cos [N,17], scos [N,3] (float32) over all images (golden images first, then tensor-path images).
    Returns (cw, sw, cases) or None when this draw of concept embeddings does not allow all required cases.
    """
    n = cos.shape[0]
    cos64, scos64 = cos.astype(np.float64), scos.astype(np.float64)
    need = np.array([LOSSY_CLEAR if names[j].lower().endswith(LOSSY_EXT) else CLEAR for j in range(n)])
    golden = [i for i in golden_idx if need[i] == CLEAR]  # designed cases only on bit-exact images
    best = None
    # --- special concepts: s0 = the clear special-care hit on image A; s1 (> s0) = a special hit on A that exists
    # only because forward's adjustment already applies to later special concepts (cascade); s2 = a special score
    # on image B of +0.0004 that rounds to 0.000 (no special care, so no adjustment for B).
    for s0, s1, s2 in itertools.permutations(range(N_SPECIAL)):
        for A in golden:
            others = [j for j in range(n) if j != A]
            gap = scos64[A, s0] - (scos64[others, s0] + need[others] - CLEAR).max()
            if gap < 2 * CLEAR + 0.001:
                continue
            w0 = scos64[A, s0] - min(gap / 2, 0.03)
            # cascade on s1: needs s1 after s0
            w1, slack1 = None, -1
            if s1 > s0:
                w1c = scos64[A, s1] + 0.005  # raw -0.005 without, +0.005 with the adjustment
                slack1 = w1c - (scos64[others, s1] + need[others]).max()
                if slack1 >= 0:
                    w1 = w1c
            # rounding edge on s2 for an image B != A
            w2, B, slack2 = None, None, -1
            for cand in golden:
                if cand == A:
                    continue
                w2c = float(edge_threshold(scos[cand, s2], 0.0004))
                oth = [j for j in range(n) if j != cand]
                adj = np.array([ADJUSTMENT if (j == A and s2 > s0) else 0.0 for j in oth])
                sl = w2c - (scos64[oth, s2] + adj + need[oth]).max()
                if sl >= 0 and sl > slack2:
                    w2, B, slack2 = w2c, cand, sl
            score = (w1 is not None) + (w2 is not None) + min(gap, 0.05)
            if best is None or score > best[0]:
                best = (score, s0, s1, s2, A, w0, w1, B, w2)
    if best is None:
        return None
    _, s0, s1, s2, A, w0, w1, B, w2 = best
    if w1 is None or w2 is None:
        return None  # ask for another draw: we want every special branch
    sw = np.zeros(N_SPECIAL, np.float64)
    sw[s0], sw[s1], sw[s2] = w0, w1, w2
    adj_of = np.array([ADJUSTMENT if j == A else 0.0 for j in range(n)])

    # --- concepts
    cw = np.full(N_CONCEPTS, np.nan)
    used_concepts, used_images = set(), {A, B}
    cases = {}

    def feasible(c, t, raw_target):
        """Threshold for concept c such that image t's unrounded score is raw_target; slack of the others."""
        w = cos64[t, c] + adj_of[t] - raw_target
        oth = [j for j in range(n) if j != t]
        slack = w - (cos64[oth, c] + adj_of[oth] + need[oth]).max()
        return w, slack

    def assign(role, targets, raw_target, kind):
        bestc = None
        for c in range(N_CONCEPTS):
            if c in used_concepts:
                continue
            for t in targets:
                if raw_target == "clear":
                    oth = [j for j in range(n) if j != t]
                    gap = cos64[t, c] + adj_of[t] - (cos64[oth, c] + adj_of[oth] + need[oth] - CLEAR).max()
                    r = min(gap / 2, 0.03)
                    if r < CLEAR:
                        continue
                    w, slack = feasible(c, t, r)
                else:
                    w, slack = feasible(c, t, raw_target)
                if slack >= 0 and (bestc is None or slack > bestc[0]):
                    bestc = (slack, c, t, w)
        if bestc is None:
            return False
        _, c, t, w = bestc
        if kind == "edge":
            w = float(edge_threshold(cos[t, c], raw_target))
        cw[c] = w
        used_concepts.add(c)
        used_images.add(t)
        cases[role] = (t, c)
        return True

    free_golden = lambda: [i for i in golden if i not in used_images]  # noqa: E731
    ok = assign("flagged_only_through_special_care", [A], -0.005 + ADJUSTMENT, "adj")
    ok = ok and assign("not_flagged_special_rounded_to_zero", [B], -0.005, "adj")
    if tensor_idx:
        ok = ok and assign("tensor_path_flagged", [tensor_idx[0]], "clear", "clear")
    ok = ok and assign("rounds_to_zero_not_flagged", free_golden(), 0.0004, "edge")
    ok = ok and assign("rounds_up_flagged", free_golden(), 0.0007, "edge")
    ok = ok and assign("clearly_flagged", free_golden(), "clear", "clear")
    ok = ok and assign("clearly_flagged_2", free_golden(), "clear", "clear")
    if not ok:
        return None
    # the rest: clear misses, some close (-0.003 .. -0.01), most far
    for c in range(N_CONCEPTS):
        if c in used_concepts:
            continue
        top = (cos64[:, c] + adj_of + need - CLEAR).max()
        margin = rng.uniform(CLEAR + 0.001, 0.01) if c % 3 == 0 else rng.uniform(0.02, 0.12)
        cw[c] = top + margin
    cw32, sw32 = cw.astype(np.float32), sw.astype(np.float32)
    meta = dict(A=A, B=B, special=dict(hit=s0, cascade=s1, edge=s2), concept_cases=cases)
    return cw32, sw32, meta


def check_margins(cos, scos, cw, sw, designed, names):
    """Every unrounded score not designed to sit on the rounding edge must be clear of it."""
    for i in range(cos.shape[0]):
        need = LOSSY_CLEAR if names[i].lower().endswith(LOSSY_EXT) else CLEAR
        sp, co, _ = unrounded(cos[i], scos[i], cw, sw)
        for kind, vals in (("special", sp), ("concept", co)):
            for k, v in enumerate(vals):
                if (i, kind, k) in designed:
                    continue
                assert abs(float(v)) >= need - 1e-6, (names[i], kind, k, float(v))


# ----------------------------------------------------------------------------------------------------------------
# saving and loading

def hub_key(k):
    return "vision_model." + k if k.startswith("vision_model.") else k


def checkpoint_state_dict(model, layout, dtype=None):
    sd = {}
    for k, v in model.state_dict().items():
        if k.endswith("position_ids"):
            continue
        v = v.detach().clone().contiguous()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        sd[hub_key(k) if layout.startswith("hub") else k] = v
    if layout == "hub+position_ids":
        pid = model.vision_model.embeddings.position_ids.detach().clone().contiguous()
        sd["vision_model.vision_model.embeddings.position_ids"] = pid
    return sd


def save_model(model, cfg, mdir):
    os.makedirs(mdir, exist_ok=True)
    layout = cfg["layout"]
    model.save_pretrained(mdir, state_dict=checkpoint_state_dict(model, layout))
    if cfg["minimal_config"] is not None:
        write_json(os.path.join(mdir, "config.json"), cfg["minimal_config"])
    if cfg["preprocessor"] == "hub":
        write_json(os.path.join(mdir, "preprocessor_config.json"), HUB_PREPROCESSOR)
    else:  # the form transformers 5 writes
        CLIPImageProcessorPil(**HUB_PREPROCESSOR_KWARGS).save_pretrained(mdir)
    if cfg["extra_formats"]:
        # pytorch_model.bin: the same tensors as model.safetensors in torch's zip format, as transformers wrote it
        # with safe_serialization=False (transformers 5 has no pickle writer any more).
        sd = {}
        with safe_open(os.path.join(mdir, "model.safetensors"), "pt") as f:
            for k in sorted(f.keys()):
                sd[k] = f.get_tensor(k)
        torch.save(sd, os.path.join(mdir, "pytorch_model.bin"))
        # model.fp16.safetensors: save_pretrained(variant="fp16") of the half-precision weights.
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp, state_dict=checkpoint_state_dict(model, layout, torch.float16),
                                  variant="fp16")
            shutil.copyfile(os.path.join(tmp, "model.fp16.safetensors"),
                            os.path.join(mdir, "model.fp16.safetensors"))
    for f in os.listdir(mdir):  # save_pretrained leaves model.safetensors 0600
        os.chmod(os.path.join(mdir, f), 0o644)


HUB_PREPROCESSOR_KWARGS = dict(
    do_resize=True, size={"shortest_edge": 224}, resample=3, do_center_crop=True,
    crop_size={"height": 224, "width": 224}, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
    image_mean=HUB_PREPROCESSOR["image_mean"], image_std=HUB_PREPROCESSOR["image_std"], do_convert_rgb=True)


def assert_same_params(a, b, what):
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb), what
    for k in sa:
        assert torch.equal(sa[k].float(), sb[k].float()), (what, k)


def load_checks(model, cfg, mdir):
    """Load what was written the way diffusers users do, and check it is the same model."""
    m = StableDiffusionSafetyChecker.from_pretrained(mdir).eval()
    assert_same_params(model, m, "model.safetensors")
    assert m.config.vision_config.hidden_act == model.config.vision_config.hidden_act
    assert m.config.vision_config.layer_norm_eps == model.config.vision_config.layer_norm_eps
    if cfg["extra_formats"]:
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copyfile(os.path.join(mdir, "config.json"), os.path.join(tmp, "config.json"))
            shutil.copyfile(os.path.join(mdir, "pytorch_model.bin"), os.path.join(tmp, "pytorch_model.bin"))
            mb = StableDiffusionSafetyChecker.from_pretrained(tmp).eval()
            assert_same_params(model, mb, "pytorch_model.bin")
        m16 = StableDiffusionSafetyChecker.from_pretrained(mdir, variant="fp16", dtype=torch.float16)
        h = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
        for k, v in m16.state_dict().items():
            assert torch.equal(v, h[k]), ("fp16", k)
    return m


# ----------------------------------------------------------------------------------------------------------------
# results

def image_result(fname, px, pooled, embeds, cos, scos, cw, sw, onnx_flag):
    s = score_forward(cos, scos, cw, sw)
    return {
        "file": fname,
        "pixel_values_shape": list(px.shape),
        "pixel_values_sha256": sha256_bytes(f32_le_bytes(px)),
        "pooled_output": floats(pooled),
        "image_embeds": floats(embeds),
        "cos_dist": floats(cos),
        "special_cos_dist": floats(scos),
        "special_scores": floats(s["special_scores"]),
        "special_care": s["special_care"],
        "concept_scores": floats(s["concept_scores"]),
        "bad_concepts": s["bad_concepts"],
        "nsfw": s["nsfw"],
        "nsfw_forward_onnx": bool(onnx_flag),
    }


def run_forward(model, clip_input, cw, sw, cos, scos):
    """Run the real forward (and forward_onnx); check the recomputed scores against what forward computed."""
    n = clip_input.shape[0]
    dummy = np.ones((n, 2, 2, 3), dtype=np.float32)
    with RoundRecorder() as rec:
        _, has_nsfw = model(clip_input=clip_input, images=dummy)
    _, onnx = model.forward_onnx(clip_input, torch.ones(n, 1))
    per = N_SPECIAL + N_CONCEPTS
    assert len(rec.calls) == n * per
    for i in range(n):
        mine = score_forward(cos[i], scos[i], cw, sw)
        sp, co, _ = unrounded(cos[i], scos[i], cw, sw)
        got_raw = np.array([float(c[0]) for c in rec.calls[i * per:(i + 1) * per]], np.float32)
        got = np.array([float(c[1]) for c in rec.calls[i * per:(i + 1) * per]], np.float32)
        assert np.array_equal(got_raw, np.concatenate([sp, co])), ("unrounded scores differ from forward", i)
        assert np.array_equal(got, np.concatenate([mine["special_scores"], mine["concept_scores"]])), i
        assert mine["nsfw"] == bool(has_nsfw[i]), i
        assert bool(dummy[i].any()) == (not mine["nsfw"]), "forward blacks out exactly the flagged images"
    return [bool(x) for x in has_nsfw], [bool(x) for x in onnx.tolist()]


def describe_cases(meta, names, cos, scos, cw, sw):
    A, B = meta["A"], meta["B"]
    out = {}

    def entry(i, kind, k):
        sp, co, adj, sp_adj = unrounded(cos[i], scos[i], cw, sw, with_special_adjustments=True)
        s = score_forward(cos[i], scos[i], cw, sw)
        if kind == "special":
            raw, score, c, w = sp[k], s["special_scores"][k], scos[i][k], sw[k]
            adj = sp_adj[k]
            flagged = k in s["special_care"]
        else:
            raw, score, c, w = co[k], s["concept_scores"][k], cos[i][k], cw[k]
            flagged = k in s["bad_concepts"]
        return {"image": names[i], "kind": kind, "concept": int(k), "cos": float(c), "threshold": float(w),
                "adjustment": float(adj), "unrounded": float(raw),
                "score": float(score), "hit": bool(flagged)}

    sp_roles = meta["special"]
    out["special_care_hit"] = entry(A, "special", sp_roles["hit"])
    out["special_care_only_through_earlier_special_adjustment"] = entry(A, "special", sp_roles["cascade"])
    out["special_rounds_to_zero_no_special_care"] = entry(B, "special", sp_roles["edge"])
    for role, (t, c) in meta["concept_cases"].items():
        out[role] = entry(t, "concept", c)
    return out


def verify_cases(cases, tensor_names):
    """The designed outcomes, checked on the final float32 scores."""
    c = cases
    assert c["special_care_hit"]["hit"] and c["special_care_hit"]["score"] >= CLEAR - 1e-6
    assert c["special_care_hit"]["adjustment"] == 0.0
    e = c["special_care_only_through_earlier_special_adjustment"]
    assert e["hit"] and e["unrounded"] > 0 and e["cos"] - e["threshold"] < -CLEAR and e["adjustment"] == ADJUSTMENT
    e = c["special_rounds_to_zero_no_special_care"]
    assert (not e["hit"]) and e["score"] == 0.0 and 0.0003 < e["unrounded"] < 0.0005 and e["adjustment"] == 0.0
    e = c["flagged_only_through_special_care"]
    assert e["hit"] and e["adjustment"] == ADJUSTMENT and e["cos"] - e["threshold"] < -CLEAR
    e = c["not_flagged_special_rounded_to_zero"]
    assert (not e["hit"]) and e["adjustment"] == 0.0 and -0.01 < e["unrounded"] < -CLEAR
    e = c["rounds_to_zero_not_flagged"]
    assert (not e["hit"]) and e["score"] == 0.0 and 0.0003 < e["unrounded"] < 0.0005 and e["adjustment"] == 0.0
    e = c["rounds_up_flagged"]
    assert e["hit"] and abs(e["score"] - 0.001) < 1e-9 and 0.0006 < e["unrounded"] < 0.0008
    assert e["adjustment"] == 0.0
    for k in ("clearly_flagged", "clearly_flagged_2"):
        assert c[k]["hit"] and c[k]["score"] >= CLEAR - 1e-6 and c[k]["adjustment"] == 0.0
    if "tensor_path_flagged" in c:
        assert c["tensor_path_flagged"]["hit"] and c["tensor_path_flagged"]["image"] == tensor_names[0]


# The float32 x with float32(x*1000) == 0.5 exactly: numpy's round(x, 3) gives 0.0 (half to even), a rounding half
# away from zero would give 0.001 (a hit). Only x = float32(0.0005) does it (its neighbours give 0.5 -/+ one ulp), so
# cos - w must be that value exactly in float32, which needs cos and w below 2**-10 (coarser float32 grids miss it).
TIE_X = np.float32(0.0005)
TIE_COS = np.float32(0.000731)  # a cosine in the binade below 2**-10, so that cos - w can be TIE_X exactly


def rounding_tie_case():
    """The designed tie `rounds_half_to_even_tie`: a concept score whose unrounded float32 value x has
    float32(x*1000) == 0.5 exactly. It is a scoring case, not one of the model's thresholds: a threshold this close to
    0 would flag every other image, and a tie sits ON the rounding edge, so any difference in the computed cosine
    (1e-7 between implementations) would move it. Tests apply the scoring rule to `cos` and `threshold` as given."""
    w = np.float32(TIE_COS - TIE_X)  # exact: both lie on the 2**-34 grid and so does their difference
    cos_row, scos_row = np.array([TIE_COS], np.float32), np.zeros(N_SPECIAL, np.float32)
    cw, sw = np.array([w], np.float32), np.ones(N_SPECIAL, np.float32)  # no special care: adjustment 0
    sp, co, adj = unrounded(cos_row, scos_row, cw, sw)
    s = score_forward(cos_row, scos_row, cw, sw)
    x = co[0]
    assert x == TIE_X and np.float32(x * np.float32(1000)) == np.float32(0.5), float(x)
    assert round(x, 3) == 0.0 and np.round(x, 3) == 0.0, "numpy rounds the tie half to even"
    assert float(np.sign(x) * np.floor(abs(float(x * np.float32(1000))) + 0.5) / 1000) == 0.001, (
        "half away from zero would make it a hit")
    assert s["concept_scores"][0] == 0.0 and s["bad_concepts"] == [] and adj == 0.0
    return {"image": None, "kind": "concept", "concept": None, "cos": float(TIE_COS), "threshold": float(w),
            "adjustment": 0.0, "unrounded": float(x), "score": float(s["concept_scores"][0]), "hit": False}


# ----------------------------------------------------------------------------------------------------------------

def generator_string():
    return (f"transformers {transformers.__version__}, diffusers {diffusers.__version__}, torch {torch.__version__}, "
            f"Pillow {PIL.__version__}, numpy {np.__version__}, safetensors {safetensors.__version__}")


SEMANTICS = ("diffusers StableDiffusionSafetyChecker.forward (rounded scores, special-care adjustment 0.01 that "
             "applies from the first special hit on, also to the later special concepts); scores recomputed in "
             "float32 numpy with np.round(x, 3) and checked against forward's own values")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "testdata", "golden"))
    args = ap.parse_args()
    out = args.out
    os.makedirs(out, exist_ok=True)
    for sub in ("images", "models", "pixels", "tensor_path"):
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    for f in ("tensor_path.json",):
        if os.path.exists(os.path.join(out, f)):
            os.remove(os.path.join(out, f))

    print(f"make_golden: {generator_string()}")
    img_dir = os.path.join(out, "images")
    images = make_images(img_dir)
    names = [n for n, _ in images]

    # preprocessing (shared by every model: all use the SD v1 feature-extractor values)
    with tempfile.TemporaryDirectory() as tmp:  # loaded the way a checkpoint's feature extractor is loaded
        write_json(os.path.join(tmp, "preprocessor_config.json"), HUB_PREPROCESSOR)
        proc = CLIPImageProcessorPil.from_pretrained(tmp)
    assert proc.backend == "pil"
    assert proc.size == {"shortest_edge": 224} and proc.crop_size == {"height": 224, "width": 224}, (
        proc.size, proc.crop_size)
    pil_info, pixels = {}, []
    for n in names:
        im = Image.open(os.path.join(img_dir, n))
        pil_info[n] = dict(mode=im.mode, size=list(im.size))
        rgb = np.asarray(im.convert("RGB"))
        pil_info[n]["rgb_sha256"] = sha256_bytes(rgb.tobytes())
        px = proc(images=Image.open(os.path.join(img_dir, n)), return_tensors="pt").pixel_values[0]
        assert px.dtype == torch.float32 and tuple(px.shape) == (3, 224, 224)
        pixels.append(px)
    clip_golden = torch.stack(pixels)
    pix_dir = os.path.join(out, "pixels")
    os.makedirs(pix_dir)
    total = clip_golden.numel() * 4
    if total < 8_000_000:
        for n, px in zip(names, pixels):
            with open(os.path.join(pix_dir, n + ".pixel_values.f32"), "wb") as f:
                f.write(f32_le_bytes(px.numpy()))
    print(f"make_golden: {len(names)} images, pixel dumps {total} bytes")

    # tensor path input: the pipeline's own conversion (run_safety_checker -> VaeImageProcessor.postprocess)
    tbatch = make_tensor_batch()
    vae_proc = VaeImageProcessor(vae_scale_factor=8)
    t_pils = vae_proc.postprocess(torch.from_numpy(tbatch.copy()), output_type="pil")
    # the same by hand, as the brief of the Go port states it
    manual = (np.clip(tbatch / 2 + 0.5, 0, 1).transpose(0, 2, 3, 1) * 255).round().astype("uint8")
    assert all(np.array_equal(np.asarray(p), m) for p, m in zip(t_pils, manual))
    t_clip = proc(images=t_pils, return_tensors="pt").pixel_values
    t_names = [f"tensor_path[{i}]" for i in range(tbatch.shape[0])]

    models_dir = os.path.join(out, "models")
    summary = {}
    for cfg in CONFIGS:
        name = cfg["name"]
        with_tensor = name == TENSOR_PATH_CONFIG
        ccfg = build_config(cfg)
        model = StableDiffusionSafetyChecker(ccfg).eval()
        init_weights(model, cfg["seed"])
        clip_all = torch.cat([clip_golden, t_clip]) if with_tensor else clip_golden
        all_names = names + (t_names if with_tensor else [])
        pooled, embeds, _, _ = embed(model, clip_all)
        golden_idx = list(range(len(names)))
        tensor_idx = list(range(len(names), len(all_names))) if with_tensor else []
        # concept/special embeddings: draw, and keep the first draw whose cosines allow every designed case
        for draw in range(500):
            g = torch.Generator().manual_seed(cfg["seed"] * 1000 + draw)
            concept = torch.randn(N_CONCEPTS, ccfg.projection_dim, generator=g).numpy()
            special = torch.randn(N_SPECIAL, ccfg.projection_dim, generator=g).numpy()
            cos, scos = cosines(embeds, concept, special)
            picked = choose_thresholds(cos, scos, all_names, golden_idx, tensor_idx,
                                       np.random.default_rng(cfg["seed"] * 1000 + draw))
            if picked is not None:
                break
        else:
            sys.exit(f"make_golden: {name}: no draw of concept embeddings allows every case")
        cw, sw, meta = picked
        with torch.no_grad():
            model.concept_embeds.copy_(torch.from_numpy(concept))
            model.special_care_embeds.copy_(torch.from_numpy(special))
            model.concept_embeds_weights.copy_(torch.from_numpy(cw))
            model.special_care_embeds_weights.copy_(torch.from_numpy(sw))

        mdir = os.path.join(models_dir, name)
        save_model(model, cfg, mdir)
        loaded = load_checks(model, cfg, mdir)
        lproc = CLIPImageProcessorPil.from_pretrained(mdir)
        for n, px in zip(names[:3], pixels[:3]):  # the saved preprocessor config processes the same way
            q = lproc(images=Image.open(os.path.join(img_dir, n)), return_tensors="pt").pixel_values[0]
            assert torch.equal(q, px), (name, n)

        # expected values from the model as loaded from disk
        pooled, embeds, cos, scos = embed(loaded, clip_all)
        cw_l = loaded.concept_embeds_weights.detach().numpy()
        sw_l = loaded.special_care_embeds_weights.detach().numpy()
        assert np.array_equal(cw_l, cw) and np.array_equal(sw_l, sw)
        has_nsfw, onnx = run_forward(loaded, clip_all, cw, sw, cos, scos)
        # one image at a time gives the same verdicts (batching changes the float sums only slightly)
        for i in range(len(all_names)):
            _, e1, c1, s1 = embed(loaded, clip_all[i:i + 1])
            assert np.abs(c1[0] - cos[i]).max() < 2e-5 and np.abs(s1[0] - scos[i]).max() < 2e-5
            assert score_forward(c1[0], s1[0], cw, sw)["bad_concepts"] == score_forward(
                cos[i], scos[i], cw, sw)["bad_concepts"]

        cases = describe_cases(meta, all_names, cos, scos, cw, sw)
        verify_cases(cases, t_names)
        cases["rounds_half_to_even_tie"] = rounding_tie_case()
        designed = set()
        A, B = meta["A"], meta["B"]
        designed.add((B, "special", meta["special"]["edge"]))
        for role in ("rounds_to_zero_not_flagged", "rounds_up_flagged"):
            t, c = meta["concept_cases"][role]
            designed.add((t, "concept", c))
        check_margins(cos, scos, cw, sw, designed, all_names)
        results = [image_result(all_names[i], clip_all[i].numpy(), pooled[i], embeds[i], cos[i], scos[i], cw, sw,
                                onnx[i]) for i in range(len(all_names))]
        for i, r in enumerate(results):
            assert r["nsfw"] == has_nsfw[i]
        in_cases = {v["image"] for v in cases.values()}
        clean = [r["file"] for r in results[:len(names)] if not r["nsfw"] and not r["special_care"]]
        clean.sort(key=lambda f: f in in_cases)  # prefer an image that no other case uses
        assert clean, "want at least one image without special care and without a hit"
        cases["clean_image"] = {"image": clean[0], "kind": "image", "concept": None, "hit": False}
        for r in results[:len(names)]:
            r.update({"source_mode": pil_info[r["file"]]["mode"], "source_size": pil_info[r["file"]]["size"],
                      "rgb_sha256": pil_info[r["file"]]["rgb_sha256"]})

        vc = loaded.config.vision_config
        expected = {
            "cases": cases,
            "special_care_image": all_names[A],
            "generator": generator_string(),
            "semantics": SEMANTICS,
            "model": {
                "name": name,
                "weights_layout": cfg["layout"],
                "vision_config": {k: getattr(vc, k) for k in (
                    "hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "patch_size",
                    "image_size", "num_channels", "hidden_act", "layer_norm_eps")},
                "projection_dim": loaded.config.projection_dim,
                "attn_implementation": vc._attn_implementation,
                "concept_embeds_weights": floats(cw),
                "special_care_embeds_weights": floats(sw),
                "files": {f: sha256_file(os.path.join(mdir, f)) for f in sorted(os.listdir(mdir))
                          if f != "expected.json"},
            },
            "processor": f"{type(proc).__name__} (Pillow backend) with the SD v1 feature-extractor values",
            "images": results[:len(names)],
        }
        write_json(os.path.join(mdir, "expected.json"), expected)
        summary[name] = {k: (v["image"], v["concept"]) for k, v in cases.items()}

        if with_tensor:
            write_tensor_path(out, tbatch, t_pils, t_clip, loaded, proc, vae_proc, results[len(names):],
                              cases, name)

    for name, cs in summary.items():
        print(f"make_golden: {name}:")
        for k, v in cs.items():
            print(f"    {k:55s} image {v[0]!s:22s} concept {v[1]}")
    print(f"make_golden: wrote {out}")


def write_tensor_path(out, tbatch, t_pils, t_clip, model, proc, vae_proc, results, cases, name):
    tdir = os.path.join(out, "tensor_path")
    os.makedirs(tdir)
    with open(os.path.join(tdir, "input.f32"), "wb") as f:
        f.write(f32_le_bytes(tbatch))
    # run the pipeline's real code: StableDiffusionPipeline.run_safety_checker on a stand-in pipeline object
    image = torch.from_numpy(tbatch.copy())
    fake = SimpleNamespace(safety_checker=model, feature_extractor=proc, image_processor=vae_proc)
    out_image, has_nsfw = StableDiffusionPipeline.run_safety_checker(fake, image, "cpu", torch.float32)
    blacked = [i for i, x in enumerate(has_nsfw) if x]
    assert blacked == [i for i, r in enumerate(results) if r["nsfw"]]
    for i in range(tbatch.shape[0]):
        if i in blacked:
            assert not out_image[i].any()
        else:
            assert torch.equal(out_image[i], torch.from_numpy(tbatch[i]))
    # what the pipeline finally returns (output_type="pil"): flagged images are not denormalised -> black
    final = vae_proc.postprocess(out_image, output_type="pil", do_denormalize=[not x for x in has_nsfw])
    with open(os.path.join(tdir, "output.f32"), "wb") as f:
        f.write(f32_le_bytes(out_image.numpy()))
    entries = []
    for i, r in enumerate(results):
        u8 = np.asarray(t_pils[i])
        e = dict(r)
        e.update({
            "uint8_shape": list(u8.shape),
            "uint8_sha256": sha256_bytes(u8.tobytes()),
            "blacked_out": i in blacked,
            "output_uint8_sha256": sha256_bytes(np.asarray(final[i]).tobytes()),
        })
        entries.append(e)
    doc = {
        "model": f"models/{name}",
        "input": {"file": "tensor_path/input.f32", "shape": list(tbatch.shape), "dtype": "float32 little-endian",
                  "sha256": sha256_bytes(f32_le_bytes(tbatch)), "min": float(tbatch.min()),
                  "max": float(tbatch.max())},
        "conversion": ("diffusers StableDiffusionPipeline.run_safety_checker: VaeImageProcessor.postprocess("
                       "output_type='pil') = (x*0.5+0.5).clamp(0,1) -> .cpu().permute(0,2,3,1).float().numpy() -> "
                       "numpy_to_pil: (images*255).round().astype('uint8') (float32, round half to even); then "
                       "CLIPImageProcessorPil; then StableDiffusionSafetyChecker.forward(images=tensor)"),
        "blacked_out": blacked,
        "output": {"file": "tensor_path/output.f32", "shape": list(out_image.shape),
                   "sha256": sha256_bytes(f32_le_bytes(out_image.numpy())),
                   "note": "the tensor forward returns: flagged images replaced by zeros, the others unchanged"},
        "final_images_note": ("output_uint8_sha256: the pipeline's returned PIL images (postprocess with "
                              "do_denormalize=False for flagged images, so they are black), as HxWx3 uint8 bytes"),
        "cases": {k: v for k, v in cases.items() if str(v.get("image", "")).startswith("tensor_path")},
        "generator": generator_string(),
        "images": entries,
    }
    write_json(os.path.join(out, "tensor_path.json"), doc)


if __name__ == "__main__":
    main()
