#!/usr/bin/env python3
"""Reference side of TestPillowCrossCheck (imageproc): runs Pillow (and optionally transformers) on the
tasks the Go test wrote, so that the Go port can be compared with the real thing.

usage: pillow_crosscheck.py WORKDIR
WORKDIR/manifest.json is a list of tasks, executed in order; every path is relative to WORKDIR:
  {"kind": "encode", "in": "a.png", "out": "a.jpg", "format": "JPEG", "params": {...}}
      Image.open(in).save(out, format, **params); params may hold "convert": MODE (applied first)
      and "orientation": N (an EXIF block with that Orientation).
  {"kind": "resize", "in": "r.rgb", "w": W, "h": H, "ow": OW, "oh": OH, "filter": F, "out": "r.out"}
      raw packed RGB in, Image.resize((OW, OH), F), raw packed RGB out.
  {"kind": "decode", "in": "a.jpg", "out": "a.out"}
      Image.open(in).convert("RGB") (after ImageOps.exif_transpose when "transpose" is true):
      out = "W H\\n" + raw RGB, or "ERR message".
  {"kind": "pipeline", "in": "a.png", "model": "dir", "out": "a.f32"}
      CLIPImageProcessorPil.from_pretrained(model)(images=Image.open(in)): float32 little-endian.
Needs Pillow (and transformers for "pipeline"); it is a development aid, never a test dependency.
"""
import json
import os
import sys

from PIL import Image, ImageOps


def main():
    work = sys.argv[1]
    tasks = json.load(open(os.path.join(work, "manifest.json")))
    procs = {}
    for t in tasks:
        p = lambda k: os.path.join(work, t[k])
        kind = t["kind"]
        if kind == "encode":
            im = Image.open(p("in"))
            params = dict(t.get("params") or {})
            mode = params.pop("convert", None)
            if mode:
                im = im.convert(mode)
            orientation = params.pop("orientation", None)
            if orientation:
                exif = Image.Exif()
                exif[0x0112] = orientation
                params["exif"] = exif.tobytes()
            im.save(p("out"), t["format"], **params)
        elif kind == "resize":
            data = open(p("in"), "rb").read()
            im = Image.frombytes("RGB", (t["w"], t["h"]), data)
            out = im.resize((t["ow"], t["oh"]), t["filter"])
            open(p("out"), "wb").write(out.tobytes())
        elif kind == "decode":
            try:
                im = Image.open(p("in"))
                if t.get("transpose"):
                    im = ImageOps.exif_transpose(im)
                im = im.convert("RGB")
                blob = f"{im.size[0]} {im.size[1]}\n".encode() + im.tobytes()
            except Exception as e:  # noqa: BLE001 - report any failure to the Go side
                blob = f"ERR {type(e).__name__}: {e}".encode()
            open(p("out"), "wb").write(blob)
        elif kind == "pipeline":
            from transformers import CLIPImageProcessorPil

            model = p("model")
            if model not in procs:
                procs[model] = CLIPImageProcessorPil.from_pretrained(model)
            pv = procs[model](images=Image.open(p("in")), return_tensors="np")["pixel_values"][0]
            open(p("out"), "wb").write(pv.astype("<f4").tobytes())
        else:
            raise SystemExit(f"unknown task kind {kind}")


if __name__ == "__main__":
    main()
