"""The ``posekit`` command: demo | train | eval | predict | info.

Errors a user can fix (bad file, bad config, wrong weights) print as one line and exit with status 2;
``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from .errors import PosekitError


def _parse_hw(text: str) -> tuple:
    try:
        h, w = text.lower().split("x")
        return int(h), int(w)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 256x192, got {text!r}") from None


def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .engine import load_records, train

    cfg = load_config(args.config, args.set)
    if args.output_dir:
        cfg.output_dir = args.output_dir
    val = None
    if cfg.train.eval_every:
        try:
            val = load_records(cfg, "val")
        except PosekitError as exc:
            print(f"no periodic evaluation: {exc}")
    result = train(cfg, resume=args.resume, progress=not args.no_progress, val_records=val)
    print(f"trained {result.steps} steps; checkpoint: {result.checkpoint}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .config import load_config
    from .engine import build_model, evaluate_model, load_records, select_device

    overrides = list(args.set)
    if args.weights:
        overrides.append(f"model.weights={args.weights}")
    if args.det_file:
        overrides += [f"test.det_file={args.det_file}", "test.use_gt_bbox=false"]
    cfg = load_config(args.config, overrides)
    if args.output_dir:
        cfg.output_dir = args.output_dir
    if not cfg.model.weights:
        raise PosekitError("no weights: pass --weights FILE (or set model.weights)")
    model = build_model(cfg).to(select_device(cfg.train.device))
    records = load_records(cfg, "val")
    results_path = Path(args.results) if args.results else None
    metrics = evaluate_model(cfg, model, records, progress=not args.no_progress, results_path=results_path)
    print(format_metrics(metrics))
    if args.json:
        Path(args.json).write_text(json.dumps(_json_safe(metrics), indent=2, allow_nan=False))
    return 0


def _json_safe(value):
    """NaN (a joint never labelled) becomes null: strict JSON has no NaN."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and value != value:
        return None
    return value


