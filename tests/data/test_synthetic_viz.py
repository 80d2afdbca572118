"""Synthetic demo data (determinism, geometry, COCO round trip) and the drawing utilities."""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from posekit.data.images import read_image
from posekit.data.synthetic import (
    _background, generate_synthetic, read_synthetic, render_figure, synthetic_splits, write_coco_json,
)
from posekit.data.transforms import flip_keypoints
from posekit.errors import DataError
from posekit.skeletons import SYNTHETIC
from posekit.viz import draw_skeleton, make_grid, plot_curves, save_image

J = {name: i for i, name in enumerate(SYNTHETIC.keypoints)}
ORANGE, BLUE = (0, 128, 255), (255, 128, 0)


def _figures(n, seed=0, size=(128, 128)):
    return [render_figure(np.random.default_rng([seed, i]), size) for i in range(n)]


# ---------------------------------------------------------------- synthetic data

def test_same_seed_same_data_other_seed_other_data(tmp_path):
    a = generate_synthetic(tmp_path / "a", 4, seed=3)
    b = generate_synthetic(tmp_path / "b", 4, seed=3)
    c = generate_synthetic(tmp_path / "c", 4, seed=4)
    for ra, rb, rc in zip(a, b, c):
        assert np.array_equal(read_image(ra.image_path), read_image(rb.image_path))
        assert np.array_equal(ra.keypoints, rb.keypoints) and np.array_equal(ra.box, rb.box)
        assert not np.array_equal(read_image(ra.image_path), read_image(rc.image_path))
        assert not np.allclose(ra.keypoints, rc.keypoints)
    # Image i depends only on (seed, i): a smaller set is a prefix of a larger one.
    small = generate_synthetic(tmp_path / "small", 2, seed=3)
    assert all(np.array_equal(s.keypoints, r.keypoints) for s, r in zip(small, a))


def test_keypoints_inside_image_box_and_on_drawn_pixels():
    height, width = 96, 128
    centre_change = []
    for i, (image, kps, box) in enumerate(_figures(40, seed=7, size=(height, width))):
        assert image.shape == (height, width, 3) and image.dtype == np.uint8
        assert (kps[:, 2] == 2).all()
        assert (kps[:, 0] >= 0).all() and (kps[:, 0] <= width - 1).all()
        assert (kps[:, 1] >= 0).all() and (kps[:, 1] <= height - 1).all()
        x, y, w, h = box
        assert (kps[:, 0] >= x).all() and (kps[:, 0] <= x + w).all()
        assert (kps[:, 1] >= y).all() and (kps[:, 1] <= y + h).all()
        # The background is the first thing drawn from the image's stream, so it can be redrawn alone.
        background = _background(np.random.default_rng([7, i]), height, width).astype(np.int16)
        change = np.abs(image.astype(np.int16) - background).max(axis=2)
        for cx, cy in np.round(kps[:, :2]).astype(int):
            assert change[max(cy - 2, 0):cy + 3, max(cx - 2, 0):cx + 3].max() > 45   # the figure is there
            centre_change.append(change[cy, cx])
        outside = np.ones((height, width), bool)
        outside[int(y):int(np.ceil(y + h)) + 1, int(x):int(np.ceil(x + w)) + 1] = False
        assert change[outside].max() <= 20                   # outside the box: only the noise
    # The joint dot itself stands out from the background almost always (it contrasts with its limb always).
    assert (np.array(centre_change) > 30).mean() >= 0.93


def test_figures_face_the_viewer_so_left_right_survives_flipping():
    # The figure's left is on the image's right; after the mirror-and-swap flip augmentation that
    # still holds, which is what makes left/right learnable with flip augmentation on.
    perm = SYNTHETIC.flip_permutation()
    for _, kps, _ in _figures(200, seed=1, size=(64, 64)):
        flipped = flip_keypoints(kps, 64, perm)
        for pose in (kps, flipped):
            assert pose[J["l_shoulder"], 0] > pose[J["r_shoulder"], 0]
            assert pose[J["l_hip"], 0] > pose[J["r_hip"], 0]
            assert pose[J["head"], 1] < pose[J["neck"], 1] < pose[J["l_hip"], 1]


