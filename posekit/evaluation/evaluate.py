"""Evaluation of a model on the records of a split: crop, predict (flip and multi-scale test), decode to image
coordinates, then the configured metric (PCK, MPII's PCKh, or COCO AP through pycocotools after the official
rescoring and OKS-NMS). Sharded across processes when run inside a process group."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..build import build_codecs, dataset_skeleton, join_root, make_dataset, output_specs
from ..config import Config, validate
from ..data.records import PersonRecord
from ..errors import ConfigError
from ..runtime import data_workers, is_distributed, model_device
from ..skeletons import Skeleton
from . import metrics
from .inference import check_test_scales, crop_center_on_heatmap, decode_to_image, predict_heatmaps_multiscale


def primary_metric(cfg: Config, metrics: Dict[str, Any]) -> Optional[float]:
    """The number that ranks evaluations of cfg.test.metric (PCK mean, PCKh mean, COCO AP); None if absent."""
    key = {"pck": "pck", "pckh": "Mean", "coco": "AP"}.get(cfg.test.metric)
    value = metrics.get(key) if key else None
    return float(value) if isinstance(value, (int, float)) else None


@dataclass
class Predictions:
    keypoints: np.ndarray        # N x K x 2 image coordinates
    scores: np.ndarray           # N x K heatmap maxima
    centers: np.ndarray
    scales: np.ndarray
    image_ids: np.ndarray
    box_scores: np.ndarray
    gt_keypoints: np.ndarray     # N x K x 3 as annotated


def run_inference(cfg: Config, model: nn.Module, records: Sequence[PersonRecord], progress: bool = True) -> Predictions:
    """Crops every record, runs the model (flip test per cfg.test) and decodes to image coordinates.

    In a process group of several processes (training under torchrun) each process predicts one contiguous
    share of the records and every process receives all predictions, in the records' order.
    """
    if not is_distributed():
        return _run_inference_shard(cfg, model, records, progress)
    rank, world = dist.get_rank(), dist.get_world_size()
    bounds = [len(records) * r // world for r in range(world + 1)]
    mine = _run_inference_shard(cfg, model, list(records)[bounds[rank]:bounds[rank + 1]], progress and rank == 0)
    shares: List[Any] = [None] * world
    dist.all_gather_object(shares, mine)
    filled = [s for s in shares if len(s.image_ids)]
    if not filled:
        return shares[0]
    return Predictions(*(np.concatenate([getattr(s, f) for s in filled]) for f in Predictions.__dataclass_fields__))


def _run_inference_shard(cfg: Config, model: nn.Module, records: Sequence[PersonRecord], progress: bool) -> Predictions:
    device = model_device(model)
    specs = output_specs(model, cfg)
    codec = build_codecs(specs, cfg)[-1]
    test_scales = check_test_scales(cfg.test.scales)
    center_xy = crop_center_on_heatmap(codec)
    # One dataset per scale factor f: the same centre with box_padding x f, i.e. a window f times larger.
    workers = -(-data_workers(min(cfg.train.workers, 4)) // len(test_scales))
    loaders = [DataLoader(make_dataset(replace(cfg, data=replace(cfg.data, box_padding=cfg.data.box_padding * f)),
                                       records, [], train=False, model=model),
                          batch_size=cfg.test.batch_size, shuffle=False, num_workers=workers)
               for f in test_scales]
    crop = loaders[0].dataset.crop
    flip_perm = dataset_skeleton(cfg).flip_permutation() if cfg.test.flip_test else None
    was_training = model.training
    model.eval()
    parts: Dict[str, List[np.ndarray]] = {k: [] for k in ("kp", "sc", "c", "s", "id", "bs", "gt")}
    for batches in tqdm(zip(*loaders), total=len(loaders[0]), desc="inference", disable=not progress, leave=False,
                        dynamic_ncols=True):
        crops = [b["image"].to(device) for b in batches]
        heatmaps = predict_heatmaps_multiscale(model, crops, test_scales, flip_perm, cfg.test.shift_heatmap, center_xy)
        batch = batches[0]
        # Decoded in the f = 1 crop: its centre, and the first scale's window divided by its factor.
        centers, scales = batch["center"].numpy(), batch["scale"].numpy() / test_scales[0]
        coords, scores = decode_to_image(codec, heatmaps, crop, centers, scales)
        for key, value in (("kp", coords), ("sc", scores), ("c", centers), ("s", scales), ("id", batch["image_id"].numpy()),
                           ("bs", batch["score"].numpy()), ("gt", batch["keypoints"].numpy())):
            parts[key].append(value)
    model.train(was_training)
    cat = {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in parts.items()}
    return Predictions(cat["kp"], cat["sc"], cat["c"], cat["s"], cat["id"], cat["bs"], cat["gt"])


def evaluate_model(cfg: Config, model: nn.Module, records: Sequence[PersonRecord], progress: bool = True,
                   write: bool = True, results_path: Optional[Path] = None) -> Dict[str, Any]:
    """Metrics of cfg.test.metric on the given records (COCO: all ten AP/AR numbers; PCK: per joint)."""
    validate(cfg)       # before the (long) inference: a config changed in Python after loading is checked too
    preds = run_inference(cfg, model, records, progress=progress)
    skeleton = dataset_skeleton(cfg)
    if cfg.test.metric == "pck":
        if skeleton.torso is None:
            raise ConfigError(f"keypoint set {skeleton.name!r} has no torso joints for PCK", "test.metric")
        res = metrics.pck(preds.keypoints, preds.gt_keypoints[..., :2], preds.gt_keypoints[..., 2],
                          skeleton.torso, alpha=cfg.test.pck_alpha)
        return {"pck": float(res["mean"]), "per_joint": dict(zip(skeleton.keypoints, map(float, res["per_joint"]))),
                "alpha": cfg.test.pck_alpha, "people": int(res["num_people"]), "excluded_people": int(res["excluded_people"]),
                # per-person arrays for the PCK curve and reports (posekit eval); not printed or logged
                "samples": {"pred": preds.keypoints, "gt": preds.gt_keypoints}}
    if cfg.test.metric == "pckh":
        head_size = np.array([r.extras.get("head_size", np.nan) for r in records], dtype=np.float64)
        if not np.isfinite(head_size).all():
            raise ConfigError("test.metric pckh needs MPII head sizes: use the valid.h5 annotations "
                              "(data.val_ann: annot/valid.h5)", "test.metric")
        pred, gt, annotated = preds.keypoints, preds.gt_keypoints[..., :2], preds.gt_keypoints[..., 2] > 0
        if cfg.data.keypoint_subset is not None:
            # A subset of MPII's joints (CPM's 14 parts) is scored in MPII's order; the joints the model does not
            # predict (pelvis, thorax) count as unannotated, as the release's benchmark leaves them out.
            n, index = len(pred), list(cfg.data.keypoint_subset)
            pred16, gt16, ann16 = np.zeros((n, 16, 2)), np.zeros((n, 16, 2)), np.zeros((n, 16), dtype=bool)
            pred16[:, index], gt16[:, index], ann16[:, index] = pred, gt, annotated
            pred, gt, annotated = pred16, gt16, ann16
        if pred.shape[1] != 16:
            raise ConfigError(f"PCKh is defined on MPII's 16 joints; the model predicts {pred.shape[1]}", "test.metric")
        res = metrics.pckh(pred, gt, annotated, head_size)
        out = {k: float(res[k]) for k in ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean", "Mean@0.1")}
        out["table"] = metrics.format_pckh_table(res)
        out["samples"] = {"pred": pred, "gt": gt, "annotated": annotated, "head_size": head_size}
        return out
    if cfg.test.metric == "coco":
        results = coco_results(cfg, preds, skeleton)
        path = results_path or Path(cfg.output_dir) / "results" / "keypoints_results.json"
        if write:
            path.parent.mkdir(parents=True, exist_ok=True)
            metrics.write_coco_results(results, path)
        stats = metrics.coco_evaluate(results, join_root(cfg.data.root, cfg.data.val_ann), sigmas=skeleton.sigmas,
                                      image_ids=cfg.test.image_ids)
        stats = dict(stats)
        if write:
            stats["results_file"] = str(path)
        stats["boxes"] = "ground truth" if cfg.test.use_gt_bbox else f"detections ({cfg.test.det_file})"
        stats["nms"] = cfg.test.nms if cfg.test.nms == "none" else f"{cfg.test.nms} (threshold {cfg.test.oks_thre:g})"
        return stats
    raise ConfigError(f"test.metric must be coco, pck or pckh, got {cfg.test.metric!r}", "test.metric")


def coco_results(cfg: Config, preds: Predictions, skeleton: Skeleton) -> List[Dict[str, Any]]:
    """Official HRNet post-processing of a split's predictions (cfg.test.nms, OKS-NMS per image): COCO results."""
    return metrics.coco_keypoint_results(preds.image_ids, preds.keypoints, preds.scores, preds.box_scores,
                                         np.prod(preds.scales * 200.0, axis=-1), nms=cfg.test.nms,
                                         oks_threshold=cfg.test.oks_thre, keypoint_threshold=cfg.test.in_vis_thre,
                                         sigmas=skeleton.sigmas)
