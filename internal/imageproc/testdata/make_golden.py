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


# Scans whose entropy-coded data ends early (at a marker, not at the end of the file): libjpeg-turbo
# warns (JWRN_HIT_MARKER), decodes the MCU that ran out with zero bits and leaves the rest of the
# restart interval's blocks as they are (zero in a first scan); the next scan or restart interval
# decodes normally.
def scans(data):
    """(start, end) of the entropy-coded data of every scan: end is the offset of the marker ending it."""
    out, pos = [], 2
    while pos < len(data):
        assert data[pos] == 0xFF
        m = data[pos + 1]
        if m == 0xD9:
            break
        n = int.from_bytes(data[pos + 2:pos + 4], "big")
        pos += 2 + n
        if m != 0xDA:
            continue
        start = pos
        while not (data[pos] == 0xFF and data[pos + 1] not in (0x00,) and not 0xD0 <= data[pos + 1] <= 0xD7):
            pos += 1
        out.append((start, pos))
    return out


def cut(data, start, end, frac):
    """data with the bytes [start + frac·(end − start), end) removed (not splitting an 0xFF 0x00 pair)."""
    c = start + int(frac * (end - start))
    while data[c - 1] == 0xFF:
        c -= 1
    return data[:c] + data[end:]


def restart_interval(data, start, end, k):
    """(start, end) of the k-th restart interval's data within a scan."""
    marks = [i for i in range(start, end - 1) if data[i] == 0xFF and 0xD0 <= data[i + 1] <= 0xD7]
    bounds = [start] + [m + 2 for m in marks]
    ends = marks + [end]
    return bounds[k], ends[k]


def read(name):
    with open(os.path.join(out, name), "rb") as f:
        return f.read()


src.save(os.path.join(out, "baseline_restart.tmp"), "JPEG", quality=75, restart_marker_blocks=3)
early = {}
b = read("baseline_420.jpg")
s0, e0 = scans(b)[0]
early["early_end_baseline.jpg"] = cut(b, s0, e0, 0.4)  # the scan stops at EOI at 40%
r = read("baseline_restart.tmp")
s0, e0 = scans(r)[0]
rs, re = restart_interval(r, s0, e0, 2)
early["early_end_restart.jpg"] = cut(r, rs, re, 0.3)  # interval 2 stops at the next RST
p = read("progressive_420.jpg")
s2, e2 = scans(p)[2]
early["early_end_progressive.jpg"] = cut(p, s2, e2, 0.5)  # scan 2 stops early; the later scans follow
os.remove(os.path.join(out, "baseline_restart.tmp"))
for name, data in early.items():
    path = os.path.join(out, name)
    with open(path, "wb") as f:
        f.write(data)
    Image.open(path).convert("RGB").save(path + ".pillow.png")
    print(name, len(data))
