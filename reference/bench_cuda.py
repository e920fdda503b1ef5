#!/usr/bin/env python3
"""The reference side of the CUDA check (scripts/device-check.sh): a full-size model, the reference's answers
on the GPU, its throughput, and the side-by-side report.

usage:
  bench_cuda.py make-model OUTDIR [--preset vitl14|tiny] [--device cuda] [--inputs N] [--seed S]
  bench_cuda.py bench --model DIR --inputs FILE [--dtypes float16,bfloat16] [--batches 1,8,32,128]
                      [--seconds T] [--device cuda] [--attn sdpa] [--head auto|diffusers|reimpl] [--out FILE]
  bench_cuda.py combine --go GO.jsonl --ref REF.jsonl [--gflops 162]

make-model: a random-weight safety checker with the real ViT-L/14 shapes (preset vitl14: hidden 1024,
  intermediate 4096, 16 heads, 24 layers, patch 14, image 224, quick_gelu; projection 768; 17 + 3 concepts), or a
  tiny one (preset tiny, for dry runs on a CPU). Writes OUTDIR/model/{config.json, model.safetensors (float32,
  the hub's key layout vision_model.vision_model.*), preprocessor_config.json}, OUTDIR/inputs.f32 (float32 LE
  [N,3,224,224], normal(0,1) from the seed: already pixel values), OUTDIR/expected.json (the reference's answers
  for every input in float32 (TF32 off) on --device: pooled_output, image_embeds, cos_dist, special_cos_dist, the rounded
  scores, bad_concepts, special_care, nsfw; the same layout as bench-cache/fullsize/expected.json, which
  TestCUDAFullSize reads) and OUTDIR/.complete. The thresholds are chosen from the computed cosines so that every
  unrounded score is at least a margin away from the rounding edge (recorded as min_margin) and, where the
  inputs differ enough, some inputs are flagged and others not. No download: transformers builds the model.
bench: transformers' CLIPVisionModel (attn_implementation --attn, default sdpa) + the projection + diffusers'
  StableDiffusionSafetyChecker.forward head (diffusers' own class when it is installed, else that forward
  reimplemented line by line: the cosines on the device, .cpu().float().numpy(), the per-image Python loop with
  the thresholds read by .item()), in each --dtype, at each batch size (the inputs tiled). One iteration = what
  the Go side's CheckPixels does: float32 pixel values on the host -> device and dtype -> forward -> verdicts on
  the host. Warm-up 3 iterations, then at least 3 and until --seconds have passed; the median iteration gives
  img_s. "tower" records time the tower + projection + cosines alone (no Python head), for context.
  JSON Lines: {"side": "ref", "what": "forward"|"tower", "dtype", "batch", "iters", "median_s", "mean_s",
  "img_s", "img_s_mean", "tflops", "gpu", "torch", "transformers", "attn", "head", "nsfw", "bad_concepts",
  "embeds" (first two images' image_embeds, float32), "gpu_mem_mib" (torch.cuda.max_memory_reserved)}.
combine: joins the Go side's lines (TestCUDABenchmark, "side": "go") with these by dtype and batch and prints
  one table line per pair, the agreement of verdicts and embeddings, and BENCH lines:
    BENCH device=cuda dtype=float16 batch=128 ratio=<go/ref> go_img_s=... ref_img_s=... tflops=<go's>
  the float16 batch-128 one last. TFLOP/s = img_s x --gflops (162 GFLOP per ViT-L/14 image) / 1000.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

N_CONCEPTS, N_SPECIAL = 17, 3
PRESETS = {
    "vitl14": dict(vision=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=24,
                               patch_size=14, image_size=224, hidden_act="quick_gelu", layer_norm_eps=1e-5),
                   projection_dim=768),
    "tiny": dict(vision=dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_hidden_layers=2,
                             patch_size=14, image_size=224, hidden_act="quick_gelu", layer_norm_eps=1e-5),
                 projection_dim=32),
}
# The SD v1 feature extractor's values (as on the hub), for completeness: the checks feed pixel values.
PREPROCESSOR = {"crop_size": 224, "do_center_crop": True, "do_convert_rgb": True, "do_normalize": True,
                "do_resize": True, "feature_extractor_type": "CLIPFeatureExtractor",
                "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
                "resample": 3, "size": 224}
MARGIN = 0.004       # every unrounded score at least this far from the rounding edge (0.0005)
SPLIT_GAP = 2 * MARGIN + 0.002
EDGE = 0.0005


def log(msg):
    print(f"bench_cuda: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# the model: transformers' vision tower + diffusers' head


def build_classes():
    import numpy as np
    import torch
    from torch import nn
    from transformers import CLIPVisionModel

    def cosine_distance(image_embeds, text_embeds):  # diffusers.pipelines.stable_diffusion.safety_checker
        normalized_image_embeds = nn.functional.normalize(image_embeds)
        normalized_text_embeds = nn.functional.normalize(text_embeds)
        return torch.mm(normalized_image_embeds, normalized_text_embeds.t())

    def vision_tower(vcfg, attn):
        try:
            return CLIPVisionModel._from_config(vcfg, attn_implementation=attn)
        except (TypeError, ValueError) as e:
            log(f"_from_config(attn_implementation={attn}) failed ({e}); setting config._attn_implementation")
            vcfg._attn_implementation = attn
            return CLIPVisionModel(vcfg)

    class RefSafetyChecker(nn.Module):
        """diffusers' StableDiffusionSafetyChecker: same modules, same state-dict keys, same forward."""

        def __init__(self, config, attn="sdpa"):
            super().__init__()
            self.vision_model = vision_tower(config.vision_config, attn)
            self.visual_projection = nn.Linear(config.vision_config.hidden_size, config.projection_dim, bias=False)
            self.concept_embeds = nn.Parameter(torch.ones(N_CONCEPTS, config.projection_dim), requires_grad=False)
            self.special_care_embeds = nn.Parameter(torch.ones(N_SPECIAL, config.projection_dim), requires_grad=False)
            self.concept_embeds_weights = nn.Parameter(torch.ones(N_CONCEPTS), requires_grad=False)
            self.special_care_embeds_weights = nn.Parameter(torch.ones(N_SPECIAL), requires_grad=False)

        @torch.no_grad()
        def forward(self, clip_input, images):  # diffusers 0.3x-0.4x StableDiffusionSafetyChecker.forward
            pooled_output = self.vision_model(clip_input)[1]  # pooled_output
            image_embeds = self.visual_projection(pooled_output)

            # we always cast to float32 as this does not cause significant overhead and is compatible with bfloat16
            special_cos_dist = cosine_distance(image_embeds, self.special_care_embeds).cpu().float().numpy()
            cos_dist = cosine_distance(image_embeds, self.concept_embeds).cpu().float().numpy()

            result = []
            batch_size = image_embeds.shape[0]
            for i in range(batch_size):
                result_img = {"special_scores": {}, "special_care": [], "concept_scores": {}, "bad_concepts": []}

                # increase this value to create a stronger `nfsw` filter
                # at the cost of increasing the possibility of filtering benign images
                adjustment = 0.0

                for concept_idx in range(len(special_cos_dist[0])):
                    concept_cos = special_cos_dist[i][concept_idx]
                    concept_threshold = self.special_care_embeds_weights[concept_idx].item()
                    result_img["special_scores"][concept_idx] = round(concept_cos - concept_threshold + adjustment, 3)
                    if result_img["special_scores"][concept_idx] > 0:
                        result_img["special_care"].append({concept_idx, result_img["special_scores"][concept_idx]})
                        adjustment = 0.01

                for concept_idx in range(len(cos_dist[0])):
                    concept_cos = cos_dist[i][concept_idx]
                    concept_threshold = self.concept_embeds_weights[concept_idx].item()
                    result_img["concept_scores"][concept_idx] = round(concept_cos - concept_threshold + adjustment, 3)
                    if result_img["concept_scores"][concept_idx] > 0:
                        result_img["bad_concepts"].append(concept_idx)

                result.append(result_img)

            has_nsfw_concepts = [len(res["bad_concepts"]) > 0 for res in result]

            for idx, has_nsfw_concept in enumerate(has_nsfw_concepts):
                if has_nsfw_concept:
                    if torch.is_tensor(images) or torch.is_tensor(images[0]):
                        images[idx] = torch.zeros_like(images[idx])  # black image
                    else:
                        images[idx] = np.zeros(images[idx].shape)  # black image
            self.last_result = result
            return images, has_nsfw_concepts

    return RefSafetyChecker, cosine_distance


