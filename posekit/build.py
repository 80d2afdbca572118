"""The one wiring from a Config to objects: the model (with its pretrained backbone or weights), its supervised
outputs and their codecs, the keypoint set, the person records of a split and the top-down dataset.

Training, evaluation, the predictor and the benchmarks all build through here, so a setting in the YAML reaches
its use along one path.
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, List, Optional, Sequence, Tuple

from torch import nn

from .codecs import HeatmapCodec, OutputSpec, build_codec
from .config import Config
from .data.coco import read_coco_detections
from .data.cocostyle import check_format_skeleton, cocostyle_image_index, read_cocostyle
from .data.dataset import TopDownDataset
from .data.flic import read_flic_h5
from .data.lsp import LSP_TRAIN_COUNT, lsp_standard_split
from .data.mpii import read_mpii_h5, read_mpii_json, read_mpii_release_mat
from .data.records import PersonRecord
from .data.topdown import TopDownCrop
from .errors import CheckpointError, ConfigError
from .models import create_model
from .skeletons import AUTO, Skeleton, coco_file_skeleton, get_skeleton, is_skeleton_file, load_skeleton_file
from .weightfiles import load_weights, read_state_dict


def build_model(cfg: Config, load: bool = True) -> nn.Module:
    """The configured model (with its backbone or whole weights when ``load``). A config whose
    model.num_keypoints is null gets its keypoint set's count written in (:func:`model_num_keypoints`), so that
    what reads the config afterwards (checkpoint metadata, the saved config.yaml) sees the number."""
    cfg.model.num_keypoints = model_num_keypoints(cfg)
    model = create_model(cfg.model.name, num_keypoints=cfg.model.num_keypoints, **cfg.model.kwargs)
    if load and cfg.model.pretrained:
        state = read_state_dict(cfg.model.pretrained)
        own = model.state_dict()
        usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape and not k.startswith("final_layer")}
        if not usable:
            raise CheckpointError(f"no backbone key of {cfg.model.name} found", cfg.model.pretrained)
        model.load_state_dict(usable, strict=False)
    if load and cfg.model.weights:
        load_weights(model, cfg.model.weights)
    return model


def output_specs(model: nn.Module, cfg: Config) -> List[OutputSpec]:
    """The model's declared outputs with the config's one sigma knob applied.

    ``model.sigma`` (null: the sigmas the model declares) is the final output's sigma; the other outputs that carry
    one keep their declared ratio to it. A builder's ``sigma`` argument (``create_model(name, sigma=3.0)``) would
    set the same number, so ``model.kwargs.sigma`` is refused; so is ``model.sigma`` for kernel-based targets
    (MSPN), which have no sigma to set.
    """
    if "sigma" in cfg.model.kwargs:
        raise ConfigError("the heatmap sigma has one knob, model.sigma: move the value there", "model.kwargs.sigma")
    specs = list(model.outputs)
    sigma = cfg.model.sigma
    if sigma is None:
        return specs
    final = specs[-1]
    if not final.carries_sigma:
        raise ConfigError(f"{cfg.model.name}'s {final.target!r} targets are set by a kernel size (OutputSpec.kernel), "
                          f"not a sigma: remove model.sigma", "model.sigma")
    factor = sigma / final.sigma
    # Outputs declared with the final sigma get the knob's value itself (s.sigma * factor can miss it by an ulp,
    # and an ulp above an integer 3 sigma widens the drawn patch).
    return [replace(s, sigma=sigma if s.sigma == final.sigma else s.sigma * factor) if s.carries_sigma else s
            for s in specs]


def build_codecs(specs: Sequence[OutputSpec], cfg: Config) -> List[HeatmapCodec]:
    return [build_codec(s, cfg.input_hw, post_process=cfg.test.post_process, blur_kernel=cfg.test.blur_kernel,
                        decoding=cfg.test.decode)
            for s in specs]


def dataset_skeleton(cfg: Config) -> Skeleton:
    """The keypoint set the model sees: cfg.data.skeleton, reduced to cfg.data.keypoint_subset if given.

    data.skeleton is a built-in set's name, a keypoint-set file (.yaml/.yml/.json, docs/keypoints.md) or ``auto``:
    the person category of the COCO-format data.train_ann (data.val_ann where the training file is absent).
    Files are read once per version (skeletons caches them)."""
    spec = cfg.data.skeleton
    check_format_skeleton(cfg.data.format, spec)
    if spec == AUTO:
        skeleton = coco_file_skeleton(_auto_skeleton_source(cfg))
    elif is_skeleton_file(spec):
        skeleton = load_skeleton_file(spec)
    else:
        skeleton = get_skeleton(spec)
    if cfg.data.keypoint_subset is not None:
        skeleton = skeleton.subset(cfg.data.keypoint_subset)
    return skeleton


def _auto_skeleton_source(cfg: Config) -> str:
    """The annotation file data.skeleton auto reads: data.train_ann, else data.val_ann."""
    if cfg.data.format not in ("coco", "synthetic"):
        raise ConfigError(f"data.skeleton auto reads the keypoint set from a COCO-format annotation file: "
                          f"data.format must be coco or synthetic (it is {cfg.data.format})", "data.skeleton")
    candidates = [join_root(cfg.data.root, a) for a in (cfg.data.train_ann, cfg.data.val_ann) if a]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise ConfigError(f"data.skeleton auto reads the keypoint names from data.train_ann or data.val_ann, but "
                      f"neither is a file ({', '.join(candidates)})", "data.skeleton")


def model_num_keypoints(cfg: Config) -> int:
    """model.num_keypoints, or where it is null, the keypoint count of :func:`dataset_skeleton`."""
    if cfg.model.num_keypoints is not None:
        return int(cfg.model.num_keypoints)
    return dataset_skeleton(cfg).num_keypoints


def join_root(root: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(root, path)


def load_records(cfg: Config, split: str) -> List[PersonRecord]:
    """The person records of one split ('train' or 'val') of the configured dataset."""
    data = cfg.data
    train = split == "train"
    if data.format in ("coco", "synthetic", "crowdpose", "ochuman", "aic", "posetrack"):
        check_format_skeleton(data.format, data.skeleton)
        ann = join_root(data.root, data.train_ann if train else data.val_ann)
        images = join_root(data.root, data.train_images if train else data.val_images)
        if not train and not cfg.test.use_gt_bbox:
            if not cfg.test.det_file:
                raise ConfigError("test.use_gt_bbox is false but test.det_file is not set", "test.det_file")
            records = read_coco_detections(cfg.test.det_file, cocostyle_image_index(data.format, ann), images,
                                           score_threshold=cfg.test.image_thre,
                                           category_id=cfg.test.det_category_id,
                                           num_keypoints=model_num_keypoints(cfg), image_ids=cfg.test.image_ids,
                                           skip_unknown_images=cfg.test.det_skip_unknown_images,
                                           max_per_image=cfg.test.det_max_per_image)
        else:
            records = read_cocostyle(data.format, ann, images, train=train)
            if not train and cfg.test.image_ids is not None:
                wanted = set(cfg.test.image_ids)
                records = [r for r in records if r.image_id in wanted]
    elif data.format == "mpii":
        ann = join_root(data.root, data.train_ann if train else data.val_ann)
        image_dir = join_root(data.root, data.train_images if train else data.val_images)
        if ann.endswith(".mat"):
            # The release: its train split to train on; its test split (no joints) to predict on.
            records = read_mpii_release_mat(ann, image_dir, split="train" if train else "test")
        else:
            reader = read_mpii_h5 if ann.endswith(".h5") else read_mpii_json   # Tompson's valid.h5 or HRNet's JSON
            records = reader(ann, image_dir)
    elif data.format == "flic":
        records = read_flic_h5(join_root(data.root, data.train_ann if train else data.val_ann),
                               join_root(data.root, data.train_images if train else data.val_images))
    elif data.format == "lsp":
        holdout = _lsp_holdout(data)
        use_holdout = not train and data.val_split == "holdout"
        # The training half alone is usable where only LSP images 1-1000 are present (as in ../shared/data).
        train_records, test_records = lsp_standard_split(data.root, data.extra_root,
                                                         require_test=not train and not use_holdout)
        lsp_ids = set(range(holdout[0], holdout[1] + 1)) if holdout else set()
        # LSP's own records come first and carry their image number; LSPET's follow (never held out).
        held = [r for r in train_records[:LSP_TRAIN_COUNT] if r.image_id in lsp_ids]
        if train:
            records = [r for i, r in enumerate(train_records) if i >= LSP_TRAIN_COUNT or r.image_id not in lsp_ids]
        else:
            records = held if use_holdout else test_records
    else:
        raise ConfigError(f"data.format must be coco, mpii, flic, lsp, synthetic, crowdpose, ochuman, aic or posetrack, "
                          f"got {data.format!r}", "data.format")
    if data.limit:
        records = records[: data.limit]
    if data.keypoint_subset is not None:
        dataset_skeleton(cfg)   # validates the indices against the keypoint set
        index = list(data.keypoint_subset)
        for r in records:
            if max(index) >= r.keypoints.shape[0]:
                raise ConfigError(f"data.keypoint_subset names joint {max(index)} but the data has "
                                  f"{r.keypoints.shape[0]}", "data.keypoint_subset")
            r.keypoints = r.keypoints[index]
    for r in records[:1]:
        expected = model_num_keypoints(cfg)
        if r.keypoints.shape[0] != expected and cfg.model.num_keypoints is not None:
            raise ConfigError(f"the data has {r.keypoints.shape[0]} keypoints but model.num_keypoints is "
                              f"{cfg.model.num_keypoints}", "model.num_keypoints")
        if r.keypoints.shape[0] != expected:
            raise ConfigError(f"the data has {r.keypoints.shape[0]} keypoints but keypoint set "
                              f"{dataset_skeleton(cfg).name!r} (data.skeleton {cfg.data.skeleton}) has {expected}",
                              "data.skeleton")
    return records


from .config import VAL_SPLITS


def _lsp_holdout(data: Any) -> Optional[Tuple[int, int]]:
    """data.holdout checked: None, or (first, last) LSP image numbers within the training half."""
    if data.val_split not in VAL_SPLITS:
        raise ConfigError(f"data.val_split must be {' or '.join(VAL_SPLITS)}, got {data.val_split!r}", "data.val_split")
    if data.holdout is None:
        if data.val_split == "holdout":
            raise ConfigError("data.val_split is holdout but data.holdout is not set", "data.holdout")
        return None
    if len(data.holdout) != 2 or not 1 <= data.holdout[0] <= data.holdout[1] <= LSP_TRAIN_COUNT:
        raise ConfigError(f"data.holdout must be [first, last] LSP image numbers within 1-{LSP_TRAIN_COUNT}, "
                          f"got {data.holdout}", "data.holdout")
    return int(data.holdout[0]), int(data.holdout[1])


def make_dataset(cfg: Config, records: Sequence[PersonRecord], codecs: Sequence[Any], train: bool,
                 model: Optional[nn.Module] = None) -> TopDownDataset:
    """The top-down dataset for cfg; a model with ``center_map_sigma`` (CPM) gets its centre-map channel. Its crop
    is :meth:`TopDownCrop.from_config`, the predictor's."""
    crop = TopDownCrop.from_config(cfg, getattr(model, "center_map_sigma", None))
    return TopDownDataset(records, dataset_skeleton(cfg), cfg.input_hw, codecs, train=train, augment=cfg.augment,
                          seed=cfg.train.seed, skip_unreadable=train, reduced_decode=train and cfg.data.reduced_decode,
                          crop=crop)
