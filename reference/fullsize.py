#!/usr/bin/env python3
"""Make a random-weight safety checker with the real ViT-L/14 shapes, and the reference's answers for it.

usage: .venv/bin/python reference/fullsize.py OUTDIR [--force]

For the Go test that is skipped under -short, and for benchmarks. Writes (once; a complete OUTDIR is left as it is
unless --force):
  OUTDIR/model/config.json, model.safetensors (~1.2 GB, float32, hub key layout vision_model.vision_model.*),
               preprocessor_config.json (the SD v1 feature extractor's, legacy form as on the hub)
  OUTDIR/inputs.f32     float32 little-endian [2,3,224,224]: pixel values drawn from normal(0,1), fixed seed
  OUTDIR/expected.json  per input: pooled_output, image_embeds, cos_dist, special_cos_dist, concept_scores,
                        special_scores, special_care, bad_concepts, nsfw, nsfw_forward_onnx (float32, CPU)
  OUTDIR/.complete      stamp, written last
Architecture: CLIPConfig vision_config hidden 1024, intermediate 4096, 16 heads, 24 layers, patch 14, image 224,
quick_gelu, layer_norm_eps 1e-5; projection_dim 768; 17 concepts + 3 special-care concepts. The thresholds are
chosen from the computed cosines so that at least one concept is hit (margins >= 0.005 from the rounding edge).
Prints how long each step took.
"""
import argparse
import json
import os
import shutil
import sys
import time

T0 = time.time()

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_golden as mg  # noqa: E402  (reference helpers: scoring, init, saving)

torch.set_num_threads(max(1, os.cpu_count() or 1))  # make_golden pins 1 thread for its tiny models

VERSION = "fullsize-v2"
SEED = 20240
MARGIN = 0.005
ADJ = mg.ADJUSTMENT
VISION = dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=24, patch_size=14,
              image_size=224, hidden_act="quick_gelu", layer_norm_eps=1e-5)
PROJECTION_DIM = 768


def stamp():
    return f"{VERSION}; {mg.generator_string()}\n"


def is_complete(out):
    p = os.path.join(out, ".complete")
    need = ["model/config.json", "model/model.safetensors", "model/preprocessor_config.json", "inputs.f32",
            "expected.json"]
    return (os.path.isfile(p) and open(p).read() == stamp()
            and all(os.path.isfile(os.path.join(out, f)) for f in need))


class Step:
    def __init__(self, what):
        self.what = what

    def __enter__(self):
        self.t = time.time()
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            print(f"fullsize: {self.what}: {time.time() - self.t:.1f} s", flush=True)