def clip_config(preset):
    from transformers import CLIPConfig
    p = PRESETS[preset]
    return CLIPConfig(vision_config=dict(p["vision"]), projection_dim=p["projection_dim"],
                      text_config=dict(hidden_size=16, intermediate_size=32, num_attention_heads=2,
                                       num_hidden_layers=1))


def init_weights(model, seed):
    """Random weights from a fixed seed, scaled so that activations stay O(1) through 24 layers (float16 keeps
    them) and every weight matters (the rule of reference/make_golden.py)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name in ("concept_embeds", "special_care_embeds", "concept_embeds_weights",
                        "special_care_embeds_weights"):
                continue
            if "norm" in name:
                base = 1.0 if name.endswith("weight") else 0.0
                v = base + 0.25 * torch.randn(p.shape, generator=g)
            elif name.endswith("class_embedding"):
                v = 0.5 * torch.randn(p.shape, generator=g)
            elif name.endswith("position_embedding.weight"):
                v = 0.3 * torch.randn(p.shape, generator=g)
            elif name.endswith("patch_embedding.weight"):
                v = torch.randn(p.shape, generator=g) / (p.shape[1] * p.shape[2] * p.shape[3]) ** 0.5
            elif name.endswith(".weight"):
                v = torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5
            elif name.endswith(".bias"):
                v = 0.05 * torch.randn(p.shape, generator=g)
            else:
                raise RuntimeError(f"no init rule for {name}")
            p.copy_(v.to(p.device))


def set_attn(vision_model, attn):
    """Switch a loaded CLIPVisionModel's attention implementation (transformers 4.4x-5.x)."""
    if hasattr(vision_model, "set_attn_implementation"):
        try:
            vision_model.set_attn_implementation(attn)
            return
        except (TypeError, ValueError) as e:
            log(f"set_attn_implementation({attn}) failed ({e}); setting config._attn_implementation")
    vision_model.config._attn_implementation = attn


