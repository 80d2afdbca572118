"""Training data pipeline throughput, before/after in one run: decode + augment + target generation.

    python benchmarks/data_pipeline.py [--samples N] [--workers 0 1 2] [--json OUT] [PIPELINE ...]
    python benchmarks/data_pipeline.py --config CONFIG [CONFIG ...] [--set KEY=VALUE] [--no-reference]
    python benchmarks/data_pipeline.py --config        (a built-in synthetic COCO-size pipeline)

Pipelines (PIPELINE names; default all), on the real data beside the repo (../shared/data):

- ``hrnet_coco``: configs/hrnet-w32_coco_256x192.yaml on the COCO train subset (80 real images, 86 people).
- ``hrnet_mpii``: configs/hrnet-w32_mpii_256x256.yaml with the 2,958 real MPII validation people (centre,
  scale, joints of annot/valid.h5) on stand-in 1280 x 720 JPEGs (MPII's usual size; the shared copy has no
  images), made from the COCO photos resized with bicubic interpolation and saved at quality 90.
- ``mspn_coco``: configs/mspn-4stg_coco_256x192.yaml (16 supervised outputs, 5 distinct kernels) on COCO.
- ``hourglass_mpii``: configs/hourglass-8stk_mpii_256x256.yaml (8 stacks) on the MPII stand-ins.
- ``hrnet_lsp``: configs/hrnet-w32_lsp_256x256.yaml on real LSP + LSPET images (small pictures, 256 x 256 input).

Each is timed three ways (see benchmarks/pipeline_bench.py): "fast" (the dataset as training uses it),
"reference" (the pipeline as it was before: full decode, per-crop float normalisation, previous encoders) and
"per-joint" (reference with the official per-joint target loops); in-process with OpenCV/torch on one thread
(samples/s per core) and through DataLoaders with 0, 1, 2 workers. Absolute figures depend on the machine's
load (other jobs share it); the ratios of one run are the result.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Tuple

from pipeline_bench import bench_data, format_rows, main_from_args, speedups

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]

# name -> (config, overrides, split)
PIPELINES: Dict[str, Tuple[str, List[str], str]] = {
    "hrnet_coco": ("configs/hrnet-w32_coco_256x192.yaml", [f"data.root={SHARED / 'coco'}"], "train"),
    "hrnet_mpii": ("configs/hrnet-w32_mpii_256x256.yaml", [f"data.root={SHARED / 'mpii'}"], "val"),
    "mspn_coco": ("configs/mspn-4stg_coco_256x192.yaml",
                  [f"data.root={SHARED / 'coco'}", "data.train_ann=annotations/person_keypoints_train2017.json",
                   "data.train_images=train2017"], "train"),
    "hourglass_mpii": ("configs/hourglass-8stk_mpii_256x256.yaml", [f"data.root={SHARED / 'mpii'}"], "val"),
    "hrnet_lsp": ("configs/hrnet-w32_lsp_256x256.yaml",
                  [f"data.root={SHARED / 'lsp'}", f"data.extra_root={SHARED / 'lspet'}"], "train"),
}


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipelines", nargs="*", metavar="PIPELINE", help=f"any of {', '.join(PIPELINES)} (default: all)")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None, help="write all rows and the speed-ups to this file")
    parser.add_argument("--config", dest="data", nargs="*", default=None, metavar="CONFIG",
                        help="benchmark these training configs instead of the named pipelines (none given: a built-in "
                             "synthetic COCO-size pipeline)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="--config: override for every config (e.g. data.root=/data/coco)")
    parser.add_argument("--no-reference", action="store_true", help="--config: skip the reference pipeline")
    args = parser.parse_args(argv)
    if args.data is not None:
        return main_from_args(args)
    unknown = [p for p in args.pipelines if p not in PIPELINES]
    if unknown:
        parser.error(f"unknown pipeline {', '.join(unknown)}; known: {', '.join(PIPELINES)}")
    if not SHARED.is_dir():
        print(f"{SHARED} not present: nothing to benchmark")
        return 1
    sources = sorted(str(p) for p in (SHARED / "coco" / "train2017").glob("*.jpg"))
    rows = []
    for name in args.pipelines or list(PIPELINES):
        config, overrides, split = PIPELINES[name]
        rows += bench_data(REPO / config, samples=args.samples, workers=args.workers, overrides=overrides,
                           split=split, rounds=args.rounds, stand_in_source=sources, name=name)
        print(format_rows([r for r in rows if r["pipeline"] == name]), "\n", flush=True)
    print(format_rows(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "speedups": speedups(rows)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
