"""The ``posekit`` command: demo | train | eval | score | predict | convert | export | bench | info | configs.

Errors a user can fix (bad file, bad config, wrong weights) print as one line and exit with status 2;
``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
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
    from .build import load_records
    from .training.learning_curve import learning_curve_writer
    from .training.trainer import train

    cfg = load_config(args.config, args.set)
    if args.output_dir:
        cfg.output_dir = args.output_dir
    val = None
    if cfg.train.eval_every:
        try:
            val = load_records(cfg, "val")
        except PosekitError as exc:
            print(f"no periodic evaluation: {exc}")
    result = train(cfg, resume=args.resume, progress=not args.no_progress, val_records=val,
                   on_epoch_end=learning_curve_writer(cfg.output_dir, title=cfg.model.name))
    if os.environ.get("RANK", "0") == "0":      # under torchrun only rank 0 reports
        print(f"trained {result.steps} steps; checkpoint: {result.checkpoint}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .build import build_model, load_records
    from .deploy.backends import auto_backend, inference_model
    from .evaluation.evaluate import evaluate_model
    from .evaluation.report import format_metrics, write_eval_report
    from .runtime import select_device

    cfg = _eval_config(args)
    device = select_device(cfg.train.device)
    model = build_model(cfg).to(device).eval()
    backend = auto_backend(device) if args.backend == "auto" else args.backend
    if backend != "torch":
        # The numbers a backend gives on this data; plain eager PyTorch (the default) is the reference.
        model = inference_model(model, backend, cfg.input_hw)
    metrics = evaluate_model(cfg, model, load_records(cfg, "val"), progress=not args.no_progress,
                             results_path=Path(args.results) if args.results else None)
    if backend != "torch":
        metrics["backend"] = backend
    print(format_metrics(metrics))
    if backend != "torch":
        print(f"backend: {backend} (the reference is plain eager PyTorch: posekit eval without --backend)")
    written = write_eval_report(cfg, metrics, json_path=args.json)
    if written:
        print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _eval_config(args: argparse.Namespace):
    """The config eval runs: CONFIG (a file or a shipped model's name) with --weights, --det-file and --set."""
    from .models.pretrained import load_config_or_pretrained

    overrides = list(args.set)
    if args.weights:
        overrides.append(f"model.weights={args.weights}")
    if args.det_file:
        overrides += [f"test.det_file={args.det_file}", "test.use_gt_bbox=false"]
    cfg = load_config_or_pretrained(args.config, overrides)
    if args.output_dir:
        cfg.output_dir = args.output_dir
    if not cfg.model.weights:
        raise PosekitError("no weights: pass --weights FILE (or set model.weights)")
    return cfg


def cmd_info(args: argparse.Namespace) -> int:
    from .config import CONFIGS_DIR
    from .deploy.modelcard import describe_model, model_card
    from .fileio import atomic_write_bytes
    from .models import list_models
    from .models.pretrained import PRETRAINED

    if args.pretrained:
        print("\n".join(f"{entry.name}  {entry.summary}" for entry in PRETRAINED.values()))
    elif args.card:
        atomic_write_bytes(args.card, model_card(Path(args.configs) if args.configs else CONFIGS_DIR).encode())
        print(f"wrote {args.card}")
    elif args.model is None:
        print("\n".join(list_models()))
    else:
        print(describe_model(args.model, args.input or (256, 192), args.num_keypoints, bench=args.bench))
    return 0


def cmd_configs(args: argparse.Namespace) -> int:
    from .deploy.modelcard import describe_configs

    print(describe_configs())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .apps.demo import run_demo

    run_demo(Path(args.out), num_train=args.train_images, num_val=args.val_images, seconds=args.seconds,
             seed=args.seed, progress=not args.no_progress)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .models.pretrained import DEFAULT_PRETRAINED, load_config_or_pretrained
    from .apps.predictor import PosePredictor
    from .apps.predict_files import check_inputs, predict_files
    from .apps.tracking import OneEuroSettings

    config, inputs = _predict_config_and_inputs(args.inputs)
    if not inputs:
        raise PosekitError(f"no input: give images, folders or videos after {config}")
    if config is None:
        if args.weights:
            raise PosekitError("--weights needs a CONFIG (posekit predict CONFIG INPUT... --weights FILE)")
        config = DEFAULT_PRETRAINED
    cfg = load_config_or_pretrained(config, args.set)
    images, videos = check_inputs(inputs, args.det_file, args.ann)     # before the model loads
    if args.detector and args.det_file:
        raise PosekitError("--detector and --det-file both give the person boxes: use one of them")
    if args.det_every < 1:
        raise PosekitError(f"--det-every must be 1 or more (run the detector every N frames), got {args.det_every}")
    if args.det_every != 1 and not args.detector:
        raise PosekitError("--det-every says how often --detector runs: give --detector FILE.onnx too")
    detector = None
    if args.detector:
        from .apps.detector import OnnxPersonDetector

        detector = OnnxPersonDetector(args.detector, score_threshold=args.det_score)
    predictor = PosePredictor.from_config(cfg, weights=args.weights, device=args.device,
                                          flip_test=False if args.no_flip else None, backend=args.backend,
                                          detector=detector)
    smoothing = OneEuroSettings(args.min_cutoff, args.beta, args.d_cutoff) if args.smooth else None
    predict_files(predictor, images + videos, args.out, draw=args.draw, draw_threshold=args.draw_threshold,
                  track=args.track, smoothing=smoothing, det_file=args.det_file, ann_file=args.ann,
                  score_threshold=args.score_threshold, progress=not args.no_progress, log=print,
                  warn=lambda line: print(f"posekit: warning: {line}", file=sys.stderr), detector_every=args.det_every)
    return 0


def _predict_config_and_inputs(positionals: List[str]) -> tuple:
    """(config or None, inputs): the first positional is a config when it is a YAML file, a shipped model's or a
    shipped recipe's name; otherwise every positional is an input and the default shipped model predicts."""
    from .config import shipped_config_names
    from .models.pretrained import PRETRAINED

    first = positionals[0]
    named = first in PRETRAINED or first in shipped_config_names()
    if first.lower().endswith((".yaml", ".yml")) or (named and not Path(first).exists()):
        return first, positionals[1:]
    return None, positionals


def cmd_convert(args: argparse.Namespace) -> int:
    import yaml

    from .deploy.convert import convert_checkpoint

    kwargs = {}
    if args.model_kwargs:
        try:
            kwargs = yaml.safe_load(args.model_kwargs)
        except yaml.YAMLError:
            kwargs = None
        if not isinstance(kwargs, dict):
            raise PosekitError(f"--model-kwargs must be a YAML mapping such as '{{width: 16}}', got {args.model_kwargs!r}")
    result = convert_checkpoint(args.source, args.model, args.out, source=args.layout,
                                num_keypoints=args.num_keypoints, model_kwargs=kwargs, base_config=args.config,
                                overrides=args.set)
    print(result.report.describe())
    if result.base_config is not None:
        print(f"base config    {result.base_config}")
    print(f"wrote {result.weights}, {result.config}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from .evaluation.report import format_notes, format_per_joint_table, format_summary_table, write_report
    from .evaluation.scoring import parse_subset, score_files

    joint_ids = None
    if args.joint_ids:
        try:
            joint_ids = [int(v) for v in args.joint_ids.split(",")]
        except ValueError:
            raise PosekitError(f"--joint-ids must be comma-separated joint indices, got {args.joint_ids!r}") from None
    results = score_files(
        args.protocol, args.gt, args.pred, names=args.name or None, alpha=args.alpha, head_boxes=args.head_boxes,
        subset=parse_subset(args.subset) if args.subset else None, one_based=args.one_based, joint_ids=joint_ids,
        torso_from=args.torso_from, order_check=not args.no_order_check,
        low_threshold=0.11 if args.hrnet_mean01 else 0.1)
    print(f"{results[0].metric} ({args.protocol})")
    print(format_summary_table(results))
    per_joint = format_per_joint_table(results)
    if per_joint:
        print("\n" + per_joint)
    print("\n" + format_notes(results))
    if args.out:
        written = write_report(results, args.out)
        print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .deploy.onnx import export_onnx

    if args.format != "onnx":
        raise PosekitError(f"unknown export format {args.format!r}; known: onnx")
    if bool(args.config) == bool(args.model):
        raise PosekitError("name the model with exactly one of --config FILE or --model NAME")
    if args.config:
        from .config import load_config
        from .build import build_model

        cfg = load_config(args.config, args.set)
        model = build_model(cfg, load=False)
        weights = args.weights or cfg.model.weights
        input_hw = args.input or cfg.input_hw
    else:
        from .deploy.modelcard import settings_for
        from .models import MODELS, create_model

        if args.model not in MODELS:
            create_model(args.model)   # raises the unknown-model error with the list of names
        default_hw, default_k, _ = settings_for(args.model)[0]
        model = create_model(args.model, num_keypoints=args.num_keypoints or default_k)
        weights = args.weights
        input_hw = args.input or default_hw
    if weights:
        from .weightfiles import load_weights

        load_weights(model, weights)
    elif not args.random_weights:
        raise PosekitError("no weights: pass --weights FILE (or --random-weights to export an untrained model)")
    path = export_onnx(model.eval(), args.out, tuple(input_hw), opset=args.opset,
                       dynamic_batch=not args.static_batch, exporter=args.exporter, verify=not args.no_verify)
    print(f"wrote {path} ({getattr(model, 'name', args.model)}, {model.num_keypoints} keypoints, input "
          f"{input_hw[0]}x{input_hw[1]}, opset {args.opset}, {'fixed' if args.static_batch else 'dynamic'} batch)")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.data is not None:
        # It times the dataset against its test oracle, which lives with the tests in the repository.
        print("posekit: error: the data-pipeline benchmark is a repository script: "
              "python benchmarks/data_pipeline.py --config CONFIG [--set KEY=VALUE] [--samples N] [--workers 0 1 2]",
              file=sys.stderr)
        return 2
    from .deploy.bench import DEFAULT_MODELS, format_table, run_bench, write_json

    result = run_bench(args.models or list(DEFAULT_MODELS), input_hw=args.input, batches=args.batch,
                       backends=args.backend, threads=args.threads, repeats=args.repeats, warmup=args.warmup,
                       num_keypoints=args.num_keypoints, weights=args.weights, ceiling=not args.no_ceiling,
                       log=None if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True)))
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    return 0