def format_metrics(metrics: dict) -> str:
    lines = []
    if "table" in metrics:
        return metrics["table"]
    if "per_joint" in metrics:
        lines.append(f"{'joint':<14} PCK")
        for name, value in metrics["per_joint"].items():
            lines.append(f"{name:<14} {value * 100:6.2f}")
        lines.append(f"{'mean':<14} {metrics['pck'] * 100:6.2f}")
        lines.append(f"PCK@{metrics['alpha']} over {metrics['people']} people ({metrics['excluded_people']} without a "
                     "measurable torso left out)")
    else:
        for key, value in metrics.items():
            lines.append(f"{key:<14} {value:.4f}" if isinstance(value, float) else f"{key:<14} {value}")
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from .flops import model_summary
    from .models import list_models

    if args.card:
        from .checkpoints import atomic_write_bytes
        from .modelcard import model_card

        atomic_write_bytes(args.card, model_card(Path(args.configs)).encode())
        print(f"wrote {args.card}")
        return 0
    if args.model is None:
        print("\n".join(list_models()))
        return 0
    hw = args.input or (256, 192)
    summary = model_summary(args.model, hw, num_keypoints=args.num_keypoints)
    print(f"model        {args.model}")
    print(f"input        {hw[0]}x{hw[1]}")
    print(f"parameters   {summary['params']:,}")
    print(f"MACs         {summary['macs']:,}  ({summary['gmacs']:.1f} G, MACs / 2^30 as in the papers' tables)")
    for i, shape in enumerate(summary.get("output_shapes", [])):
        print(f"output {i}     {tuple(shape)}")
    if args.bench:
        from .modelcard import forward_ms

        for batch in (1, 8):
            ms = forward_ms(args.model, hw, args.num_keypoints, batch)
            print(f"CPU forward  batch {batch}: {ms:.1f} ms ({torch.get_num_threads()} threads)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(Path(args.out), num_train=args.train_images, num_val=args.val_images, seconds=args.seconds,
             seed=args.seed, progress=not args.no_progress)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from .checkpoints import atomic_write_bytes
    from .config import load_config
    from .metrics import write_coco_results
    from .predictor import PosePredictor, detections_by_file_name, find_images
    from .viz import save_image

    cfg = load_config(args.config, args.set)
    predictor = PosePredictor.from_config(cfg, weights=args.weights, device=args.device,
                                          flip_test=False if args.no_flip else None)
    images = find_images(args.images)
    if not images:
        raise PosekitError(f"no image files ({', '.join(args.images)})")
    detections = None
    if args.det_file:
        if not args.ann:
            raise PosekitError("--det-file needs --ann: the COCO annotation file whose 'images' name the detections' images")
        detections = detections_by_file_name(args.det_file, args.ann, args.score_threshold)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    entries, coco, drawn_names = [], [], set()
    people = skipped = 0
    chunk = max(1, cfg.test.batch_size)   # several images per call: their crops share batches
    for start in tqdm(range(0, len(images), chunk), desc="predict", disable=args.no_progress, leave=False):
        paths = images[start:start + chunk]
        # Without detections each whole image is one person (its id: its position in the list); with them, an image
        # the annotation file does not name has no id and nobody in it.
        ids_boxes = [(start + n, None) if detections is None else detections.get(p.name, (None, np.zeros((0, 5))))
                     for n, p in enumerate(paths)]
        all_poses = predictor.predict_many(paths, [boxes for _, boxes in ids_boxes])
        for path, (image_id, _), poses, n_skipped in zip(paths, ids_boxes, all_poses, predictor.skipped_per_image):
            entries.append({"file": str(path), "image_id": image_id, "people": [p.to_dict() for p in poses],
                            "skipped_boxes": n_skipped})
            if image_id is not None:
                coco += predictor.to_coco_results(poses, image_id)
            people += len(poses)
            skipped += n_skipped
            if args.draw:
                name = f"{path.stem}.png" if f"{path.stem}.png" not in drawn_names else f"{path.stem}_{len(entries) - 1}.png"
                drawn_names.add(name)
                save_image(out / "drawn" / name, predictor.draw(path, poses, score_threshold=args.draw_threshold))
    atomic_write_bytes(out / "poses.json", json.dumps(entries).encode())
    written = [str(out / "poses.json")]
    if detections is not None:
        written.append(str(write_coco_results(coco, out / "keypoints_results.json")))
    if args.draw:
        written.append(str(out / "drawn"))
    print(f"{len(images)} images, {people} people, {skipped} boxes skipped (empty or outside the image)")
    print("wrote " + ", ".join(written))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posekit", description="2D human pose estimation (HRNet, CPM, hourglass, MSPN)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="generate synthetic figures, train a small HRNet on CPU, evaluate and draw")
    p.add_argument("--out", default="posekit-demo", help="output folder (default: ./posekit-demo)")
    p.add_argument("--train-images", type=int, default=None, help="synthetic training images")
    p.add_argument("--val-images", type=int, default=None, help="synthetic held-out images")
    p.add_argument("--seconds", type=float, default=None, help="training time budget")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train a config")
    p.add_argument("config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in the output folder")
    p.add_argument("--output-dir", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate weights on a config's validation data")
    p.add_argument("config")
    p.add_argument("--weights", default=None, help="posekit .safetensors or an official .pth")
    p.add_argument("--det-file", default=None, help="COCO detection results JSON (instead of ground-truth boxes)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--output-dir", default=None)
    p.add_argument("--results", default=None, help="where to write the COCO results JSON")
    p.add_argument("--json", default=None, help="also write the metrics as JSON here")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="poses in images (each whole image as one person, or boxes from detections)")
    p.add_argument("config")
    p.add_argument("images", nargs="+", help="image files and/or folders of images")
    p.add_argument("--weights", default=None, help="posekit .safetensors or an official .pth (default: model.weights)")
    p.add_argument("--det-file", default=None, help="COCO detection results JSON: one pose per person box")
    p.add_argument("--ann", default=None, help="COCO annotation JSON naming the images of --det-file (matched by file name)")
    p.add_argument("--score-threshold", type=float, default=0.0, help="drop detections scoring below this")
    p.add_argument("--out", default="posekit-predictions", help="output folder (default: ./posekit-predictions)")
    p.add_argument("--draw", action="store_true", help="also write each image with its skeletons to OUT/drawn/")
    p.add_argument("--draw-threshold", type=float, default=0.3, help="hide joints scoring below this when drawing")
    p.add_argument("--no-flip", action="store_true", help="no flip test (about twice as fast)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("info", help="parameters and multiply-adds of a model (no MODEL: list the models)")
    p.add_argument("model", nargs="?")
    p.add_argument("--input", type=_parse_hw, default=None, help="input size HxW (default 256x192)")
    p.add_argument("--num-keypoints", type=int, default=17)
    p.add_argument("--bench", action="store_true", help="also time a CPU forward at batch 1 and 8")
    p.add_argument("--card", default=None, metavar="FILE", help="write the model card (every model, Markdown) to FILE")
    p.add_argument("--configs", default="configs", help="config folder whose recipes go into the model card")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except PosekitError as exc:
        if args.debug:
            raise
        print(f"posekit: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FloatingPointError) as exc:
        if args.debug:
            raise
        print(f"posekit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("posekit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
