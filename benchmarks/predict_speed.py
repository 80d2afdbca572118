"""End-to-end top-down prediction speed: HRNet-W32 256x192 with flip test on real COCO photos and their person boxes.

    python benchmarks/predict_speed.py [--coco ../shared/data/coco] [--images 10] [--rounds 3] [--threads 2]
        [--backends torch torch-folded onnxruntime openvino] [--mmpose] [--json out.json]

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

``--mmpose`` adds MMPose 1.x's own top-down inference in the same process, interleaved with the rest: its
``td-hm_hrnet-w32_8xb64-210e_coco-256x192`` config (flip test, heatmap flip with shift, argmax + quarter-offset
decoding) built by ``mmpose.apis.init_model`` and given the same weights, then ``inference_topdown(model, path,
boxes)`` per image (its own image loading, crops, batching and decoding; end to end only). Needs ``pip install
mmengine mmcv-lite==2.1.0 mmpose==1.3.2`` (NumPy 1.x). ``mmpose.apis`` imports modules its HRNet path never calls
and that cannot be installed here (mmcv's compiled ops, torchvision): stand-ins whose every function raises take
their place (:func:`install_stand_ins`), so the run would fail if the path called one.
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
from posekit.deploy.backends import BACKENDS, BF16_BACKENDS, backend_unavailable, cpu_has_bf16, inference_model
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


MMPOSE = "mmpose inference_topdown"
MMPOSE_CONFIG = ("configs", "body_2d_keypoint", "topdown_heatmap", "coco", "td-hm_hrnet-w32_8xb64-210e_coco-256x192.py")


def install_stand_ins() -> None:
    """Modules mmpose.apis imports but its HRNet top-down path never calls, where they cannot be installed here:
    ``mmcv._ext`` (mmcv-lite has no compiled ops; the transformer heads import some) and ``torchvision.transforms``
    (no CPU torchvision here; the SimCC visualiser imports ToPILImage). Every function in them raises."""
    import importlib.machinery
    import importlib.util
    import types

    def stand_in(module_name: str) -> types.ModuleType:
        module = types.ModuleType(module_name)
        module.__spec__ = importlib.machinery.ModuleSpec(module_name, None)     # no loader: "not really installed"

        def attribute(name: str) -> Any:
            if name.startswith("__"):
                raise AttributeError(name)

            def missing(*_args: Any, **_kwargs: Any) -> None:
                raise RuntimeError(f"{module_name}.{name} was called: the stand-in cannot run it")
            return missing

        module.__getattr__ = attribute      # module-level __getattr__ (PEP 562): any name resolves
        return module

    for name in ("mmcv._ext", "torchvision", "torchvision.transforms"):
        if name in sys.modules:
            continue
        parent = name.rpartition(".")[0]
        if (parent in sys.modules and getattr(sys.modules[parent].__spec__, "loader", None) is None) or \
                importlib.util.find_spec(name) is None:
            sys.modules[name] = stand_in(name)


class MMPoseTopDown:
    """MMPose's ``inference_topdown`` behind the predictor's ``predict_many(paths, boxes)``."""

    backend = "mmpose"

    def __init__(self, posekit_model: torch.nn.Module):
        install_stand_ins()
        import mmpose
        from mmpose.apis import inference_topdown, init_model

        config = os.path.join(os.path.dirname(mmpose.__file__), ".mim", *MMPOSE_CONFIG)
        self.model = init_model(config, checkpoint=None, device="cpu")
        state = posekit_model.state_dict()
        # posekit's HRNet keys are MMPose's backbone keys; its final_layer is HeatmapHead's final_layer.
        mapped = {(f"head.{k}" if k.startswith("final_layer.") else f"backbone.{k}"): v for k, v in state.items()}
        missing, unexpected = self.model.load_state_dict(mapped, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"MMPose's model did not take posekit's weights: missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]}")
        self.model.eval()
        self._infer = inference_topdown

    def predict_many(self, paths: Sequence[str], boxes: Sequence[np.ndarray]) -> List[List[Any]]:
        out = []
        for path, xywh in zip(paths, boxes):
            xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:4]], axis=1)
            samples = self._infer(self.model, path, xyxy, bbox_format="xyxy")
            out.append([argparse.Namespace(keypoints=s.pred_instances.keypoints[0]) for s in samples])
        return out


def build(backends: Sequence[str], before: Sequence[str], mmpose: bool = False) -> Dict[str, Any]:
    cfg = load_config(CONFIG)
    model = calibrate_random_weights(create_model("hrnet_w32", num_keypoints=17), cfg.input_hw)
    predictors: Dict[str, Any] = {REFERENCE: PosePredictor(model, cfg, device="cpu")}
    if mmpose:
        predictors[MMPOSE] = MMPoseTopDown(model)
    for backend in backends:
        prepared = model if backend == "torch" else inference_model(model, backend, cfg.input_hw)
        names = [backend + TWO_CALLS] * (backend in before and backend != "torch") + [backend]
        for name in names:
            predictors[name] = PosePredictor(prepared, cfg, device="cpu")
            predictors[name].backend = backend
    return predictors


def measure(predictors: Dict[str, Any], paths: Sequence[str], boxes: Sequence[np.ndarray],
            rounds: int) -> Dict[str, Dict[str, float]]:
    times: Dict[str, Dict[str, List[float]]] = {name: {} for name in predictors}
    for round_index in range(rounds + 1):            # round 0 warms up (oneDNN primitives, allocator, page cache)
        for name, predictor in predictors.items():
            with two_call_flip(name.endswith(TWO_CALLS)):
                t0 = time.perf_counter()
                predictor.predict_many(paths, boxes)
                total = time.perf_counter() - t0
                stages = staged(predictor, paths, boxes) if isinstance(predictor, PosePredictor) else {}
            if round_index:
                for key, value in {"end to end": total, **stages}.items():
                    times[name].setdefault(key, []).append(value)
    return {name: {key: statistics.median(v) for key, v in per.items()} for name, per in times.items()}


def check_same(predictors: Dict[str, Any], paths: Sequence[str], boxes: Sequence[np.ndarray]) -> Dict[str, float]:
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
                        "installed ones but torch-channels-last, which torch-folded includes; bf16 ones where the CPU "
                        "has native bf16)")
    parser.add_argument("--before", nargs="*", default=["onnxruntime"], help="backends also timed with the old "
                        "two-call flip test")
    parser.add_argument("--mmpose", action="store_true", help="also MMPose's inference_topdown on the same weights")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    backends = args.backends or [b for b in BACKENDS if b != "torch-channels-last" and backend_unavailable(b) is None
                                 and (b not in BF16_BACKENDS or cpu_has_bf16())]
    paths, boxes = coco_people(args.coco, args.images)
    people = sum(len(b) for b in boxes)
    predictors = build(backends, args.before, args.mmpose)
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
        print(f"| `{name}` | {1000 * row['end to end']:.0f} | "
              + " | ".join(f"{1000 * row[s]:.1f}" if s in row else "-" for s in STAGES)
              + f" | {row['end to end'] / reference:.2f}x | {diff} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"images": len(paths), "people": people, "ms": ms, "max_diff_px": differences}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
