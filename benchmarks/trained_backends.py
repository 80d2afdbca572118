"""Every inference backend on a trained model: accuracy, keypoint shift from eager fp32, and latency.

    python benchmarks/trained_backends.py --lsp ../shared/data/lsp [--model hrnet-lite_lsp_128x128]
        [--weights FILE] [--threads 2] [--json out.json] [--set test.scales=[0.9,1.0,1.1]]

Runs the shipped model (or --weights in its architecture) through ``PosePredictor`` with each backend on the LSP
holdout split it was validated on (images 801-1000, boxes = the joints' extent, flip test), and reports per backend:
PCK@0.2, the mean / max keypoint shift from plain eager fp32 in input pixels, the share of keypoints within 1 px of
eager's, whether it counts as exact (PCK within 0.1 of eager and >= 99 % within 1 px), the latency of one person
(one image, flip test: a batch of 2 crops; median of 30) and the throughput over all 200 people (image decoding
included). Absolute times are noisy on shared machines; compare backends measured in one run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any, Dict, List

import numpy as np
import torch

from posekit.config import apply_overrides
from posekit.build import load_records
from posekit.deploy.backends import BACKENDS, backend_unavailable
from posekit.evaluation.metrics import pck
from posekit.models.pretrained import DEFAULT_PRETRAINED, pretrained_config
from posekit.apps.predictor import PosePredictor, load_rgb

EXACT_PCK = 0.001       # PCK is a fraction here: 0.1 points
EXACT_SHARE = 0.99
EXACT_PIXELS = 1.0


def measure(args: argparse.Namespace) -> List[Dict[str, Any]]:
    cfg = pretrained_config(args.model)
    apply_overrides(cfg, args.set)
    if args.weights:
        cfg.model.weights = args.weights
    cfg.data.root, cfg.data.val_split = args.lsp, "holdout"
    records = load_records(cfg, "val")
    images = [load_rgb(r.image_path) for r in records]
    boxes = [r.box[None] for r in records]
    gt = np.stack([r.keypoints for r in records])
    rows: List[Dict[str, Any]] = []
    reference = None
    for backend in BACKENDS:
        reason = backend_unavailable(backend)
        if reason:
            print(f"{backend} skipped: {reason}", file=sys.stderr)
            continue
        predictor = PosePredictor.from_config(cfg, device="cpu", backend=backend)
        start = time.perf_counter()
        poses = predictor.predict_many(images, boxes)
        throughput = len(images) / (time.perf_counter() - start)
        keypoints = np.stack([p[0].keypoints for p in poses])
        # Image pixels -> input pixels: the crop window is scale x 200 image pixels wide, input_w pixels on input.
        to_input = np.array([cfg.input_hw[1] / (p[0].scale[0] * 200.0) for p in poses])[:, None]
        if reference is None:
            reference = keypoints
        shift = np.linalg.norm(keypoints - reference, axis=-1) * to_input
        score = pck(keypoints, gt[..., :2], gt[..., 2], predictor.skeleton.torso, alpha=0.2)
        one = images[0]
        for _ in range(3):
            predictor(one, boxes[0])
        times = []
        for _ in range(30):
            t0 = time.perf_counter()
            predictor(one, boxes[0])
            times.append(time.perf_counter() - t0)
        rows.append({"backend": backend, "pck": float(score["mean"]), "per_joint": [float(v) for v in score["per_joint"]],
                     "mean_shift_px": float(shift.mean()), "max_shift_px": float(shift.max()),
                     "within_1px": float((shift <= EXACT_PIXELS).mean()), "latency_ms": 1000 * statistics.median(times),
                     "people_per_s": throughput})
        print(f"{backend}: done", file=sys.stderr, flush=True)
    eager = rows[0]["pck"]
    for row in rows:
        row["exact"] = abs(row["pck"] - eager) <= EXACT_PCK + 1e-12 and row["within_1px"] >= EXACT_SHARE
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lsp", required=True, help="LSP folder (joints.mat + images/) holding images 801-1000")
    parser.add_argument("--model", default=DEFAULT_PRETRAINED)
    parser.add_argument("--weights", default=None, help="other weights for the same architecture")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the model's config")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = measure(args)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(rows)} backends, 200 LSP holdout people\n")
    print("| backend | PCK@0.2 | mean shift (px) | max shift (px) | within 1 px | exact | 1 person (ms) | people/s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| `{r['backend']}` | {100 * r['pck']:.2f} | {r['mean_shift_px']:.3f} | {r['max_shift_px']:.2f} | "
              f"{100 * r['within_1px']:.1f} % | {'yes' if r['exact'] else 'no'} | {r['latency_ms']:.1f} | "
              f"{r['people_per_s']:.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
