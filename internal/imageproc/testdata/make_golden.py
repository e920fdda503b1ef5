#!/usr/bin/env python3
"""Regenerates testdata/golden: small JPEG/WebP/GIF files encoded by Pillow and, for each,
NAME.pillow.png = Image.open(NAME).convert("RGB") as Pillow 13 decodes it (libjpeg-turbo, libwebp).
TestGoldenDecode checks that Decode returns exactly those pixels. Needs Pillow and numpy.

usage: make_golden.py OUTDIR
"""
import os
import sys

import numpy as np
from PIL import Image

out = sys.argv[1]
rng = np.random.default_rng(7)
w, h = 49, 37
y, x = np.mgrid[0:h, 0:w]
rgb = np.stack([255 * x / (w - 1), 255 * y / (h - 1), 128 + 100 * np.sin(x / 3.0 + y / 5.0)], -1)
rgb[((x // 7 + y // 5) % 4) == 0] = [250, 10, 40]  # hard edges for chroma
rgb += rng.integers(-20, 21, rgb.shape)
rgb = np.clip(rgb, 0, 255).astype(np.uint8)
alpha = np.where((x > w // 2) & (y > h // 2), rng.integers(0, 256, (h, w)), 255).astype(np.uint8)
src = Image.fromarray(rgb, "RGB")
srca = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")

variants = {
    "baseline_420.jpg": (src, "JPEG", dict(quality=75)),
    "baseline_422.jpg": (src, "JPEG", dict(quality=80, subsampling=1)),
    "baseline_444.jpg": (src, "JPEG", dict(quality=95, subsampling=0)),
    "progressive_420.jpg": (src, "JPEG", dict(quality=85, progressive=True)),
    "progressive_restart.jpg": (src, "JPEG", dict(quality=70, progressive=True, restart_marker_blocks=2)),
    "gray.jpg": (src.convert("L"), "JPEG", dict(quality=90)),
    "cmyk.jpg": (src.convert("CMYK"), "JPEG", dict(quality=90)),
    "lossy.webp": (src, "WEBP", dict(quality=80)),
    "lossy_alpha.webp": (srca, "WEBP", dict(quality=80)),
    "lossless_alpha.webp": (srca, "WEBP", dict(lossless=True)),
    "palette_transparency.gif": (src.quantize(16), "GIF", dict(transparency=3)),
}
for name, (im, fmt, params) in variants.items():
    path = os.path.join(out, name)
    im.save(path, fmt, **params)
    Image.open(path).convert("RGB").save(path + ".pillow.png")
    print(name, os.path.getsize(path))