# auto and the names of posekit.deploy.backends.BACKENDS, written out so that parsing the command line imports no torch.
BACKEND_CHOICES = ["auto", "torch", "torch-channels-last", "torch-folded", "torch-bf16", "onnxruntime", "openvino",
                   "openvino-bf16"]


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
    p.add_argument("config", help="a YAML file or a shipped recipe's name (posekit configs lists them)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in the output folder")
    p.add_argument("--output-dir", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate weights on a config's validation data")
    p.add_argument("config", help="a YAML file, a shipped model's name (posekit info --pretrained: its config and "
                                  "weights) or a shipped recipe's name (posekit configs)")
    p.add_argument("--weights", default=None, help="posekit .safetensors or an official .pth")
    p.add_argument("--det-file", default=None, help="COCO detection results JSON (instead of ground-truth boxes)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--output-dir", default=None)
    p.add_argument("--results", default=None, help="where to write the COCO results JSON")
    p.add_argument("--json", default=None, help="also write the metrics as JSON here")
    p.add_argument("--backend", default="torch", choices=BACKEND_CHOICES,
                   help="evaluate through an inference backend (default torch: plain eager PyTorch, the reference); "
                        "e.g. the score of your weights under torch-bf16 or openvino-bf16 before predicting with it")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="poses in images or videos (each whole image/frame as one person, or boxes "
                                       "from detections); --track follows people through a video")
    p.add_argument("inputs", nargs="+", metavar="[CONFIG] INPUT",
                   help="optionally first a config (YAML file, a shipped model's name or a shipped recipe's name; "
                        "default: the shipped model, posekit info --pretrained), then image files, video files "
                        "(OpenCV: .mp4, .avi, ...) and/or folders of them")
    p.add_argument("--weights", default=None, help="posekit .safetensors or an official .pth (default: model.weights)")
    p.add_argument("--det-file", default=None, help="COCO detection results JSON: one pose per person box "
                   "(for a video: image_id = the 0-based frame index)")
    p.add_argument("--ann", default=None, help="COCO annotation JSON naming the images of --det-file (matched by file name)")
    p.add_argument("--score-threshold", type=float, default=0.0, help="drop detections scoring below this")
    p.add_argument("--detector", default=None, metavar="FILE.onnx", help="person detector: a YOLOX (rtmlib / "
                   "MMDeploy) or Ultralytics YOLOv8/11 ONNX file, run where no --det-file gives the boxes")
    p.add_argument("--det-score", type=float, default=0.3, help="--detector: keep people scoring above this")
    p.add_argument("--det-every", type=int, default=1, metavar="N", help="--detector in videos and tracked image "
                   "sequences: detect on every N-th frame, the tracker carries the people in between")
    p.add_argument("--out", default="posekit-predictions", help="output folder (default: ./posekit-predictions)")
    p.add_argument("--draw", action="store_true", help="also write each image with its skeletons to OUT/drawn/")
    p.add_argument("--draw-threshold", type=float, default=0.3, help="hide joints scoring below this when drawing")
    p.add_argument("--no-flip", action="store_true", help="no flip test (about twice as fast)")
    p.add_argument("--track", action="store_true", help="pose tracking (HRNet 4.3: optical-flow box propagation, "
                   "OKS greedy matching): track ids in every output; a folder of images is taken as one sequence")
    p.add_argument("--smooth", action="store_true", help="One-Euro smoothing of tracked keypoints (implies --track)")
    p.add_argument("--min-cutoff", type=float, default=1.0, help="One-Euro cutoff at rest, Hz (lower: smoother)")
    p.add_argument("--beta", type=float, default=0.01, help="One-Euro speed coefficient (higher: less lag in motion)")
    p.add_argument("--d-cutoff", type=float, default=1.0, help="One-Euro cutoff of the speed estimate, Hz")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--backend", default="auto", choices=BACKEND_CHOICES,
                   help="inference backend (docs/benchmarks.md); auto: the fastest exact one here; an .onnx "
                        "--weights file always runs on onnxruntime")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("info", help="parameters and multiply-adds of a model (no MODEL: list the models)")
    p.add_argument("model", nargs="?")
    p.add_argument("--input", type=_parse_hw, default=None, help="input size HxW (default 256x192)")
    p.add_argument("--num-keypoints", type=int, default=17)
    p.add_argument("--bench", action="store_true", help="also time a CPU forward at batch 1 and 8")
    p.add_argument("--pretrained", action="store_true", help="list the trained models shipped in the package")
    p.add_argument("--card", default=None, metavar="FILE", help="write the model card (every model, Markdown) to FILE")
    p.add_argument("--configs", default=None, help="config folder whose recipes go into the model card "
                                                   "(default: the recipes shipped in the package)")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("configs", help="list the recipes shipped in the package (a CONFIG argument may name one)")
    p.set_defaults(func=cmd_configs)

    p = sub.add_parser("convert", help="official / MMPose weights -> posekit safetensors + config")
    p.add_argument("source", help="weights file (.pth, .pth.tar, .safetensors)")
    p.add_argument("--model", required=True, help="posekit model name (posekit info lists them)")
    p.add_argument("--num-keypoints", type=int, default=None, help="K (default: read from the file's output layer)")
    p.add_argument("--from", dest="layout", default="auto", choices=["auto", "official", "mmpose", "mspn"],
                   help="key layout of the file (default: detected from the key names)")
    p.add_argument("--out", required=True, help="output folder for weights.safetensors and config.yaml")
    p.add_argument("--config", default=None, help="base config, a YAML file or a shipped recipe's name (default: "
                                                  "the shipped recipe of this model and K)")
    p.add_argument("--model-kwargs", default=None, metavar="YAML", help="builder options, e.g. '{width: 16}'")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a value of the written config")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("score", help="score a predictions file against ground truth (no model; docs/scoring.md)")
    p.add_argument("--protocol", required=True, choices=["mpii", "lsp", "flic", "coco"])
    p.add_argument("--gt", required=True, help="ground truth: MPII valid.h5 / gt_valid.mat / annolist .mat / HRNet JSON, "
                   "LSP joints.mat, FLIC valid.h5 / examples.mat, COCO annotation JSON")
    p.add_argument("--pred", required=True, action="append", help="predictions (.json .npy .npz .mat .h5; COCO: "
                   "results JSON); repeat to compare several")
    p.add_argument("--name", action="append", default=[], help="label of each --pred in tables and plots (repeat)")
    p.add_argument("--out", default=None, help="write scores.md/.csv/.json, per_joint.csv/.png/.svg and pck_curve.png/.svg here")
    p.add_argument("--alpha", type=float, default=None, help="threshold (default: 0.5 for MPII PCKh, 0.2 for LSP/FLIC PCK)")
    p.add_argument("--head-boxes", default=None, help="MPII: head sizes from this valid.h5 / gt_valid.mat / annolist .mat")
    p.add_argument("--subset", default=None, metavar="FIRST-LAST",
                   help="score people FIRST..LAST (1-based, inclusive) of the GT file, e.g. 1001-2000 for the LSP test half")
    origin = p.add_mutually_exclusive_group()
    origin.add_argument("--one-based", dest="one_based", action="store_const", const=True, default=None,
                        help="predictions are 1-based (Matlab); default for .mat and .h5")
    origin.add_argument("--zero-based", dest="one_based", action="store_const", const=False,
                        help="predictions are 0-based; default for .json, .npy, .npz")
    p.add_argument("--joint-ids", default=None, metavar="I,J,...",
                   help="dataset joint index of each stored column (e.g. MPII without pelvis/thorax: 0,1,2,3,4,5,8,9,10,11,12,13,14,15)")
    p.add_argument("--torso-from", default="gt", choices=["gt", "prediction"],
                   help="LSP/FLIC torso normaliser from the ground truth (default) or the prediction (FLIC release quirk)")
    p.add_argument("--hrnet-mean01", action="store_true", help="MPII Mean@0.1 at 0.11, as HRNet's code computes it")
    p.add_argument("--no-order-check", action="store_true", help="score even when another joint order fits far better")
    p.set_defaults(func=cmd_score)
    p = sub.add_parser("export", help="export a model's final heatmaps to ONNX (dynamic batch)")
    p.add_argument("--config", default=None, help="config whose model (and model.weights) to export: a YAML file "
                                                  "or a shipped recipe's name")
    p.add_argument("--model", default=None, help="or a model name (see `posekit info`)")
    p.add_argument("--weights", default=None, help="posekit .safetensors or an official .pth")
    p.add_argument("--random-weights", action="store_true", help="allow exporting without weights (benchmarks)")
    p.add_argument("--format", default="onnx", help="export format (onnx)")
    p.add_argument("--out", required=True, help="output file, e.g. model.onnx")
    p.add_argument("--input", type=_parse_hw, default=None,
                   help="input size HxW (default: the config's, or the model's paper setting)")
    p.add_argument("--num-keypoints", type=int, default=None, help="with --model: keypoint count")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--static-batch", action="store_true", help="fix the batch size to 1 instead of a dynamic axis")
    p.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript",
                   help="torch's ONNX exporter (default torchscript: fast and exact on every family)")
    p.add_argument("--no-verify", action="store_true", help="skip running the file once against PyTorch")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("bench", help="inference latency / throughput / GFLOP/s per model, backend and batch size")
    p.add_argument("models", nargs="*", metavar="MODEL", help="model names (default: hrnet_w32 simplebaseline_res50)")
    p.add_argument("--input", type=_parse_hw, default=None, help="input size HxW (default: each model's paper setting)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes (default: 1 8)")
    p.add_argument("--backend", nargs="+", default=["torch,torch-channels-last,torch-folded,torch-bf16,onnxruntime"],
                   help="comma-separated backends: torch (fp32 eager, the reference), torch-channels-last, torch-folded "
                        "(BN folded + channels-last), torch-bf16 (folded + channels-last + bf16 autocast, edge layers "
                        "fp32), onnxruntime, openvino and openvino-bf16 (the openvino extra)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch and ONNX Runtime")
    p.add_argument("--repeats", type=int, default=10, help="timed rounds (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per backend first")
    p.add_argument("--num-keypoints", type=int, default=None)
    p.add_argument("--weights", default=None, help="real weights for the one model named (default: calibrated random)")
    p.add_argument("--no-ceiling", action="store_true", help="skip measuring the conv ceiling")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--data", nargs="*", default=None, help=argparse.SUPPRESS)   # moved to benchmarks/
    p.set_defaults(func=cmd_bench)
    return parser