def load_ref(model_dir, device, dtype, attn, head):
    """The reference model from a model folder: diffusers' class when wanted and installed, else RefSafetyChecker."""
    import torch
    from safetensors.torch import load_file
    from transformers import CLIPConfig
    used = "reimpl"
    model = None
    if head in ("auto", "diffusers"):
        try:
            from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
            # The class itself declares no SDPA support (from_pretrained refuses attn_implementation="sdpa"),
            # but its CLIPVisionModel has it: switch the tower after loading.
            model = StableDiffusionSafetyChecker.from_pretrained(model_dir)
            set_attn(model.vision_model, attn)
            used = "diffusers"
        except ImportError:
            if head == "diffusers":
                raise
    if model is None:
        RefSafetyChecker, _ = build_classes()
        model = RefSafetyChecker(CLIPConfig.from_pretrained(model_dir), attn)
        sd = load_file(os.path.join(model_dir, "model.safetensors"))
        missing, unexpected = model.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        unexpected = [k for k in unexpected if not k.endswith("position_ids")]
        if missing or unexpected:
            raise RuntimeError(f"state dict mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model = model.to(device=device, dtype=dtype).eval()
    attn_used = getattr(model.vision_model.config, "_attn_implementation", None)
    return model, used, attn_used


def tower(model, x, cosine_distance):
    """pooled_output, image_embeds, cos, special cos (float32 host) as forward computes them."""
    import torch
    with torch.inference_mode():
        pooled = model.vision_model(x)[1]
        embeds = model.visual_projection(pooled)
        cos = cosine_distance(embeds, model.concept_embeds).cpu().float().numpy()
        scos = cosine_distance(embeds, model.special_care_embeds).cpu().float().numpy()
    return pooled.float().cpu().numpy(), embeds.float().cpu().numpy(), cos, scos


def versions():
    import torch
    import transformers
    out = {"torch": torch.__version__, "transformers": transformers.__version__, "cuda": torch.version.cuda,
           "python": sys.version.split()[0]}
    try:
        import diffusers
        out["diffusers"] = diffusers.__version__
    except ImportError:
        out["diffusers"] = None
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


# ---------------------------------------------------------------------------------------------------------------
# make-model


def choose_thresholds(cos, scos):
    """Thresholds with every unrounded score >= MARGIN from the rounding edge, and mixed verdicts where the
    inputs allow: special concept 0 flags the inputs above the widest gap in its cosines (they get special
    care: +0.01 on every concept score); up to two concepts each flag the one input whose cosine (plus that
    adjustment) stands SPLIT_GAP above all others; every other concept misses every input. If no concept can
    flag a single input, concept 0 splits at its widest gap, or failing that flags every input."""
    import numpy as np
    c64, s64 = cos.astype(np.float64), scos.astype(np.float64)
    n = c64.shape[0]

    def widest(v):  # the middle of the widest gap between sorted values, or None
        vs = np.sort(v)
        if n < 2:
            return None
        gaps = np.diff(vs)
        i = int(np.argmax(gaps))
        return (vs[i] + vs[i + 1]) / 2 if gaps[i] >= SPLIT_GAP else None

    sw = s64.max(0) + MARGIN + 0.01 + 0.02
    mid = widest(s64[:, 0])
    cases = {}
    if mid is not None:
        sw[0] = mid - EDGE
        cases["special_care_inputs"] = [int(i) for i in np.where(s64[:, 0] > mid)[0]]
    special = s64[:, 0] - sw[0] > EDGE
    adj = np.where(special, 0.01, 0.0)
    v = c64 + adj[:, None]
    cw = v.max(0) + MARGIN + 0.02
    top = []
    for k in range(N_CONCEPTS):
        vs = np.sort(v[:, k])
        if n >= 2 and vs[-1] - vs[-2] >= SPLIT_GAP:
            top.append((vs[-1] - vs[-2], k, int(np.argmax(v[:, k])), (vs[-1] + vs[-2]) / 2))
    split_concepts, flagged = [], set()
    for _, k, i, m in sorted(top, reverse=True):
        if len(split_concepts) < 2 and i not in flagged:
            cw[k] = m - EDGE
            split_concepts.append(k)
            flagged.add(i)
    if not split_concepts:
        m = widest(v[:, 0])
        if m is not None:
            cw[0] = m - EDGE
            split_concepts.append(0)
        else:
            cw[0] = v[:, 0].min() - MARGIN - 0.02
            cases["all_flagged_by"] = 0
    cases["split_concepts"] = split_concepts
    # the smallest distance of any unrounded score from the edge
    sp = s64 - sw[None, :]
    sp_adj = np.zeros_like(sp)
    for i in range(n):  # the special cascade: the adjustment applies after the first special hit
        a = 0.0
        for k in range(N_SPECIAL):
            sp_adj[i, k] = sp[i, k] + a
            if sp_adj[i, k] > EDGE:
                a = 0.01
    co = v - cw[None, :]
    margin = float(min(np.abs(sp_adj - EDGE).min(), np.abs(co - EDGE).min()))
    return cw.astype(np.float32), sw.astype(np.float32), cases, margin


def cmd_make_model(args):
    import numpy as np
    import torch
    from safetensors.torch import save_file
    t0 = time.time()
    out = os.path.abspath(args.outdir)
    mdir = os.path.join(out, "model")
    os.makedirs(mdir, exist_ok=True)
    if os.path.exists(os.path.join(out, ".complete")):
        os.remove(os.path.join(out, ".complete"))
    device = torch.device(args.device)
    # the reference's float32 answers in true float32: no TF32 in cuDNN's convolutions (PyTorch's default
    # allows it there) nor in matrix products
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    RefSafetyChecker, cosine_distance = build_classes()
    cfg = clip_config(args.preset)
    model = RefSafetyChecker(cfg, "sdpa")
    init_weights(model, args.seed)
    g = torch.Generator().manual_seed(args.seed + 1)
    with torch.no_grad():
        model.concept_embeds.copy_(torch.randn(N_CONCEPTS, cfg.projection_dim, generator=g))
        model.special_care_embeds.copy_(torch.randn(N_SPECIAL, cfg.projection_dim, generator=g))
    model = model.to(device).eval()
    size = cfg.vision_config.image_size
    inputs = torch.randn(args.inputs, 3, size, size, generator=torch.Generator().manual_seed(args.seed + 2))
    log(f"{args.preset}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters on {device}, "
        f"{time.time() - t0:.1f} s")
    pooled, embeds, cos, scos = tower(model, inputs.to(device), cosine_distance)
    cw, sw, cases, margin = choose_thresholds(cos, scos)
    with torch.no_grad():
        model.concept_embeds_weights.copy_(torch.from_numpy(cw))
        model.special_care_embeds_weights.copy_(torch.from_numpy(sw))
    # the reference's own verdicts, through forward
    _, has_nsfw = model(clip_input=inputs.to(device), images=np.zeros((args.inputs, 1, 1, 1), dtype=np.float32))
    results = []
    for i, r in enumerate(model.last_result):
        special_care = [k for k in range(N_SPECIAL) if r["special_scores"][k] > 0]
        results.append({
            "input": i,
            "pooled_output": [float(x) for x in pooled[i]],
            "image_embeds": [float(x) for x in embeds[i]],
            "cos_dist": [float(x) for x in cos[i]],
            "special_cos_dist": [float(x) for x in scos[i]],
            "concept_scores": [float(r["concept_scores"][k]) for k in range(N_CONCEPTS)],
            "special_scores": [float(r["special_scores"][k]) for k in range(N_SPECIAL)],
            "bad_concepts": r["bad_concepts"],
            "special_care": special_care,
            "nsfw": bool(has_nsfw[i]),
        })
    sd = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()
          if not k.endswith("position_ids")}
    save_file(sd, os.path.join(mdir, "model.safetensors"), metadata={"format": "pt"})
    os.chmod(os.path.join(mdir, "model.safetensors"), 0o644)
    conf = cfg.to_dict()
    conf["architectures"] = ["StableDiffusionSafetyChecker"]
    with open(os.path.join(mdir, "config.json"), "w") as f:
        json.dump(conf, f, indent=2, sort_keys=True)
    with open(os.path.join(mdir, "preprocessor_config.json"), "w") as f:
        json.dump(PREPROCESSOR, f, indent=2, sort_keys=True)
    with open(os.path.join(out, "inputs.f32"), "wb") as f:
        f.write(inputs.numpy().astype("<f4").tobytes())
    doc = {"generator": {"script": "reference/bench_cuda.py make-model", **versions()},
           "preset": args.preset, "seed": args.seed, "device": str(device), "dtype": "float32", "tf32": False,
           "attn": getattr(model.vision_model.config, "_attn_implementation", None),
           "model": {"dir": "model", "vision_config": PRESETS[args.preset]["vision"],
                     "projection_dim": cfg.projection_dim,
                     "concept_embeds_weights": [float(x) for x in cw],
                     "special_care_embeds_weights": [float(x) for x in sw]},
           "inputs": {"file": "inputs.f32", "shape": list(inputs.shape), "dtype": "float32 little-endian",
                      "distribution": f"normal(0,1), torch.Generator seed {args.seed + 2}"},
           "cases": cases, "min_margin": margin, "results": results}
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(doc, f)
    with open(os.path.join(out, ".complete"), "w") as f:
        f.write(f"{args.preset} {args.seed}\n")
    log(f"wrote {out}: nsfw={[r['nsfw'] for r in results]} cases={cases} min_margin={margin:.4f} "
        f"({time.time() - t0:.1f} s)")


