"""The pictures of the shipped model in the docs: its skeletons on LSP photos and its learning curve.

    python benchmarks/shipped_model_figures.py --lsp ../shared/data/lsp --metrics runs/lite/metrics.jsonl --out docs/images

Photos: LSP holdout images (801-1000: part of LSP's training half, kept out of this model's training; never the
test half), each whole image as the person's box, as `posekit predict photo.jpg` does. The LSP images are Flickr
photos collected by Johnson & Everingham (BMVC 2010) for research use.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from posekit.apps.predictor import PosePredictor
from posekit.viz import make_grid, plot_learning_curve, save_image

PHOTOS = (801, 808, 815, 836, 861, 905, 930, 977)
TILE = 240


def tile(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    scale = TILE / max(h, w)
    resized = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    canvas = np.full((TILE, TILE, 3), 255, np.uint8)
    y, x = (TILE - resized.shape[0]) // 2, (TILE - resized.shape[1]) // 2
    canvas[y:y + resized.shape[0], x:x + resized.shape[1]] = resized
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lsp", required=True)
    parser.add_argument("--metrics", default=None, help="metrics.jsonl of the training run")
    parser.add_argument("--out", default="docs/images")
    args = parser.parse_args()
    out = Path(args.out)
    predictor = PosePredictor.from_pretrained()
    tiles = []
    for number in PHOTOS:
        path = Path(args.lsp) / "images" / f"im{number:04d}.jpg"
        poses = predictor(path)
        tiles.append(tile(predictor.draw(path, poses, score_threshold=0.0)))
    # A white gap between the photos, so that one picture's edge is not read as the next one's.
    save_image(out / "shipped_model_lsp.png", make_grid(tiles, columns=4, pad=8))
    if args.metrics:
        history = [json.loads(line) for line in Path(args.metrics).read_text().splitlines() if line.strip()]
        plot_learning_curve(history, out / "learning_curve_hrnet-lite_lsp.png",
                            title="hrnet-lite_lsp_128x128: training loss and validation PCK@0.2 (LSP 801-1000)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