def choose(cos, scos):
    """Thresholds (margins >= MARGIN from the rounding edge everywhere): if the inputs' special cosines differ
    enough, input k gets special care (and, where possible, a concept hit that exists only through the +0.01
    adjustment); the other input gets a clear concept hit (if the inputs are too alike to separate, both hit).
    Everything else misses."""
    c64, s64 = cos.astype(np.float64), scos.astype(np.float64)
    n = c64.shape[0]
    far = 2 * MARGIN + ADJ
    sw = s64.max(0) + far
    cases = {}
    k = None
    s0, k0 = max(((s, i) for s in range(mg.N_SPECIAL) for i in range(n)),
                 key=lambda si: s64[si[1], si[0]] - np.delete(s64[:, si[0]], si[1]).max())
    lead = s64[k0, s0] - np.delete(s64[:, s0], k0).max()
    if lead >= 2 * MARGIN + 0.002:
        k = k0
        sw[s0] = s64[k, s0] - lead / 2
        cases["special_care"] = {"input": k, "concept": s0}
    adj = np.array([ADJ if i == k else 0.0 for i in range(n)])
    v = c64 + adj[:, None]
    cw = v.max(0) + far
    targets = [i for i in range(n) if i != k]
    c0, t0 = max(((c, i) for c in range(mg.N_CONCEPTS) for i in targets),
                 key=lambda ci: v[ci[1], ci[0]] - np.delete(v[:, ci[0]], ci[1]).max())
    lead = v[t0, c0] - np.delete(v[:, c0], t0).max()
    if lead >= 2 * MARGIN + 0.002:
        cw[c0] = v[t0, c0] - lead / 2
        cases["clearly_flagged"] = {"input": t0, "concept": c0}
    else:  # the inputs are too alike to separate: every input hits
        cw[c0] = v[:, c0].min() - 2 * MARGIN
        cases["clearly_flagged"] = {"input": "all", "concept": c0}
    if k is not None:
        rest = [c for c in range(mg.N_CONCEPTS) if c != c0]
        c1 = max(rest, key=lambda c: c64[k, c] - np.delete(v[:, c], k).max())
        w = c64[k, c1] + 0.005  # input k: cos - w = -0.005, a hit only with the adjustment
        if np.delete(v[:, c1], k).max() <= w - MARGIN:
            cw[c1] = w
            cases["flagged_only_through_special_care"] = {"input": k, "concept": c1}
    return cw.astype(np.float32), sw.astype(np.float32), cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("outdir")
    ap.add_argument("--force", action="store_true", help="rebuild even when OUTDIR is complete")
    args = ap.parse_args()
    out = os.path.abspath(args.outdir)
    print(f"fullsize: imports: {time.time() - T0:.1f} s", flush=True)
    if is_complete(out) and not args.force:
        print(f"fullsize: {out} is complete ({open(os.path.join(out, '.complete')).read().strip()}); nothing to do")
        return
    if os.path.exists(os.path.join(out, ".complete")):
        os.remove(os.path.join(out, ".complete"))
    mdir = os.path.join(out, "model")
    shutil.rmtree(mdir, ignore_errors=True)
    os.makedirs(mdir)
    t_all = time.time()

    with Step("construct StableDiffusionSafetyChecker (ViT-L/14)"):
        cfg = mg.CLIPConfig(vision_config=dict(VISION), projection_dim=PROJECTION_DIM,
                            text_config=dict(hidden_size=16, intermediate_size=32, num_attention_heads=2,
                                             num_hidden_layers=1))
        model = mg.StableDiffusionSafetyChecker(cfg).eval()
        nparam = sum(p.numel() for p in model.parameters())
    with Step(f"random init of {nparam / 1e6:.1f} M parameters"):
        mg.init_weights(model, SEED)
        g = torch.Generator().manual_seed(SEED + 1)
        with torch.no_grad():
            model.concept_embeds.copy_(torch.randn(mg.N_CONCEPTS, PROJECTION_DIM, generator=g))
            model.special_care_embeds.copy_(torch.randn(mg.N_SPECIAL, PROJECTION_DIM, generator=g))
        inputs = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(SEED + 2))
    with Step("reference forward (vision tower + projection + cosines) to choose thresholds"):
        _, _, cos, scos = mg.embed(model, inputs)
        cw, sw, cases = choose(cos, scos)
        with torch.no_grad():
            model.concept_embeds_weights.copy_(torch.from_numpy(cw))
            model.special_care_embeds_weights.copy_(torch.from_numpy(sw))
    with Step("save_pretrained (safetensors)"):
        model.save_pretrained(mdir, state_dict=mg.checkpoint_state_dict(model, "hub"))
        mg.write_json(os.path.join(mdir, "preprocessor_config.json"), mg.HUB_PREPROCESSOR)
        for f in os.listdir(mdir):
            os.chmod(os.path.join(mdir, f), 0o644)
        with open(os.path.join(out, "inputs.f32"), "wb") as f:
            f.write(mg.f32_le_bytes(inputs.numpy()))
    del model
    with Step("from_pretrained (load back)"):
        model = mg.StableDiffusionSafetyChecker.from_pretrained(mdir).eval()
    with Step("reference forward on the loaded model, 2 inputs, float32 CPU"):
        pooled, embeds, cos, scos = mg.embed(model, inputs)
        has_nsfw, onnx = mg.run_forward(model, inputs, cw, sw, cos, scos)
    res = []
    for i in range(inputs.shape[0]):
        s = mg.score_forward(cos[i], scos[i], cw, sw)
        assert s["nsfw"] == has_nsfw[i]
        res.append({
            "input": i,
            "pixel_values_sha256": mg.sha256_bytes(mg.f32_le_bytes(inputs[i].numpy())),
            "pooled_output": mg.floats(pooled[i]),
            "image_embeds": mg.floats(embeds[i]),
            "cos_dist": mg.floats(cos[i]),
            "special_cos_dist": mg.floats(scos[i]),
            "special_scores": mg.floats(s["special_scores"]),
            "special_care": s["special_care"],
            "concept_scores": mg.floats(s["concept_scores"]),
            "bad_concepts": s["bad_concepts"],
            "nsfw": s["nsfw"],
            "nsfw_forward_onnx": onnx[i],
        })
    assert any(r["bad_concepts"] for r in res)
    # every score is clear of the rounding edge
    for i in range(inputs.shape[0]):
        sp, co, _ = mg.unrounded(cos[i], scos[i], cw, sw)
        assert np.abs(np.concatenate([sp, co])).min() >= MARGIN - 1e-6, (i, sp, co)
    doc = {
        "generator": mg.generator_string(),
        "semantics": mg.SEMANTICS,
        "model": {"dir": "model", "vision_config": VISION, "projection_dim": PROJECTION_DIM,
                  "weights_layout": "hub", "init_seed": SEED,
                  "concept_embeds_weights": mg.floats(cw), "special_care_embeds_weights": mg.floats(sw)},
        "inputs": {"file": "inputs.f32", "shape": list(inputs.shape), "dtype": "float32 little-endian",
                   "distribution": "normal(0,1), torch.Generator seed %d" % (SEED + 2),
                   "note": "already pixel values (the processor's output): feed them to the model directly"},
        "cases": cases,
        "tolerance_note": "float32 CPU reference; every unrounded score is >= 0.005 away from 0",
        "results": res,
    }
    mg.write_json(os.path.join(out, "expected.json"), doc)
    with open(os.path.join(out, ".complete"), "w") as f:
        f.write(stamp())
    size = os.path.getsize(os.path.join(mdir, "model.safetensors"))
    print(f"fullsize: verdicts nsfw={[r['nsfw'] for r in res]} bad_concepts={[r['bad_concepts'] for r in res]} "
          f"special_care={[r['special_care'] for r in res]}")
    print(f"fullsize: model.safetensors {size / 1e6:.0f} MB; total {time.time() - t_all:.1f} s "
          f"(+{t_all - T0:.1f} s start-up); wrote {out}")


if __name__ == "__main__":
    main()
