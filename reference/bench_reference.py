#!/usr/bin/env python3
"""Benchmark the Python reference pipeline (a starter for the benchmark work; prints one JSON line).

usage: .venv/bin/python reference/bench_reference.py --model DIR --images DIR_OR_FILE [...] [--batch N]
           [--dtype float32|bfloat16] [--threads T] [--mode e2e|model|cold] [--iters K] [--warmup W]
           [--device cpu|cuda] [--t0 UNIX_TIME]

The reference pipeline: PIL Image.open + CLIPImageProcessorPil (the Pillow path of CLIPImageProcessor, with the
model folder's preprocessor_config.json) + StableDiffusionSafetyChecker.forward, under torch.inference_mode.
Modes:
  e2e    each iteration processes --batch images from the files: open, preprocess, forward (images_per_s counts
         all of it);
  model  preprocessing once beforehand; each iteration times only forward on the [batch,3,224,224] pixel values;
  gemm   no model: the float32 products of the model's linear layers at --batch (257*batch rows by 1024->1024,
         1024->3072, 1024->4096, 4096->1024) as --op computes them: linear (x.w^T + b), matmul_t (x @ w.T, a
         transposed view), matmul_kn (x @ a contiguous [in, out] weight); "gemm_gflops" lists each median rate
         (examples/bench --mode gemm is the Go side; --model and --images are ignored);
  cold   one image, from process start (--t0, e.g. `date +%s.%N` taken just before starting Python, or else the
         time this script's first line ran) to the first verdict: imports, model load, preprocessing, forward.
Output: {"mode", "images_per_s", "seconds" (timed total), "iters", "batch", "images", "dtype", "threads", "device",
"peak_rss_mb" (getrusage ru_maxrss), "torch", "transformers", "diffusers", "nsfw" (the last batch's verdicts)}.
"""
import time

T_START = time.time()  # before the heavy imports: the 'cold' clock starts here unless --t0 is given

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp")


def parse_args():
    ap = argparse.ArgumentParser(description="Benchmark the Python reference safety-checker pipeline.")
    ap.add_argument("--model", required=True, help="folder with config.json, model.safetensors, "
                                                   "preprocessor_config.json")
    ap.add_argument("--images", required=True, nargs="+", help="image files and/or folders of images")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    ap.add_argument("--mode", choices=["e2e", "model", "cold", "gemm"], default="e2e")
    ap.add_argument("--op", choices=["linear", "matmul_t", "matmul_kn"], default="linear",
                    help="gemm: how the product is computed (as examples/bench --mode gemm)")
    ap.add_argument("--iters", type=int, default=10, help="timed iterations (e2e, model)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed iterations first (e2e, model)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--t0", type=float, default=None, help="process start as a Unix time (cold mode)")
    return ap.parse_args()


def list_images(items):
    files = []
    for it in items:
        if os.path.isdir(it):
            files += [os.path.join(it, f) for f in sorted(os.listdir(it)) if f.lower().endswith(IMAGE_EXT)]
        elif os.path.isfile(it):
            files.append(it)
        else:
            sys.exit(f"bench_reference: no such file or folder: {it}")
    if not files:
        sys.exit("bench_reference: no images")
    return files


def gemm(args):
    """--mode gemm: the model's linear-layer products, as examples/bench --mode gemm times them."""
    import torch
    import torch.nn.functional as F

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.dtype != "float32":
        raise SystemExit("gemm: only float32")
    rows = 257 * args.batch
    g = torch.Generator().manual_seed(0)
    shapes, rates, total = [], [], 0.0
    with torch.inference_mode():
        for fan_in, fan_out in ((1024, 1024), (1024, 3072), (1024, 4096), (4096, 1024)):
            x = torch.rand(rows, fan_in, generator=g) - 0.5
            w = torch.rand(fan_out, fan_in, generator=g) - 0.5
            b = torch.rand(fan_out, generator=g) - 0.5
            if args.op == "linear":
                prod = lambda: F.linear(x, w, b)  # noqa: E731
            elif args.op == "matmul_t":
                wt = w.t()
                prod = lambda: x @ wt  # noqa: E731
            else:
                wkn = w.t().contiguous()
                prod = lambda: x @ wkn  # noqa: E731
            for _ in range(args.warmup):
                prod()
            times = []
            for _ in range(args.iters):
                s = time.perf_counter()
                prod()
                times.append(time.perf_counter() - s)
            times.sort()
            med = times[len(times) // 2] if len(times) % 2 else (times[len(times) // 2 - 1] + times[len(times) // 2]) / 2
            shapes.append(f"{rows}x{fan_in}->{fan_out}")
            rates.append(2 * rows * fan_in * fan_out / med / 1e9)
            total += med
    print(json.dumps({"mode": "gemm", "op": args.op, "batch": args.batch, "dtype": args.dtype,
                      "threads": torch.get_num_threads(), "seconds": total, "iters": args.iters,
                      "gemm_shapes": shapes, "gemm_gflops": rates, "torch": torch.__version__}))


def main():
    args = parse_args()
    if args.mode == "gemm":
        return gemm(args)
    t0 = args.t0 if args.t0 is not None else T_START

    import numpy as np
    import torch
    import diffusers
    import transformers
    from PIL import Image
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    transformers.logging.set_verbosity_error()
    diffusers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    device = torch.device(args.device)

    files = list_images(args.images)
    if args.mode == "cold":
        files, args.batch = files[:1], 1
    batch_files = [files[i % len(files)] for i in range(args.batch)]

    model = StableDiffusionSafetyChecker.from_pretrained(args.model, dtype=dtype).to(device).eval()
    proc = CLIPImageProcessorPil.from_pretrained(args.model)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def preprocess(paths):
        ims = [Image.open(p) for p in paths]
        return proc(images=ims, return_tensors="pt").pixel_values

    def verdicts(pixel_values):
        with torch.inference_mode():
            clip_input = pixel_values.to(device=device, dtype=dtype)
            placeholder = np.zeros((clip_input.shape[0], 1, 1, 1), dtype=np.float32)  # forward's `images`
            _, has_nsfw = model(clip_input=clip_input, images=placeholder)
        sync()
        return has_nsfw

    if args.mode == "cold":
        nsfw = verdicts(preprocess(batch_files))
        seconds, iters = time.time() - t0, 1
    elif args.mode == "e2e":
        for _ in range(args.warmup):
            verdicts(preprocess(batch_files))
        t = time.perf_counter()
        for _ in range(args.iters):
            nsfw = verdicts(preprocess(batch_files))
        seconds, iters = time.perf_counter() - t, args.iters
    else:  # model
        px = preprocess(batch_files)
        for _ in range(args.warmup):
            verdicts(px)
        t = time.perf_counter()
        for _ in range(args.iters):
            nsfw = verdicts(px)
        seconds, iters = time.perf_counter() - t, args.iters

    n = iters * args.batch
    out = {
        "mode": args.mode,
        "images_per_s": n / seconds if seconds > 0 else None,
        "seconds": seconds,
        "iters": iters,
        "batch": args.batch,
        "images": n,
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "diffusers": diffusers.__version__,
        "model": os.path.abspath(args.model),
        "nsfw": [bool(x) for x in nsfw],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
