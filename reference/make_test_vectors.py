#!/usr/bin/env python3
"""Write the small reference vectors that unit tests compare against, which make_golden.py does not cover:

  internal/imageproc/testdata/pillow_resize_vectors.json
      Pillow's Image.resize of small synthetic RGB images ((i*97 + 13) mod 256 for byte i, HxWx3) for every
      filter, upscaling, downscaling, single-pass and vertical-first cases: TestResizeMatchesPillow.
  testdata/golden/tensor_path_half.json
      the sha256s of the 8-bit images diffusers' VaeImageProcessor.postprocess(output_type="pil") makes of the
      golden tensor-path input (testdata/golden/tensor_path/input.f32) cast to float16 and bfloat16 (postprocess
      computes (x*0.5 + 0.5).clamp(0, 1) in the tensor's dtype, so they differ from the float32 ones):
      TestCheckTensorDTypes.

Run with the reference environment:  .venv/bin/python reference/make_test_vectors.py
Deterministic (no randomness, one torch thread): two runs give byte-identical files.
"""
import hashlib
import json
import os

import numpy as np
import PIL
from PIL import Image

import torch

torch.set_num_threads(1)

import diffusers  # noqa: E402
from diffusers.image_processor import VaeImageProcessor  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (width, height, out width, out height, Pillow filter): 0 NEAREST is not among them (the module refuses it);
# 1 LANCZOS, 2 BILINEAR, 3 BICUBIC, 4 BOX, 5 HAMMING, 6 MKS2013, 7 MKS2021.
RESIZE_CASES = [
    (7, 5, 3, 4, 3),
    (5, 9, 12, 7, 3),
    (9, 20, 8, 6, 3),
    (6, 4, 6, 9, 2),
    (10, 3, 4, 3, 1),
    (8, 8, 5, 5, 4),
    (8, 8, 3, 3, 5),
    (4, 6, 11, 13, 6),
    (13, 7, 5, 9, 7),
]


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def resize_vectors():
    out = []
    for w, h, ow, oh, f in RESIZE_CASES:
        src = np.array([(i * 97 + 13) % 256 for i in range(w * h * 3)], np.uint8).reshape(h, w, 3)
        got = np.asarray(Image.fromarray(src, "RGB").resize((ow, oh), resample=f))
        assert got.shape == (oh, ow, 3)
        out.append({"w": w, "h": h, "ow": ow, "oh": oh, "filter": f, "want_hex": got.tobytes().hex()})
    return {
        "generator": f"Pillow {PIL.__version__}, numpy {np.__version__}",
        "source": "byte i of the HxWx3 uint8 source image is (i*97 + 13) mod 256",
        "operation": "Image.fromarray(src, 'RGB').resize((ow, oh), resample=filter); want_hex = HxWx3 bytes",
        "vectors": out,
    }


def half_uint8_sha256():
    path = os.path.join(ROOT, "testdata", "golden", "tensor_path", "input.f32")
    meta = json.load(open(os.path.join(ROOT, "testdata", "golden", "tensor_path.json")))
    x = torch.from_numpy(np.fromfile(path, "<f4").reshape(meta["input"]["shape"]))
    proc = VaeImageProcessor()
    out = {}
    for name, dt in (("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        pils = proc.postprocess(x.to(dt), output_type="pil")
        out[name] = [hashlib.sha256(np.asarray(p).tobytes()).hexdigest() for p in pils]
    # float32 gives the images tensor_path.json records: the same code path as make_golden.py
    pils = proc.postprocess(x, output_type="pil")
    f32 = [hashlib.sha256(np.asarray(p).tobytes()).hexdigest() for p in pils]
    assert f32 == [im["uint8_sha256"] for im in meta["images"]], "float32 differs from tensor_path.json"
    return {
        "generator": f"diffusers {diffusers.__version__}, torch {torch.__version__}, numpy {np.__version__}",
        "input": "testdata/golden/tensor_path/input.f32 (sha256 " + meta["input"]["sha256"] + ")",
        "operation": ("VaeImageProcessor().postprocess(x.to(dtype), output_type='pil'); "
                      "sha256 of each image's HxWx3 uint8 bytes"),
        "uint8_sha256": out,
    }


def main():
    write_json(os.path.join(ROOT, "internal", "imageproc", "testdata", "pillow_resize_vectors.json"), resize_vectors())
    write_json(os.path.join(ROOT, "testdata", "golden", "tensor_path_half.json"), half_uint8_sha256())
    print("make_test_vectors: wrote internal/imageproc/testdata/pillow_resize_vectors.json, "
          "testdata/golden/tensor_path_half.json")


if __name__ == "__main__":
    main()