def _one_line(exc: BaseException) -> str:
    """The error's message on one line. An error raised in a DataLoader worker comes back with the worker's
    traceback in its message ("Caught DataError in DataLoader worker process 0. Original Traceback ..."):
    its last line is the original "module.Class: message"."""
    text = str(exc).strip()
    if "\n" not in text:
        return text
    last = text.splitlines()[-1].strip()
    kind, sep, message = last.partition(": ")
    return message if sep and kind.rsplit(".", 1)[-1] == type(exc).__name__ else last


def _one_line_warnings() -> None:
    """posekit's own warnings as ``posekit: warning: ...`` lines, without Python's file-and-line prefix."""
    from .skeletons import KeypointSetWarning

    show = warnings.showwarning

    def shown(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 (warnings' signature)
        if issubclass(category, KeypointSetWarning):
            print(f"posekit: warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = shown


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        from .data.images import silence_decoder_warnings

        silence_decoder_warnings()   # posekit names the bad image itself; OpenCV's extra lines are noise
        _one_line_warnings()
    try:
        return args.func(args)
    except PosekitError as exc:
        if args.debug:
            raise
        print(f"posekit: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (ValueError, FloatingPointError) as exc:
        if args.debug:
            raise
        print(f"posekit: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("posekit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (posekit configs | head): stop quietly, and keep Python's exit-time flush quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
