"""Put a training run's best weights into the package, in fp16 when that costs no accuracy.

    python benchmarks/ship_weights.py runs/lite/best/weights.safetensors --lsp ../shared/data/lsp \
        [--name hrnet-lite_lsp_128x128]

Evaluates the fp32 weights and their fp16 copy on the LSP holdout split (images 801-1000, flip test) with the
shipped model's config. The fp16 copy is written to posekit/weights/NAME.safetensors only if its PCK@0.2 is within
0.1 points of fp32's and the file is at most 10 MiB; otherwise fp32 is written if it fits, else nothing. Prints the
two PCKs, the size and the SHA-256 to record in posekit/models/pretrained.py and the model card.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


from posekit.fileio import file_sha256
from posekit.weightfiles import read_state_dict, save_weights
from posekit.build import build_model, load_records
from posekit.evaluation.evaluate import evaluate_model
from posekit.models.pretrained import DEFAULT_PRETRAINED, WEIGHTS_DIR, get_pretrained
from posekit.config import load_config

MAX_BYTES = 10 * 2**20        # 10 MiB
MAX_PCK_CHANGE = 0.001       # 0.1 points


def holdout_pck(cfg, weights: Path) -> float:
    cfg.model.weights = str(weights)
    model = build_model(cfg).eval()
    return float(evaluate_model(cfg, model, load_records(cfg, "val"), progress=False, write=False)["pck"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("--lsp", required=True)
    parser.add_argument("--name", default=DEFAULT_PRETRAINED)
    args = parser.parse_args()
    cfg = load_config(get_pretrained(args.name).config_path)
    cfg.data.root, cfg.data.val_split = args.lsp, "holdout"
    state = read_state_dict(args.weights)
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    with tempfile.TemporaryDirectory() as folder:
        half_path = Path(folder) / "half.safetensors"
        save_weights(half, half_path, metadata={"dtype": "float16", "source": args.weights.name})
        full_pck, half_pck = holdout_pck(cfg, args.weights), holdout_pck(cfg, half_path)
        print(f"holdout PCK@0.2: fp32 {100 * full_pck:.2f}, fp16 {100 * half_pck:.2f}")
        if abs(full_pck - half_pck) <= MAX_PCK_CHANGE and half_path.stat().st_size <= MAX_BYTES:
            chosen, data = "fp16", half_path.read_bytes()
        elif args.weights.stat().st_size <= MAX_BYTES:
            chosen, data = "fp32", args.weights.read_bytes()
        else:
            print("neither fits: fp16 changes the PCK and fp32 is over 10 MiB", file=sys.stderr)
            return 1
    target = WEIGHTS_DIR / f"{args.name}.safetensors"
    target.write_bytes(data)
    print(f"wrote {target} ({chosen}, {len(data):,} bytes), SHA-256 {file_sha256(target)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
