"""End-to-end top-down prediction speed: HRNet-W32 256x192 with flip test on real COCO photos and their person boxes.

    python benchmarks/predict_speed.py [--coco ../shared/data/coco] [--images 10] [--rounds 3] [--threads 2]
        [--backends torch torch-folded onnxruntime openvino] [--json out.json]

``PosePredictor`` from ``configs/hrnet-w32_coco_256x192.yaml`` (flip test, batch 64) with HRNet-W32 under
:func:`posekit.deploy.bench.calibrate_random_weights` (speed only: no trained W32 weights exist here; exactness
is measured on the shipped trained model by ``benchmarks/trained_backends.py``), on the first ``--images`` COCO
train2017 images that have non-crowd people with keypoints, with those people's ground-truth boxes.

Per backend, per round: one end-to-end ``predict_many(paths, boxes)`` (what a user runs), then the same work
split into stages timed from outside the library with the predictor's own steps: image decode (``load_rgb``),
crop (``_crops`` + stacking into a tensor), forward (``predict_heatmaps_multiscale``: flip test included) and
heatmap decode + back-projection to image pixels (``decode_to_image``). Backends are interleaved round by round
in one process and each figure is the median over the rounds, so the load of a shared machine falls on all alike.

``torch (two calls)`` is the eager fp32 predictor as it was before flip test ran crops and mirrored crops as
one batch (``predict_heatmaps`` calling the model twice): the reference the ratios are taken to. ``--before``
names the backends also run that old way (default: ``onnxruntime``, the fastest exact one before this benchmark).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

import posekit.evaluation.inference as inference
from posekit.apps.predictor import PosePredictor, load_rgb
from posekit.codecs import flip_back
from posekit.config import load_config
from posekit.deploy.backends import BACKENDS, inference_model, onnxruntime_available
from posekit.deploy.bench import calibrate_random_weights
from posekit.evaluation.inference import decode_to_image, final_heatmaps, predict_heatmaps_multiscale
from posekit.models import create_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "hrnet-w32_coco_256x192.yaml")
TWO_CALLS = " (two calls)"
REFERENCE = "torch" + TWO_CALLS
STAGES = ("decode", "crop", "forward", "heatmap decode")


def coco_people(coco: str, max_images: int) -> tuple:
    """(image paths, N x 4 box arrays) of the first ``max_images`` images with non-crowd people with keypoints."""
    with open(os.path.join(coco, "annotations", "person_keypoints_train2017.json")) as f:
        data = json.load(f)
    files = {im["id"]: im["file_name"] for im in data["images"]}
    boxes: Dict[int, List[List[float]]] = {}
    for ann in data["annotations"]:
        if ann.get("iscrowd", 0) or ann.get("num_keypoints", 0) == 0:
            continue
        if not os.path.exists(os.path.join(coco, "train2017", files[ann["image_id"]])):
            continue
        boxes.setdefault(ann["image_id"], []).append(ann["bbox"])
    ids = sorted(boxes)[:max_images]
    return ([os.path.join(coco, "train2017", files[i]) for i in ids],
            [np.asarray(boxes[i], dtype=np.float64) for i in ids])


@torch.no_grad()
def two_call_predict_heatmaps(model, images, flip_perm=None, shift_heatmap=True):
    """predict_heatmaps before flip test was batched: the crops, then the mirrored crops, in two model calls."""
    heatmaps = final_heatmaps(model, model(images)).float()
    if flip_perm is not None:
        flipped = final_heatmaps(model, model(images.flip(3))).float()
        perm = list(flip_perm) + list(range(len(flip_perm), heatmaps.shape[1]))
        heatmaps = 0.5 * (heatmaps + flip_back(flipped, perm, shift=shift_heatmap))
    return heatmaps


@contextlib.contextmanager
def two_call_flip(enabled: bool) -> Iterator[None]:
    saved = inference.predict_heatmaps
    if enabled:
        inference.predict_heatmaps = two_call_predict_heatmaps
    try:
        yield
    finally:
        inference.predict_heatmaps = saved


def staged(predictor: PosePredictor, paths: Sequence[str], boxes: Sequence[np.ndarray]) -> Dict[str, float]:
    """Seconds per stage of what ``predict_many(paths, boxes)`` does, batch by batch as it does."""
    clock = dict.fromkeys(STAGES, 0.0)
    pending: List[Any] = []
    skipped = [0] * len(paths)

    def run(batch: List[Any]) -> None:
        t0 = time.perf_counter()
        stacked = torch.from_numpy(np.stack([p[3] for p in batch]))
        crops = [stacked[:, s] for s in range(len(predictor.scales))]
        centers, scales = np.stack([p[4] for p in batch]), np.stack([p[5] for p in batch])
        t1 = time.perf_counter()
        heatmaps = predict_heatmaps_multiscale(predictor.model, crops, predictor.scales, predictor.flip_perm,
                                               predictor.cfg.test.shift_heatmap, predictor._center_xy)
        t2 = time.perf_counter()
        decode_to_image(predictor.codec, heatmaps, predictor.crop, centers, scales)
        t3 = time.perf_counter()
        clock["crop"] += t1 - t0
        clock["forward"] += t2 - t1
        clock["heatmap decode"] += t3 - t2

    for index, (path, image_boxes) in enumerate(zip(paths, boxes)):
        t0 = time.perf_counter()
        rgb = load_rgb(path)
        t1 = time.perf_counter()
        items = list(predictor._crops(rgb, image_boxes, index, skipped))
        clock["decode"] += t1 - t0
        clock["crop"] += time.perf_counter() - t1
        for item in items:
            pending.append(item)
            if len(pending) == predictor.batch_size:
                run(pending)
                pending = []
    if pending:
        run(pending)
    return clock


def build(backends: Sequence[str], before: Sequence[str]) -> Dict[str, PosePredictor]:
    cfg = load_config(CONFIG)
    model = calibrate_random_weights(create_model("hrnet_w32", num_keypoints=17), cfg.input_hw)
    predictors = {REFERENCE: PosePredictor(model, cfg, device="cpu")}
    for backend in backends:
        prepared = model if backend == "torch" else inference_model(model, backend, cfg.input_hw)
        names = [backend + TWO_CALLS] * (backend in before and backend != "torch") + [backend]
        for name in names:
            predictors[name] = PosePredictor(prepared, cfg, device="cpu")
            predictors[name].backend = backend
    return predictors


def measure(predictors: Dict[str, PosePredictor], paths: Sequence[str], boxes: Sequence[np.ndarray],
            rounds: int) -> Dict[str, Dict[str, float]]:
    times: Dict[str, Dict[str, List[float]]] = {name: {} for name in predictors}
    for round_index in range(rounds + 1):            # round 0 warms up (oneDNN primitives, allocator, page cache)
        for name, predictor in predictors.items():
            with two_call_flip(name.endswith(TWO_CALLS)):
                t0 = time.perf_counter()
                predictor.predict_many(paths, boxes)
                total = time.perf_counter() - t0
                stages = staged(predictor, paths, boxes)
            if round_index:
                for key, value in {"end to end": total, **stages}.items():
                    times[name].setdefault(key, []).append(value)
    return {name: {key: statistics.median(v) for key, v in per.items()} for name, per in times.items()}


def check_same(predictors: Dict[str, PosePredictor], paths: Sequence[str], boxes: Sequence[np.ndarray]) -> Dict[str, float]:
    """Largest keypoint difference (image pixels) of each backend from the two-call eager predictor."""
    with two_call_flip(True):
        reference = predictors[REFERENCE].predict_many(paths, boxes)
    ref = np.concatenate([[p.keypoints for p in poses] for poses in reference])
    out = {}
    for name, predictor in predictors.items():
        if name == REFERENCE:
            continue
        with two_call_flip(name.endswith(TWO_CALLS)):
            got = np.concatenate([[p.keypoints for p in poses] for poses in predictor.predict_many(paths, boxes)])
            out[name] = float(np.abs(got - ref).max())
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coco", default=os.path.join(REPO, "..", "shared", "data", "coco"))
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backends", nargs="+", default=None, help=f"of {', '.join(BACKENDS)} (default: the "
                        "installed exact ones but torch-channels-last, which torch-folded includes)")
    parser.add_argument("--before", nargs="*", default=["onnxruntime"], help="backends also timed with the old "
                        "two-call flip test")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    backends = args.backends or [b for b in BACKENDS if b not in ("torch-bf16", "torch-channels-last")
                                 and (b != "onnxruntime" or onnxruntime_available())
                                 and (b != "openvino" or openvino_installed())]
    paths, boxes = coco_people(args.coco, args.images)
    people = sum(len(b) for b in boxes)
    predictors = build(backends, args.before)
    differences = check_same(predictors, paths, boxes)
    ms = measure(predictors, paths, boxes, args.rounds)
    reference = ms[REFERENCE]["end to end"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; HRNet-W32 256x192, flip test; "
          f"{len(paths)} COCO images, {people} people; median of {args.rounds} rounds (ms per image set)\n")
    print("| predictor | end to end | image decode | crop | forward | heatmap decode + back-projection | "
          f"vs {REFERENCE} | max keypoint diff (px) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in ms.items():
        diff = "reference" if name == REFERENCE else f"{differences[name]:.2g}"
        print(f"| `{name}` | {1000 * row['end to end']:.0f} | " + " | ".join(f"{1000 * row[s]:.1f}" for s in STAGES)
              + f" | {row['end to end'] / reference:.2f}x | {diff} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"images": len(paths), "people": people, "ms": ms, "max_diff_px": differences}, f, indent=1)
    return 0


def openvino_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


if __name__ == "__main__":
    sys.exit(main())