# ---------------------------------------------------------------------------------------------------------------
# bench


def timed(fn, seconds, warmup=3, min_iters=3, max_iters=2000):
    for _ in range(warmup):
        fn()
    times = []
    total = 0.0
    while len(times) < min_iters or (total < seconds and len(times) < max_iters):
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        times.append(dt)
        total += dt
    return times


def cmd_bench(args):
    import numpy as np
    import torch
    device = torch.device(args.device)
    dtypes = [d for d in args.dtypes.split(",") if d]
    batches = [int(b) for b in args.batches.split(",") if b]
    _, cosine_distance = build_classes()
    raw = np.fromfile(args.inputs, dtype="<f4")
    ver = versions()
    out = open(args.out, "a") if args.out else None
    for dname in dtypes:
        dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dname]
        t = time.time()
        model, head, attn_used = load_ref(args.model, device, dtype, args.attn, args.head)
        size = model.vision_model.config.image_size
        per = 3 * size * size
        base = torch.from_numpy(raw.reshape(-1, 3, size, size).copy())
        reps = math.ceil(max(batches) / base.shape[0])
        pixels = base.repeat(reps, 1, 1, 1)[:max(batches)].contiguous()  # float32, host
        log(f"{dname}: loaded ({head} head, attn {attn_used}) in {time.time() - t:.1f} s; {base.shape[0]} distinct "
            f"inputs of {per} values")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()

        def sync():
            if device.type == "cuda":
                torch.cuda.synchronize()

        for b in batches:
            px = pixels[:b]
            placeholder = np.zeros((b, 1, 1, 1), dtype=np.float32)
            last = {}

            def forward():
                with torch.inference_mode():
                    _, nsfw = model(clip_input=px.to(device=device, dtype=dtype), images=placeholder)
                sync()
                last["nsfw"] = nsfw

            def tower_only():
                _, e, c, s = tower(model, px.to(device=device, dtype=dtype), cosine_distance)
                last["embeds"] = e

            for what, fn in (("forward", forward), ("tower", tower_only)):
                times = timed(fn, args.seconds if what == "forward" else args.seconds / 2)
                med = statistics.median(times)
                rec = {"side": "ref", "what": what, "dtype": dname, "batch": b, "iters": len(times),
                       "median_s": med, "mean_s": sum(times) / len(times), "img_s": b / med,
                       "img_s_mean": b * len(times) / sum(times), "tflops": b / med * args.gflops / 1000,
                       "device": str(device), "attn": attn_used, "head": head, **ver}
                if what == "forward":
                    rec["nsfw"] = [bool(x) for x in last["nsfw"][:8]]
                    res = getattr(model, "last_result", None)
                    if res is not None:
                        rec["bad_concepts"] = [list(r["bad_concepts"]) for r in res[:8]]
                else:
                    rec["embeds"] = [[float(x) for x in row] for row in last["embeds"][:2]]
                if device.type == "cuda":
                    rec["gpu_mem_mib"] = torch.cuda.max_memory_reserved() / 2**20
                line = json.dumps(rec)
                print(line, flush=True)
                if out:
                    out.write(line + "\n")
                    out.flush()
                log(f"{dname} batch {b} {what}: {rec['img_s']:.1f} img/s (median of {len(times)}), "
                    f"{rec['tflops']:.1f} TFLOP/s")
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------------------
# combine