def test_synthetic_skeleton_flip_definition():
    perm = SYNTHETIC.flip_permutation()
    assert np.array_equal(perm[perm], np.arange(SYNTHETIC.num_keypoints))
    swap = {"l_": "r_", "r_": "l_"}
    for k, name in enumerate(SYNTHETIC.keypoints):
        mirrored = swap[name[:2]] + name[2:] if name[:2] in swap else name
        assert SYNTHETIC.keypoints[perm[k]] == mirrored
    limbs = [frozenset(limb) for limb in SYNTHETIC.limbs]
    mirror = [frozenset(int(perm[i]) for i in limb) for limb in limbs]
    assert set(mirror) == set(limbs)
    # A limb and its mirror image are drawn in the left/right colours, swapped; centre limbs keep theirs.
    colors = dict(zip(limbs, SYNTHETIC.limb_colors))
    for limb, mirrored_limb in zip(limbs, mirror):
        pair = (colors[limb], colors[mirrored_limb])
        assert pair in ((ORANGE, BLUE), (BLUE, ORANGE)) if limb != mirrored_limb else pair[0] == pair[1]
    assert SYNTHETIC.torso == (J["l_shoulder"], J["r_hip"])


def test_coco_json_round_trip(tmp_path):
    records = generate_synthetic(tmp_path / "ds", 5, seed=11, image_size=(64, 80))
    assert sorted(os.listdir(tmp_path / "ds")) == ["annotations.json", "images"]
    back = read_synthetic(tmp_path / "ds")
    assert len(back) == 5
    for r, b in zip(records, back):
        assert b.image_path == r.image_path and os.path.isfile(b.image_path)
        assert np.array_equal(b.keypoints, r.keypoints) and np.array_equal(b.box, r.box)
        assert (b.image_id, b.image_size, b.area) == (r.image_id, (80, 64), r.area)
        assert read_image(b.image_path).shape == (64, 80, 3)
    document = json.loads((tmp_path / "ds" / "annotations.json").read_text())
    assert document["images"][0]["file_name"] == "images/000000.jpg"
    category = document["categories"][0]
    assert category["keypoints"] == list(SYNTHETIC.keypoints)
    assert category["skeleton"][0] == [1, 2]                  # COCO skeletons are 1-based
    assert document["annotations"][0]["num_keypoints"] == 14

    # Rewriting elsewhere keeps the images reachable (absolute names outside the JSON's folder).
    write_coco_json(back, tmp_path / "copy" / "annotations.json")
    again = read_synthetic(tmp_path / "copy")
    assert [r.image_path for r in again] == [r.image_path for r in records]

    from pycocotools.coco import COCO                         # the official reader accepts the file
    coco = COCO(str(tmp_path / "ds" / "annotations.json"))
    assert len(coco.getAnnIds(catIds=[1])) == 5


def test_read_synthetic_reports_bad_files(tmp_path):
    with pytest.raises(DataError, match="annotation file not found") as err:
        read_synthetic(tmp_path)
    assert str(tmp_path) in str(err.value)
    path = tmp_path / "annotations.json"
    path.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        read_synthetic(tmp_path)
    path.write_text(json.dumps({"images": [], "categories": []}))
    with pytest.raises(DataError, match="missing key 'annotations'"):
        read_synthetic(tmp_path)
    image = {"id": 0, "file_name": "a.jpg", "width": 8, "height": 8}
    ann = {"id": 1, "image_id": 0, "keypoints": [0.0] * 6, "bbox": [0, 0, 1, 1], "area": 1.0}
    path.write_text(json.dumps({"images": [image], "annotations": [ann], "categories": []}))
    with pytest.raises(DataError, match="has 2 keypoints, expected 14"):
        read_synthetic(tmp_path)


def test_splits_differ_and_are_reused(tmp_path):
    splits = synthetic_splits(tmp_path, num_train=3, num_val=2, seed=5, image_size=(48, 48))
    assert [len(splits["train"]), len(splits["val"])] == [3, 2]
    assert not np.allclose(splits["train"][0].keypoints, splits["val"][0].keypoints)
    stamp = os.stat(splits["train"][0].image_path).st_mtime_ns
    again = synthetic_splits(tmp_path, num_train=3, num_val=2, seed=5, image_size=(48, 48))
    assert os.stat(again["train"][0].image_path).st_mtime_ns == stamp
    assert np.array_equal(again["val"][1].keypoints, splits["val"][1].keypoints)
    bigger = synthetic_splits(tmp_path, num_train=4, num_val=2, seed=5, image_size=(48, 48))
    assert len(bigger["train"]) == 4


