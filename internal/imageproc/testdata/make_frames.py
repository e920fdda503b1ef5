#!/usr/bin/env python3
"""Regenerates testdata/frames: small animated GIFs that exercise each disposal method, transparency,
frame offsets, local colour tables and interlacing, and for each NAME.gif the file
NAME.gif.frames.png: every frame i as Pillow 13 shows it (im.seek(i); im.convert("RGB")), stacked
top to bottom. TestGoldenFrames checks that DecodeFrames returns exactly those pixels. Also writes
apng.png (an animated PNG, for the ErrAnimatedPNG test). Needs Pillow and numpy.

The GIFs are written byte by byte (not by Pillow's encoder, which rewrites frames) so that each one
says exactly what its name promises.

usage: make_frames.py OUTDIR
"""
import os
import struct
import sys

import numpy as np
from PIL import Image

out = sys.argv[1]


def lzw(indices, min_size):
    """GIF LZW data that never grows the code table: a clear code before every run of literals."""
    clear, end = 1 << min_size, (1 << min_size) + 1
    size = min_size + 1
    run = (1 << min_size) - 2  # literals after a clear before the table would need a wider code
    codes = []
    for i in range(0, len(indices), run):
        codes.append(clear)
        codes.extend(indices[i:i + run])
    codes.append(end)
    bits, nbits, data = 0, 0, bytearray()
    for c in codes:
        bits |= c << nbits
        nbits += size
        while nbits >= 8:
            data.append(bits & 0xFF)
            bits >>= 8
            nbits -= 8
    if nbits:
        data.append(bits & 0xFF)
    blocks = bytearray([min_size])
    for i in range(0, len(data), 255):
        chunk = data[i:i + 255]
        blocks += bytes([len(chunk)]) + chunk
    return bytes(blocks + b"\x00")


def table(colours, bits):
    t = bytearray()
    for c in colours:
        t += bytes(c)
    return bytes(t + b"\x00" * (3 * (1 << bits) - len(t)))


def gif(w, h, global_colours, background, frames, bits=3):
    """frames: dicts with x, y, w, h, pix (row-major indices), and optionally disposal, trans,
    gce (False: no graphic control extension), local (colour list), interlace."""
    d = bytearray(b"GIF89a")
    flags = 0
    if global_colours is not None:
        flags = 0x80 | (bits - 1) | ((bits - 1) << 4)
    d += struct.pack("<HHBBB", w, h, flags, background, 0)
    if global_colours is not None:
        d += table(global_colours, bits)
    d += b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    for f in frames:
        if f.get("gce", True):
            trans = f.get("trans")
            packed = (f.get("disposal", 0) << 2) | (1 if trans is not None else 0)
            d += b"!\xf9\x04" + struct.pack("<BHB", packed, 10, trans or 0) + b"\x00"
        fl = 0
        if f.get("local") is not None:
            fl |= 0x80 | (bits - 1)
        pix = list(f["pix"])
        if f.get("interlace"):
            fl |= 0x40
            rows = [pix[r * f["w"]:(r + 1) * f["w"]] for r in range(f["h"])]
            order = list(range(0, f["h"], 8)) + list(range(4, f["h"], 8)) + list(range(2, f["h"], 4)) + list(range(1, f["h"], 2))
            pix = [v for r in order for v in rows[r]]
        d += b"," + struct.pack("<HHHHB", f["x"], f["y"], f["w"], f["h"], fl)
        if f.get("local") is not None:
            d += table(f["local"], bits)
        d += lzw(pix, max(2, bits))
    d += b";"
    return bytes(d)


rng = np.random.default_rng(13)
PAL = [(0, 0, 0), (250, 20, 30), (20, 200, 40), (30, 40, 220), (240, 240, 10), (200, 30, 200), (10, 220, 230), (255, 255, 255)]
LOCAL = [(90, 60, 30), (60, 90, 30), (30, 60, 90), (130, 10, 10), (10, 130, 10), (10, 10, 130), (70, 70, 70), (160, 150, 140)]


def rand(w, h, k=8):
    return rng.integers(0, k, w * h).tolist()


def fr(x, y, w, h, **kw):
    return dict(x=x, y=y, w=w, h=h, pix=kw.pop("pix", rand(w, h)), **kw)