def read_jsonl(path):
    recs = []
    if path and os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if line.startswith("{"):
                recs.append(json.loads(line))
    return recs


def rel_err(a, b):
    num = sum((x - y) ** 2 for x, y in zip(a, b))
    den = sum(y * y for y in b)
    return math.sqrt(num / den) if den > 0 else float("inf")


def cmd_combine(args):
    go = {(r["dtype"], r["batch"]): r for r in read_jsonl(args.go) if r.get("side") == "go"}
    ref_all = [r for r in read_jsonl(args.ref) if r.get("side") == "ref"]
    ref = {(r["dtype"], r["batch"]): r for r in ref_all if r.get("what") == "forward"}
    tow = {(r["dtype"], r["batch"]): r for r in ref_all if r.get("what") == "tower"}
    # float16 last, so that its largest batch (128) ends the report
    keys = sorted(set(go) | set(ref), key=lambda k: (k[0] == "float16", k[0], k[1]))
    sample = next(iter(ref.values()), None) or {}
    print(f"# gpu={sample.get('gpu', '?')} torch={sample.get('torch', '?')} "
          f"transformers={sample.get('transformers', '?')} libtorch(go)={next(iter(go.values()), {}).get('libtorch', '?')}")
    print("# dtype    batch   go img/s  ref img/s  ratio  go TFLOP/s  ref TFLOP/s  ref tower img/s  "
          "verdicts  embeds rel.err")
    bench = []
    ok = True
    for k in keys:
        g, r, tw = go.get(k), ref.get(k), tow.get(k)
        gi = g["img_s"] if g else float("nan")
        ri = r["img_s"] if r else float("nan")
        ratio = gi / ri if g and r and ri > 0 else float("nan")
        verd = "-"
        if g and r and g.get("nsfw") is not None and r.get("nsfw") is not None:
            n = min(len(g["nsfw"]), len(r["nsfw"]))
            same = g["nsfw"][:n] == r["nsfw"][:n] and (
                "bad_concepts" not in r or g.get("bad_concepts", [])[:n] == r["bad_concepts"][:n])
            verd = "same" if same else "DIFFER"
            ok &= same
        emb = "-"
        if g and tw and g.get("embeds") and tw.get("embeds"):
            emb = "%.1e" % max(rel_err(a, b) for a, b in zip(g["embeds"], tw["embeds"]))
        tws = "%.1f" % tw["img_s"] if tw else "-"
        print(f"  {k[0]:9s}{k[1]:5d} {gi:10.1f} {ri:10.1f} {ratio:6.2f} {gi * args.gflops / 1000:11.1f} "
              f"{ri * args.gflops / 1000:12.1f} {tws:>16s}  {verd:8s}  {emb}")
        dev = (g or r or {}).get("device", "cuda").split(":")[0]
        bench.append(f"BENCH device={dev} dtype={k[0]} batch={k[1]} ratio={ratio:.3f} go_img_s={gi:.1f} "
                     f"ref_img_s={ri:.1f} tflops={gi * args.gflops / 1000:.1f}")
    if not keys:
        print("# no benchmark records")
        bench.append("BENCH device=cuda dtype=float16 batch=128 ratio=nan go_img_s=nan ref_img_s=nan tflops=nan")
    for line in bench:
        print(line)
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make-model")
    m.add_argument("outdir")
    m.add_argument("--preset", choices=sorted(PRESETS), default="vitl14")
    m.add_argument("--device", default="cuda")
    m.add_argument("--inputs", type=int, default=8)
    m.add_argument("--seed", type=int, default=20251)
    b = sub.add_parser("bench")
    b.add_argument("--model", required=True)
    b.add_argument("--inputs", required=True)
    b.add_argument("--dtypes", default="float16,bfloat16")
    b.add_argument("--batches", default="1,8,32,128")
    b.add_argument("--seconds", type=float, default=2.0)
    b.add_argument("--device", default="cuda")
    b.add_argument("--attn", default="sdpa")
    b.add_argument("--head", choices=["auto", "diffusers", "reimpl"], default="auto")
    b.add_argument("--gflops", type=float, default=162.0)
    b.add_argument("--out")
    c = sub.add_parser("combine")
    c.add_argument("--go", required=True)
    c.add_argument("--ref", required=True)
    c.add_argument("--gflops", type=float, default=162.0)
    args = ap.parse_args()
    if args.cmd == "make-model":
        cmd_make_model(args)
    elif args.cmd == "bench":
        cmd_bench(args)
    else:
        sys.exit(cmd_combine(args))


if __name__ == "__main__":
    main()