# ---------------------------------------------------------------- viz

def _pose_on_canvas():
    kps = np.zeros((SYNTHETIC.num_keypoints, 3))
    kps[:, 2] = 1.0
    for name, (x, y) in {"head": (50, 15), "neck": (50, 30), "l_shoulder": (65, 35), "r_shoulder": (35, 35),
                         "l_elbow": (80, 50), "r_elbow": (20, 50), "l_wrist": (85, 70), "r_wrist": (15, 70),
                         "l_hip": (60, 65), "r_hip": (40, 65), "l_knee": (62, 80), "r_knee": (38, 80),
                         "l_ankle": (64, 95), "r_ankle": (36, 95)}.items():
        kps[J[name], :2] = (x, y)
    return np.zeros((100, 100, 3), np.uint8), kps


def test_draw_skeleton_draws_limbs_and_hides_low_scores():
    canvas, kps = _pose_on_canvas()
    drawn = draw_skeleton(canvas, kps, SYNTHETIC, thickness=3)
    assert canvas.max() == 0                                  # input untouched
    mid = ((kps[J["l_knee"], :2] + kps[J["l_ankle"], :2]) / 2).astype(int)
    assert tuple(drawn[mid[1], mid[0]]) == ORANGE              # left limb, BGR
    assert drawn[95, 64].any()                                 # l_ankle dot

    scores = np.ones(SYNTHETIC.num_keypoints)
    scores[J["l_ankle"]] = 0.1
    hidden = draw_skeleton(canvas, kps[:, :2], SYNTHETIC, scores=scores, thickness=3)
    assert not hidden[mid[1], mid[0]].any() and not hidden[95, 64].any()
    assert hidden[80, 62].any()                                # l_knee still drawn
    kps_v = kps.copy()
    kps_v[J["l_ankle"], 2] = 0                                 # visibility 0 as the third column hides too
    assert not draw_skeleton(canvas, kps_v, SYNTHETIC, thickness=3)[mid[1], mid[0]].any()
    rgb = draw_skeleton(canvas, kps, SYNTHETIC, thickness=3, rgb=True)
    assert tuple(rgb[mid[1], mid[0]]) == ORANGE[::-1]


def test_make_grid_tiles_and_resizes():
    a = np.full((20, 30, 3), 10, np.uint8)
    b = np.full((40, 60, 3), 200, np.uint8)
    grid = make_grid([a, b, a], columns=2, pad=2, pad_value=255)
    assert grid.shape == (2 * 20 + 3 * 2, 2 * 30 + 3 * 2, 3)
    assert (grid[2:22, 2:32] == 10).all() and (grid[2:22, 34:64] == 200).all()
    assert (grid[24:44, 34:64] == 255).all()                   # empty last cell


def test_plot_curves_writes_decodable_png(tmp_path):
    path = tmp_path / "plots" / "curve.png"
    series = {"loss": [1.0, 0.5, 0.3, float("nan"), 0.2], "pck": [(0, 0.1), (2, 0.6), (4, 0.9)]}
    image = plot_curves(series, path, title="training", xlabel="epoch", ylabel="value", size=(300, 400))
    decoded = cv2.imread(str(path))
    assert decoded is not None and decoded.shape == (300, 400, 3)
    assert np.array_equal(decoded[..., ::-1], image)
    assert (image != 255).any(axis=2).mean() > 0.02            # axes, text and lines were drawn
    assert [p.name for p in path.parent.iterdir()] == ["curve.png"]   # no temporary file left
    assert plot_curves({}, size=(120, 160)).shape == (120, 160, 3)


def test_save_image_errors(tmp_path):
    image = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(DataError, match="cannot encode") as err:
        save_image(tmp_path / "x.notaformat", image)
    assert "x.notaformat" in str(err.value)
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match="cannot write image"):
        save_image(tmp_path / "file" / "x.png", image)
    save_image(tmp_path / "ok.png", image)
    assert cv2.imread(str(tmp_path / "ok.png")).shape == (4, 4, 3)
