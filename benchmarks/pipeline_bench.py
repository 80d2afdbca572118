"""Data-pipeline benchmark: samples/s of decode + augment + target generation, and where the time goes.

:func:`bench_data` builds a config's training dataset exactly as training does (``engine.make_dataset``, the
config's augmentation, ``train=True``) and times it next to :class:`ReferenceDataset`, a copy of the pipeline as
it was before it was made fast (full-size decode, ``cvtColor``, float conversion and normalisation on the crop,
the previous encoders), so that the speed-up is measured in one run on the same machine, interleaved:

- ``in-process``: ``dataset[i]`` in this process (OpenCV and torch limited to one thread: samples/s per core),
  with the time per sample split into stages (decode, warp, targets, normalise, rest): for the library's dataset
  timed from outside, by replaying the same samples step by step with its public pieces (:func:`_fast_stages`);
- ``loader``: a ``torch.utils.data.DataLoader`` with 0, 1, 2 ... worker processes, default collation.
- ``targets``: target generation alone, per sample, for all outputs: per-joint (the official loops,
  :func:`reference_encode`), previous vectorised encoders, and the current ones (identical outputs drawn once).

:func:`reference_encode` also serves as the test oracle of the vectorised encoders. Where a config's images are
missing (the MPII annotations in ../shared/data come without images), :func:`stand_in_records` can point the
records at stand-in JPEGs of the records' image size (MPII: 1280 x 720) made from other photos.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

try:
    import resource
except ImportError:   # Windows
    resource = None  # type: ignore[assignment]

from posekit.config import Config, apply_overrides, load_config
from posekit.errors import ConfigError, DataError
from posekit.data.dataset import TopDownDataset, collate_samples
from posekit.data.images import decode_image, decode_jpeg_rows, jpeg_frame, read_file_bytes, read_image
from posekit.data.records import PersonRecord

# The oracles live with the tests; this benchmark times the library against them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference_pipeline import ReferenceDataset, previous_encode, reference_encode  # noqa: E402

STAGES = ("decode", "warp", "targets", "normalise")
ROW_KEYS = ("pipeline", "implementation", "mode", "workers", "samples", "seconds", "samples_per_s",
            "samples_per_s_per_worker", "cpu_seconds", "samples_per_cpu_s", "ms_total", "ms_decode", "ms_warp",
            "ms_targets", "ms_normalise", "ms_rest", "reduced_fraction", "images")
MPII_IMAGE_WH = (1280, 720)


def stand_in_records(records: Sequence[PersonRecord], out_dir: Union[str, os.PathLike],
                     source_images: Sequence[str] = (), default_wh: Tuple[int, int] = MPII_IMAGE_WH,
                     quality: int = 90) -> List[PersonRecord]:
    """The records pointed at stand-in JPEGs, one per distinct image, of the record's ``image_size`` (else
    ``default_wh``, MPII's usual 1280 x 720): photos from ``source_images`` resized to that size (cycled), or,
    without any, a smooth procedural picture. Only the decoding cost and the crop geometry are meaningful: a
    resized photo has less fine detail than a genuine one of that size, so it decodes somewhat faster."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names: Dict[str, str] = {}
    result = []
    for record in records:
        if record.image_path not in names:
            n = len(names)
            width, height = record.image_size or default_wh
            path = out / f"stand_in_{n:05d}_{width}x{height}.jpg"
            if not path.is_file():
                if source_images:
                    photo = read_image(source_images[n % len(source_images)], rgb=False)
                    picture = cv2.resize(photo, (width, height), interpolation=cv2.INTER_CUBIC)
                else:
                    picture = _procedural_picture(np.random.default_rng(n), height, width)
                if not cv2.imwrite(str(path), picture, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
                    raise DataError("cannot write stand-in image", path)
            names[record.image_path] = str(path)
        result.append(dataclasses.replace(record, image_path=names[record.image_path]))
    return result


def _procedural_picture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth colour fields plus edges and fine texture: a JPEG that decodes roughly like a photo."""
    coarse = rng.integers(0, 256, (max(2, height // 32), max(2, width // 32), 3), dtype=np.uint8)
    picture = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(40):
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.line(picture, p1, p2, tuple(int(c) for c in rng.integers(0, 256, 3)), int(rng.integers(1, 8)))
    noise = rng.normal(0, 6, picture.shape)
    return np.clip(picture + noise, 0, 255).astype(np.uint8)


def _images_missing(records: Sequence[PersonRecord]) -> bool:
    return bool(records) and not os.path.isfile(records[0].image_path)


# -------------------------------------------------------------------------------------------- benchmark

class _Cycled(Dataset):
    """Sample i of a run = (epoch i // len, index i % len) of the dataset: fresh augmentation draws when a run is
    longer than the dataset, the same ones for both implementations."""

    def __init__(self, dataset: Dataset, samples: int):
        self.dataset, self.samples = dataset, samples

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, i: int) -> Dict[str, Any]:
        n = len(self.dataset)
        return self.dataset[(i // n, i % n)]


class _Threads:
    """OpenCV and torch on one thread for the measurement (samples/s per core), restored afterwards."""

    def __enter__(self) -> "_Threads":
        self.cv, self.torch = cv2.getNumThreads(), torch.get_num_threads()
        cv2.setNumThreads(1)
        torch.set_num_threads(1)
        return self

    def __exit__(self, *exc: Any) -> None:
        cv2.setNumThreads(self.cv)
        torch.set_num_threads(self.torch)


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its reaped children (finished DataLoader workers); without the
    ``resource`` module (Windows) this process's only."""
    if resource is None:
        return time.process_time()
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _in_process(impls: Sequence[Tuple[str, Any]], samples: int,
                rounds: int) -> Dict[str, Tuple[float, float, Dict[str, float]]]:
    """(wall seconds, CPU seconds, CPU seconds per stage) of each implementation over ``rounds`` x ``samples``
    samples, measured sample by sample in alternating order so that every implementation sees the same load.
    The stages come from the reference's own stopwatch (``ReferenceDataset.stage_times``); the library's dataset
    has none (see :func:`_fast_stages`)."""
    wall = {label: 0.0 for label, _ in impls}
    cpu = {label: 0.0 for label, _ in impls}
    stages: Dict[str, Dict[str, float]] = {label: {} for label, _ in impls}
    cycled = {label: _Cycled(ds, samples) for label, ds in impls}
    references = [(label, ds) for label, ds in impls if isinstance(ds, ReferenceDataset)]
    try:
        for label, ds in references:
            ds.stage_times = stages[label]
        for _ in range(max(1, rounds)):
            for i in range(samples):
                for label, _ in (impls if i % 2 == 0 else impls[::-1]):
                    start, start_cpu = time.perf_counter(), time.thread_time()
                    cycled[label][i]
                    cpu[label] += time.thread_time() - start_cpu
                    wall[label] += time.perf_counter() - start
    finally:
        for _, ds in references:
            ds.stage_times = None
    return {label: (wall[label], cpu[label], stages[label]) for label, _ in impls}


def _loader(dataset: Any, samples: int, workers: int, batch_size: int) -> Tuple[float, int, float]:
    """(wall seconds, samples) of the steady state, timed from the arrival of the ``max(workers, 1)``-th batch
    (every worker started and delivered once) to the last batch; and the CPU seconds of the whole run, this
    process and its workers together (all ``samples``, worker start-up included)."""
    skip = max(workers, 1)
    if samples < (skip + 1) * batch_size:
        raise ConfigError(f"{samples} samples are too few to time {workers} workers at batch size {batch_size}; "
                          f"use at least {(skip + 1) * batch_size}", "--samples")
    cpu_start = _cpu_seconds()
    collate = collate_samples if isinstance(dataset, TopDownDataset) else None   # the reference: default_collate
    loader = DataLoader(_Cycled(dataset, samples), batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=collate)
    iterator = iter(loader)
    counted, start = 0, time.perf_counter()
    for n, batch in enumerate(iterator):
        if n == skip - 1:
            start = time.perf_counter()
        elif n >= skip:
            counted += len(batch["index"])
    seconds = time.perf_counter() - start
    del batch, iterator, loader   # the workers are joined (and their CPU time counted) when the iterator ends
    return seconds, counted, _cpu_seconds() - cpu_start


def _crop_keypoints(dataset: TopDownDataset, record: PersonRecord, params: Tuple[Any, ...], width: int
                    ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """The joints of a sample in its crop, their visibility and the other people's (what the codecs encode)."""
    center, scale, rotation, flipped = params
    return dataset.keypoints_in_crop(record, dataset.crop.matrix(center, scale, rotation), flipped, width)


def _fast_stages(dataset: TopDownDataset, samples: int) -> Tuple[Dict[str, float], float]:
    """CPU seconds per stage of the library's dataset over ``samples`` samples (the run's draws), and the share
    of samples decoded at reduced size. Timed from outside: each sample is replayed step by step with the
    dataset's public pieces, as ``__getitem__`` takes them: decode (file read, JPEG header, the rows and reduction
    the crop allows), warp (:meth:`TopDownCrop.cut`), normalise (:meth:`TopDownCrop.normalise`) and targets
    (:meth:`TopDownDataset.encode_targets`); the augmentation draws, matrices and keypoints are not counted."""
    crop, n = dataset.crop, len(dataset)
    seconds = dict.fromkeys(STAGES, 0.0)
    reduced = 0
    last = time.thread_time()

    def lap(stage: Optional[str]) -> None:
        nonlocal last
        now = time.thread_time()
        if stage is not None:
            seconds[stage] += now - last
        last = now

    for i in range(samples):
        index, epoch = i % n, i // n
        record = dataset.records[index]
        rng = dataset.sample_rng(index, epoch)
        lap(None)
        data = read_file_bytes(record.image_path)
        frame = jpeg_frame(data) if dataset.reduced_decode else None
        lap("decode")
        reduce = 1
        if frame is None:
            image = decode_image(data, record.image_path, rgb=False)
            lap("decode")
            width = image.shape[1]
            params = dataset.crop_params(record, width, rng)
        else:
            width = frame.width
            params = dataset.crop_params(record, width, rng)
            center, scale, rotation, flipped = params
            reduce = dataset.reduce_factor(scale)
            rows = frame.height
            if frame.rows_cuttable and dataset.partial_decode:
                warp = crop.warp_matrix(crop.matrix(center, scale, rotation), flipped, width)
                rows = min(frame.height, dataset.rows_read(warp, reduce))
            lap(None)
            image = decode_jpeg_rows(data, frame, rows, record.image_path, reduce)
            lap("decode")
        reduced += reduce > 1
        center, scale, rotation, flipped = params
        warp = crop.warp_matrix(crop.matrix(center, scale, rotation), flipped, width, reduce)
        jitter = None
        if rng is not None and dataset.augment.color_jitter:
            jitter = rng.uniform(*dataset.augment.color_jitter, 3).astype(np.float32)
        lap(None)
        pixels = crop.cut(image, warp)
        lap("warp")
        crop.normalise(pixels, pixels_rgb=False, jitter=jitter)
        lap("normalise")
        inputs = _crop_keypoints(dataset, record, params, width)
        lap(None)
        dataset.encode_targets(*inputs)
        lap("targets")
    return seconds, reduced / max(samples, 1)


def build_training_dataset(cfg: Config, split: str = "train") -> TopDownDataset:
    """The training dataset of cfg as :func:`posekit.training.trainer.train` builds it (``split`` picks the records)."""
    from posekit.training import trainer as engine
    from posekit.data.records import attach_others

    model = engine.build_model(cfg, load=False)
    specs = engine.output_specs(model, cfg)
    codecs = engine.build_codecs(specs, cfg)
    records = engine.load_records(cfg, split)
    if not records:
        raise ConfigError(f"no {split} records", cfg.data.root)
    if any(s.people == "all" for s in specs):
        attach_others(records)
    return engine.make_dataset(cfg, records, codecs, train=True, model=model)


def _targets_rows(name: str, dataset: TopDownDataset, samples: int) -> List[Dict[str, Any]]:
    """Target generation alone (all outputs of one sample), per-joint vs previous vs current encoders."""
    n = len(dataset)
    inputs = []
    for i in range(min(samples, 64)):
        record = dataset.records[i % n]
        frame = jpeg_frame(read_file_bytes(record.image_path))
        width = frame.width if frame is not None else read_image(record.image_path, rgb=False).shape[1]
        params = dataset.crop_params(record, width, dataset.sample_rng(i % n, i // n))
        inputs.append(_crop_keypoints(dataset, record, params, width))

    def per_joint(args: Any) -> None:
        for codec in dataset.codecs:
            reference_encode(codec, *args)

    def previous(args: Any) -> None:
        for codec in dataset.codecs:
            previous_encode(codec, *args)

    def current(args: Any) -> None:
        for i, (codec, first) in enumerate(zip(dataset.codecs, dataset.codec_groups)):
            if first == i:
                codec.encode(*args)

    rows = []
    for label, fn in (("per-joint", per_joint), ("reference", previous), ("fast", current)):
        fn(inputs[0])
        start, start_cpu = time.perf_counter(), time.thread_time()
        for args in inputs:
            fn(args)
        cpu = time.thread_time() - start_cpu
        rows.append(_row(name, label, "targets", 0, len(inputs), time.perf_counter() - start, len(inputs), cpu,
                         ms_total=1e3 * cpu / len(inputs), ms_targets=1e3 * cpu / len(inputs)))
    return rows


def _row(pipeline: str, implementation: str, mode: str, workers: int, samples: int, seconds: float,
         cpu_samples: int, cpu_seconds: float, **extra: Any) -> Dict[str, Any]:
    """A result row: ``samples`` timed over ``seconds`` of wall time, ``cpu_samples`` over ``cpu_seconds``."""
    row: Dict[str, Any] = {key: None for key in ROW_KEYS}
    rate = samples / seconds if seconds > 0 else float("inf")
    row.update(pipeline=pipeline, implementation=implementation, mode=mode, workers=workers, samples=samples,
               seconds=round(seconds, 4), samples_per_s=round(rate, 2),
               samples_per_s_per_worker=round(rate / max(workers, 1), 2), cpu_seconds=round(cpu_seconds, 4),
               samples_per_cpu_s=round(cpu_samples / cpu_seconds, 2) if cpu_seconds > 0 else None)
    row.update({k: (round(v, 4) if isinstance(v, float) else v) for k, v in extra.items()})
    return row


def bench_data(
    config: Union[str, os.PathLike, Config],
    samples: int = 256,
    workers: Sequence[int] = (0, 1, 2),
    overrides: Sequence[str] = (),
    split: str = "train",
    batch_size: int = 32,
    reference: bool = True,
    rounds: int = 3,
    stand_in_dir: Optional[Union[str, os.PathLike]] = None,
    stand_in_source: Sequence[str] = (),
    name: Optional[str] = None,
    targets: bool = True,
    partial_decode: bool = True,
) -> List[Dict[str, Any]]:
    """Time the training data pipeline of a config (a path, with ``overrides``, or a Config).

    Returns one dict per measurement with the keys of :data:`ROW_KEYS`:
    ``pipeline`` (``name`` or the config file's stem), ``implementation`` ("fast": the dataset as training uses
    it; "reference": :class:`ReferenceDataset`, the pipeline as it was; "per-joint": the reference with the
    official per-joint target loops of :func:`reference_encode`, in-process and targets rows only), ``mode``
    ("in-process", "loader" or "targets"), ``workers`` (loader processes; 0 otherwise), ``samples``,
    ``seconds``, ``samples_per_s``, ``samples_per_s_per_worker`` (samples_per_s / max(workers, 1)); in-process
    rows add the milliseconds per sample ``ms_total`` and per stage ``ms_decode`` (file read + JPEG decode),
    ``ms_warp``, ``ms_targets`` (all outputs), ``ms_normalise`` (colour order, float, jitter, mean/std,
    layout) and ``ms_rest`` (augmentation draws, affine, tensors, Python), and ``reduced_fraction`` (share of
    samples decoded at reduced size); ``images`` is "real" or "stand-in". In-process, the implementations
    alternate sample by sample over ``rounds`` passes of ``samples`` samples; loaders alternate run by run
    (``rounds`` runs each, the median kept). ``targets`` rows time target generation alone (up to 64 samples).

    Records come from ``split``; where their images are missing they are replaced by stand-in JPEGs
    (:func:`stand_in_records`, written under ``stand_in_dir`` or a temporary folder) and ``images`` says so.
    OpenCV and torch run on one thread in this process while timing (per-core figures); the machine's load
    makes absolute figures noisy, the reference / fast ratio of one run much less so.
    """
    if isinstance(config, Config):
        cfg = apply_overrides(copy.deepcopy(config), overrides)
    else:
        cfg = load_config(config, overrides)
    name = name or (Path(config).stem if not isinstance(config, Config) else cfg.model.name)
    if samples < 1:
        raise ConfigError(f"samples must be >= 1, got {samples}", "--samples")
    dataset = build_training_dataset(cfg, split)
    # Cut JPEG rows below the crop in this process too (training does it in worker processes only): nothing else
    # here writes to stderr while libjpeg's expected warning is sent to /dev/null.
    dataset.partial_decode = partial_decode
    images = "real"
    temp = None
    if _images_missing(dataset.records):
        if stand_in_dir is None:
            temp = tempfile.TemporaryDirectory(prefix="posekit-stand-in-")
            stand_in_dir = temp.name
        needed = dataset.records[: min(len(dataset.records), samples)]
        dataset.records = stand_in_records(needed, stand_in_dir, stand_in_source)
        images = "stand-in"
    try:
        impls: List[Tuple[str, Any]] = [("fast", dataset)]
        if reference:
            impls = [("per-joint", ReferenceDataset(dataset, reference_encode)), ("reference", ReferenceDataset(dataset)),
                     ("fast", dataset)]
        rows: List[Dict[str, Any]] = []
        with _Threads():
            _in_process(impls, min(samples, len(dataset)), 1)   # the page cache, lazy imports, allocator
            measured = _in_process(impls, samples, rounds)
            fast_stages, reduced = _fast_stages(dataset, samples)
            count = samples * max(1, rounds)
            for label, _ in impls:
                seconds, cpu, stages = measured[label]
                if label == "fast":
                    ms = {f"ms_{k}": 1e3 * fast_stages[k] / samples for k in STAGES}
                else:
                    ms = {f"ms_{k}": 1e3 * stages.get(k, 0.0) / count for k in STAGES}
                ms["ms_total"] = 1e3 * cpu / count
                ms["ms_rest"] = ms["ms_total"] - sum(ms[f"ms_{k}"] for k in STAGES)
                rows.append(_row(name, label, "in-process", 0, count, seconds, count, cpu, **ms,
                                 reduced_fraction=reduced if label == "fast" else 0.0, images=images))
            loaded = [(label, ds) for label, ds in impls if label != "per-joint"]
            for w in workers:
                runs: Dict[str, List[Tuple[float, int, float]]] = {label: [] for label, _ in loaded}
                for r in range(max(1, rounds)):
                    for label, ds in (loaded if r % 2 == 0 else loaded[::-1]):
                        runs[label].append(_loader(ds, samples, int(w), batch_size))
                for label, _ in loaded:
                    # The run of median wall rate; the CPU time of all runs.
                    seconds, counted, _ = sorted(runs[label], key=lambda run: run[1] / run[0])[len(runs[label]) // 2]
                    cpu = sum(run[2] for run in runs[label]) / len(runs[label])
                    rows.append(_row(name, label, "loader", int(w), counted, seconds, samples, cpu, images=images))
            if targets:
                rows += [dict(r, images=images) for r in _targets_rows(name, dataset, samples)
                         if reference or r["implementation"] == "fast"]
        return rows
    finally:
        if temp is not None:
            temp.cleanup()


# ------------------------------------------------------------------------------------------------- report

def speedups(rows: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """fast / reference for each (pipeline, mode, workers) measured both ways: ``speedup`` in samples per
    CPU-second (robust on a shared machine), ``wall_speedup`` in samples/s, and ``speedup_vs_per_joint``."""
    table: Dict[Tuple[str, str, int], Dict[str, Dict[str, Any]]] = {}
    for row in rows:
        table.setdefault((row["pipeline"], row["mode"], row["workers"]), {})[row["implementation"]] = row
    out = []
    for (pipeline, mode, w), impls in table.items():
        fast, ref = impls.get("fast"), impls.get("reference")
        if not fast or not ref or not ref["samples_per_cpu_s"] or not ref["samples_per_s"]:
            continue
        entry = {"pipeline": pipeline, "mode": mode, "workers": w,
                 "speedup": round(fast["samples_per_cpu_s"] / ref["samples_per_cpu_s"], 2),
                 "wall_speedup": round(fast["samples_per_s"] / ref["samples_per_s"], 2)}
        joint = impls.get("per-joint")
        if joint and joint["samples_per_cpu_s"]:
            entry["speedup_vs_per_joint"] = round(fast["samples_per_cpu_s"] / joint["samples_per_cpu_s"], 2)
        out.append(entry)
    return out


def format_rows(rows: Sequence[Dict[str, Any]]) -> str:
    """A plain-text table of :func:`bench_data` rows and the speed-ups."""
    header = (f"{'pipeline':<16} {'impl':<9} {'mode':<10} {'w':>2} {'smp/cpu-s':>9} {'smp/s':>7} {'/worker':>7} "
              f"{'cpu ms':>7} {'decode':>6} {'warp':>5} {'target':>6} {'norm':>5} {'rest':>5} {'reduced':>7}")
    lines = [header, "-" * len(header)]

    def num(v: Any, fmt: str) -> str:
        return format(v, fmt) if isinstance(v, (int, float)) else "-".rjust(int(fmt.split(".")[0]))

    for r in rows:
        lines.append(f"{r['pipeline']:<16} {r['implementation']:<9} {r['mode']:<10} {r['workers']:>2} "
                     f"{num(r['samples_per_cpu_s'], '9.1f')} {num(r['samples_per_s'], '7.1f')} "
                     f"{num(r['samples_per_s_per_worker'], '7.1f')} {num(r['ms_total'], '7.2f')} "
                     f"{num(r['ms_decode'], '6.2f')} {num(r['ms_warp'], '5.2f')} {num(r['ms_targets'], '6.2f')} "
                     f"{num(r['ms_normalise'], '5.2f')} {num(r['ms_rest'], '5.2f')} {num(r['reduced_fraction'], '7.2f')}")
    ratios = speedups(rows)
    if ratios:
        lines.append("")
        lines.append("fast / reference, same run (samples per CPU-second; wall-clock samples/s in brackets):")
        for s in ratios:
            extra = f"; vs per-joint targets {s['speedup_vs_per_joint']:.2f}x" if "speedup_vs_per_joint" in s else ""
            lines.append(f"  {s['pipeline']:<16} {s['mode']:<10} workers={s['workers']}: {s['speedup']:.2f}x "
                         f"({s['wall_speedup']:.2f}x){extra}")
    if "stand-in" in {r.get("images") for r in rows}:
        lines.append("(stand-in images where a pipeline's own images are missing; see benchmarks/pipeline_bench.py)")
    return "\n".join(lines)


def synthetic_config(root: Union[str, os.PathLike], images: int = 32, image_hw: Tuple[int, int] = (480, 640)) -> Config:
    """HRNet-W32's COCO 256 x 192 training setting on ``images`` synthetic figures (COCO-size JPEGs) written to
    ``root``: the benchmark's built-in pipeline when no config is given."""
    from posekit.data.synthetic import ANNOTATION_FILE, generate_synthetic

    generate_synthetic(root, images, seed=0, image_size=image_hw)
    cfg = Config()
    cfg.model.num_keypoints = 14
    cfg.data.format, cfg.data.skeleton, cfg.data.root = "synthetic", "synthetic", str(root)
    cfg.data.train_ann, cfg.data.train_images = ANNOTATION_FILE, "."
    return cfg


def main_from_args(args: Any) -> int:
    """``python benchmarks/data_pipeline.py --config [CONFIG ...] [--samples N] [--workers 0 1 2]``.

    Reads ``args.data`` (a config path or a list of them; None or empty: the built-in synthetic pipeline of
    :func:`synthetic_config`), and where the parser defines them ``args.samples`` (int, default 256),
    ``args.workers`` (ints, default 0 1 2), ``args.set`` (``key=value`` overrides for every config),
    ``args.split`` ("train"), ``args.batch_size`` (32), ``args.no_reference`` (skip the reference pipeline),
    ``args.stand_in_source`` (a folder of JPEGs for stand-in images) and ``args.json`` (write the rows there).
    """
    import json

    data = getattr(args, "data", None)
    configs = [data] if isinstance(data, (str, os.PathLike)) else list(data or [])
    configs = [c for c in configs if str(c)]
    samples = int(getattr(args, "samples", None) or 256)
    workers = [int(w) for w in (getattr(args, "workers", None) or (0, 1, 2))]
    source = getattr(args, "stand_in_source", None)
    common = dict(samples=samples, workers=workers, overrides=list(getattr(args, "set", None) or []),
                  split=getattr(args, "split", None) or "train", batch_size=int(getattr(args, "batch_size", None) or 32),
                  reference=not getattr(args, "no_reference", False),
                  stand_in_source=sorted(str(p) for p in Path(source).glob("*.jpg")) if source else [])
    rows: List[Dict[str, Any]] = []
    if configs:
        for path in configs:
            rows += bench_data(path, **common)
    else:
        with tempfile.TemporaryDirectory(prefix="posekit-bench-data-") as root:
            rows += bench_data(synthetic_config(root), name="synthetic_256x192", **common)
    print(format_rows(rows))
    out = getattr(args, "json", None)
    if out:
        Path(out).write_text(json.dumps({"rows": rows, "speedups": speedups(rows)}, indent=2))
        print(f"wrote {out}")
    return 0


__all__ = ["bench_data", "main_from_args", "synthetic_config", "reference_encode", "previous_encode", "ReferenceDataset",
           "stand_in_records", "build_training_dataset", "speedups", "format_rows", "ROW_KEYS"]
