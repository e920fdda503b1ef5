#!/usr/bin/env python3
"""Cross-check this reference environment against the independent parity fixture (shared/parity).

usage: .venv/bin/python reference/check_parity_fixture.py [FIXTURE_DIR]   (default: ../shared/parity, /work/shared/parity)

Loads the fixture's checkpoint with StableDiffusionSafetyChecker.from_pretrained and its preprocessor with
CLIPImageProcessorPil, scores the fixture's images the way make_golden.py does (checked against forward's own
values), writes JSON Lines + pixel dumps to a temporary folder, and runs the fixture's compare.py on them.
Exit status: compare.py's.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_golden as mg  # noqa: E402  (sets one torch thread, quiet logging)


def find_fixture():
    if len(sys.argv) > 1:
        return sys.argv[1]
    for c in (os.path.join(mg.ROOT, "shared", "parity"), os.path.join(os.path.dirname(mg.ROOT), "shared", "parity"),
              "/work/shared/parity"):
        if os.path.isfile(os.path.join(c, "compare.py")):
            return c
    sys.exit("check_parity_fixture: no parity fixture found; pass its folder")


def main():
    fx = find_fixture()
    model = mg.StableDiffusionSafetyChecker.from_pretrained(os.path.join(fx, "model")).eval()
    proc = mg.CLIPImageProcessorPil.from_pretrained(os.path.join(fx, "model"))
    exp = json.load(open(os.path.join(fx, "expected", "expected.json")))
    names = [e["file"] for e in exp["images"]]
    px = torch.stack([proc(images=Image.open(os.path.join(fx, "images", n)), return_tensors="pt").pixel_values[0]
                      for n in names])
    _, embeds, cos, scos = mg.embed(model, px)
    cw = model.concept_embeds_weights.detach().numpy()
    sw = model.special_care_embeds_weights.detach().numpy()
    mg.run_forward(model, px, cw, sw, cos, scos)  # asserts our scores are forward's
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "results.jsonl"), "w") as f:
            for i, n in enumerate(names):
                s = mg.score_forward(cos[i], scos[i], cw, sw)
                f.write(json.dumps({"file": n, "nsfw": s["nsfw"], "special_care": s["special_care"],
                                    "bad_concepts": s["bad_concepts"],
                                    "concept_scores": mg.floats(s["concept_scores"]),
                                    "special_scores": mg.floats(s["special_scores"]),
                                    "image_embeds": mg.floats(embeds[i]), "cos_dist": mg.floats(cos[i])}) + "\n")
                with open(os.path.join(tmp, n + ".pixel_values.f32"), "wb") as g:
                    g.write(mg.f32_le_bytes(px[i].numpy()))
                want = exp["images"][i]["pixel_values_sha256"]
                got = mg.sha256_bytes(mg.f32_le_bytes(px[i].numpy()))
                print(f"{n}: pixel_values sha256 {'same' if got == want else 'DIFFERENT'}")
        r = subprocess.run([sys.executable, os.path.join(fx, "compare.py"), fx, os.path.join(tmp, "results.jsonl"),
                            tmp])
    sys.exit(r.returncode)


if __name__ == "__main__":
    main()
