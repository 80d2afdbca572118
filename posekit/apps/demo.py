"""``posekit demo``: the whole pipeline on built-in data, on a CPU, in a few minutes.

Synthetic stick figures (train and held-out splits from different seeds) are written to disk as a COCO
keypoints dataset, a small HRNet is trained on them through the same reader, dataset, codec, loss and
training loop as real data, the held-out PCK@0.2 is printed per joint, and two PNGs are written:
predicted skeletons on held-out images and the training curve.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Optional


from ..config import Config, config_from_dict
from ..data.synthetic import synthetic_splits
from ..build import build_model
from ..evaluation.evaluate import evaluate_model, run_inference
from ..training.trainer import train
from ..skeletons import SYNTHETIC
from ..viz import draw_skeleton, make_grid, plot_learning_curve, save_image
from ..data.images import read_image
from ..weightfiles import load_weights

DEMO_INPUT = [128, 96]


def demo_config(out: Path, seconds: float) -> Config:
    """The demo recipe: HRNet's pipeline and loss, a smaller HRNet and a schedule sized for a CPU."""
    return config_from_dict({
        "model": {"name": "hrnet_w16_small", "num_keypoints": 14, "sigma": 2.0},
        "data": {
            "format": "synthetic", "root": str(out / "data"), "skeleton": "synthetic",
            "train_ann": "train/annotations.json", "train_images": "train",
            "val_ann": "val/annotations.json", "val_images": "val",
            "input_size": DEMO_INPUT,
        },
        "augment": {"flip": True, "scale_factor": 0.25, "rotation_factor": 30.0, "rotation_prob": 0.6,
                    "half_body_prob": 0.0},
        "train": {"epochs": 6, "batch_size": 32, "optimizer": "adam", "lr": 2e-3, "lr_schedule": "cosine",
                  "warmup_iters": 50, "workers": 1, "eval_every": 1, "checkpoint_every": 0,
                  "time_limit": seconds, "seed": 0, "device": "cpu"},
        "test": {"metric": "pck", "pck_alpha": 0.2, "flip_test": True, "batch_size": 64},
        "output_dir": str(out / "run"),
    }, "<demo>")


def run_demo(out: Path, num_train: Optional[int] = None, num_val: Optional[int] = None, seconds: Optional[float] = None,
             seed: int = 0, progress: bool = True) -> Dict[str, Any]:
    import torch

    num_train = num_train or 3000
    num_val = num_val or 300
    seconds = seconds or 480.0
    out = Path(out)
    start = time.time()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"posekit demo: generating {num_train} training and {num_val} held-out synthetic images in {out / 'data'}")
    splits = synthetic_splits(out / "data", num_train=num_train, num_val=num_val, seed=seed)
    cfg = demo_config(out, seconds)
    cfg.train.seed = seed
    print(f"training {cfg.model.name} ({cfg.data.input_size[0]}x{cfg.data.input_size[1]} input) on CPU for up to "
          f"{cfg.train.epochs} epochs or {seconds:.0f} s")
    result = train(cfg, progress=progress, val_records=splits["val"])

    model = build_model(cfg, load=False)
    load_weights(model, result.checkpoint / "weights.safetensors")
    metrics = evaluate_model(cfg, model, splits["val"], progress=False)
    print(f"\nheld-out PCK@{cfg.test.pck_alpha} (torso-normalised, flip test) on {len(splits['val'])} images:")
    print(f"{'joint':<12} {'PCK':>6}")
    for name, value in metrics["per_joint"].items():
        print(f"{name:<12} {value * 100:6.1f}")
    print(f"{'mean':<12} {metrics['pck'] * 100:6.1f}")

    preds = run_inference(cfg, model, splits["val"][:16], progress=False)
    tiles = []
    for record, keypoints, scores in zip(splits["val"][:16], preds.keypoints, preds.scores):
        image = read_image(record.image_path)
        tiles.append(draw_skeleton(image, keypoints, SYNTHETIC, scores=scores, score_threshold=0.2, rgb=True))
    predictions_png = out / "predictions.png"
    save_image(predictions_png, make_grid(tiles, columns=4))

    # Loss and held-out PCK in two panels: on one axis (as before) the loss had to be scaled to be seen at all.
    curve_png = out / "training_curve.png"
    plot_learning_curve(result.history, curve_png,
                        title=f"posekit demo: {cfg.model.name} on synthetic figures (held-out PCK@{cfg.test.pck_alpha})")
    elapsed = time.time() - start
    print(f"\nwrote {predictions_png} and {curve_png}; weights in {result.checkpoint}")
    print(f"demo finished in {elapsed:.0f} s")
    return {"pck": metrics["pck"], "per_joint": metrics["per_joint"], "seconds": elapsed, "history": result.history}