W, H = 23, 17
gifs = {
    # disposal 1 (none) with offsets and transparency on the later frames
    "disposal_none.gif": gif(W, H, PAL, 2, [
        fr(0, 0, W, H, disposal=1),
        fr(3, 2, 9, 7, disposal=1, trans=5),
        fr(10, 6, 13, 11, disposal=1, trans=0),
    ]),
    # disposal 2 (background): with a transparent index, without one (background index 4), a local table
    "disposal_background.gif": gif(W, H, PAL, 4, [
        fr(2, 1, 15, 12, disposal=2),
        fr(5, 5, 10, 9, disposal=2, trans=3),
        fr(0, 8, 20, 9, disposal=2, local=LOCAL),
        fr(1, 1, 8, 8, disposal=1, trans=6, local=LOCAL),
        fr(0, 0, W, H, disposal=1, trans=1),
    ]),
    # disposal 3 (previous), also on frame 0 (which has a transparent index)
    "disposal_previous.gif": gif(W, H, PAL, 0, [
        fr(4, 3, 12, 10, disposal=3, trans=2),
        fr(0, 0, 8, H, disposal=1),
        fr(6, 4, 9, 9, disposal=3, trans=7),
        fr(2, 2, 5, 5, disposal=3),
        fr(12, 10, 11, 7, disposal=1, trans=4),
    ]),
    # disposal 3 on a frame 0 without transparency, then frames without a GCE (the method sticks)
    "disposal_sticky.gif": gif(W, H, PAL, 6, [
        fr(0, 0, 11, 9, disposal=3),
        fr(5, 5, 10, 10, disposal=2),
        fr(8, 2, 6, 6, gce=False),
        fr(1, 9, 9, 8, disposal=0, trans=1),
        fr(0, 0, W, H, disposal=1, trans=3),
    ]),
    # frame 0 transparent and not covering the screen, interlaced frames, no global table
    "interlace_local.gif": gif(W, H, None, 0, [
        fr(3, 1, 17, 14, trans=4, local=PAL, interlace=True),
        fr(0, 0, W, H, trans=0, local=LOCAL, interlace=True),
        fr(7, 3, 9, 13, disposal=2, local=PAL),
        fr(4, 4, 4, 4, local=LOCAL),
    ]),
    # a 2-colour global table and a background index past it, disposal 2 on frames 0 and 1
    "background_past_table.gif": gif(W, H, PAL[3:5], 5, [
        fr(2, 2, 12, 9, disposal=2, pix=rand(12, 9, 2)),
        fr(8, 5, 10, 10, disposal=2, pix=rand(10, 10, 2)),
        fr(0, 0, 6, 6, disposal=1, pix=rand(6, 6, 2)),
    ], bits=1),
}

os.makedirs(out, exist_ok=True)
for name, data in gifs.items():
    path = os.path.join(out, name)
    with open(path, "wb") as f:
        f.write(data)
    im = Image.open(path)
    frames = []
    for i in range(im.n_frames):
        im.seek(i)
        frames.append(np.asarray(im.convert("RGB")))
    Image.fromarray(np.concatenate(frames, 0), "RGB").save(path + ".frames.png")
    print(name, len(data), "bytes,", len(frames), "frames")

# Animations as Pillow's own encoder writes them (it crops each frame to what changed: offsets, and
# a transparent index for unchanged pixels when optimising).
y, x = np.mgrid[0:31, 0:45]
base = np.stack([x * 5, y * 8, (x + y) * 3], -1).astype(np.uint8)
moving = []
for k in range(6):
    a = base.copy()
    a[5 + k * 3:14 + k * 3, 4 + k * 5:16 + k * 5] = [250, 250, 250 - 40 * k]
    moving.append(Image.fromarray(a, "RGB").quantize(32, dither=Image.Dither.NONE))
for name, params in {
    "pillow_disposal2.gif": dict(disposal=2, optimize=False),
    "pillow_optimized.gif": dict(disposal=1, optimize=True, transparency=0),
}.items():
    path = os.path.join(out, name)
    moving[0].save(path, save_all=True, append_images=moving[1:], duration=50, loop=0, **params)
    im = Image.open(path)
    frames = []
    for i in range(im.n_frames):
        im.seek(i)
        frames.append(np.asarray(im.convert("RGB")))
    Image.fromarray(np.concatenate(frames, 0), "RGB").save(path + ".frames.png")
    print(name, os.path.getsize(path), "bytes,", len(frames), "frames")

# An animated PNG: two frames, the default image is the first.
a = Image.new("RGB", (8, 6), (200, 10, 10))
b = Image.new("RGB", (8, 6), (10, 10, 200))
a.save(os.path.join(out, "apng.png"), save_all=True, append_images=[b], duration=100, loop=0)
assert Image.open(os.path.join(out, "apng.png")).n_frames == 2
print("apng.png")
