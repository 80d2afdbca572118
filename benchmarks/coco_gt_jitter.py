"""Score ground-truth-jittered keypoints through posekit's COCO path (rescoring, OKS-NMS, pycocotools).

    python benchmarks/coco_gt_jitter.py ../shared/data/coco/annotations/person_keypoints_train2017.json

Each ground-truth person becomes one result whose keypoints are moved by N(0, (noise * sqrt(area) / 10)^2)
pixels, plus a near-duplicate that OKS-NMS should remove; the ten AP/AR numbers of posekit's
``coco_evaluate`` are printed next to pycocotools' own evaluation of the same results file.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ann_file")
    parser.add_argument("--noise", type=float, default=0.3, help="jitter std as a fraction of sqrt(area) / 10")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from posekit.evaluation.metrics import COCO_STAT_NAMES, coco_evaluate, nms_per_image, write_coco_results
    from posekit.skeletons import COCO as COCO_SKELETON

    rng = np.random.default_rng(args.seed)
    annotations = json.loads(Path(args.ann_file).read_text())["annotations"]
    results = []
    for ann in annotations:
        if ann.get("iscrowd") or ann.get("num_keypoints", 0) == 0:
            continue
        kpts = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        std = args.noise * np.sqrt(ann["area"]) / 10.0
        moved = kpts[:, :2] + rng.normal(0, std, kpts[:, :2].shape)
        # A second, lower-scored copy a few pixels away: the near-duplicate OKS-NMS should remove.
        duplicate = moved + rng.normal(0, 0.1 * std, moved.shape)
        for points, box_score in ((moved, 1.0), (duplicate, 0.9)):
            scores = np.where(kpts[:, 2] > 0, rng.uniform(0.5, 1.0, len(kpts)), rng.uniform(0.0, 0.2, len(kpts)))
            results.append({"image_id": ann["image_id"], "category_id": 1, "area": float(ann["area"]) * 1.25 ** 2,
                            "keypoints": np.concatenate([points, scores[:, None]], 1).reshape(-1).tolist(),
                            "score": box_score})
    kept = nms_per_image(results, oks_threshold=0.9, keypoint_threshold=0.2, sigmas=COCO_SKELETON.sigmas)
    for r in kept:
        r.pop("area")
    print(f"{len(results)} results, {len(kept)} after rescoring + OKS-NMS at 0.9")
    ours = coco_evaluate(kept, args.ann_file)

    with tempfile.TemporaryDirectory() as tmp:
        path = write_coco_results(kept, Path(tmp) / "results.json")
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(args.ann_file)
            ev = COCOeval(gt, gt.loadRes(str(path)), "keypoints")
            ev.params.useSegm = None
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
    print(f"{'':6} {'posekit':>8} {'pycocotools':>12}")
    for name, theirs in zip(COCO_STAT_NAMES, ev.stats):
        print(f"{name:6} {ours[name]:8.4f} {theirs:12.4f}")


if __name__ == "__main__":
    main()
