"""The one place each for Matlab annotation files: MPII's evaluation .mat (gt_valid / annolist) parsed with the
release reader's annorect parser, LSP/LSPET joints.mat with the layout told by the shape, and the .mat loader
whose errors name the file."""
import math

import numpy as np
import pytest
import scipy.io

from posekit.data.lsp import read_lsp_joints
from posekit.data.mpii import MPII_ABBREVIATIONS, read_mpii_eval_mat, read_mpii_release_mat
from posekit.errors import DataError
from posekit.evaluation.scoring import load_ground_truth
from posekit.fileio import load_mat, mat_variables

from conftest import EMPTY_MAT as EMPTY, mat_structs


def _person(points, box=(11.0, 21.0, 41.0, 61.0)):
    return {"x1": box[0], "y1": box[1], "x2": box[2], "y2": box[3], "scale": 2.0, "objpos": {"x": 100.0, "y": 200.0},
            "annopoints": {"point": mat_structs(points)} if points else EMPTY}


def _annolist_mat(path, people_per_image):
    annolist = mat_structs([{"annorect": mat_structs(people)} for people in people_per_image])
    scipy.io.savemat(path, {"annolist": annolist})
    return path


def test_annolist_hand_computed_and_equal_to_the_release_reader(tmp_path):
    a = _person([{"id": 0, "x": 51.0, "y": 101.0, "is_visible": 1}, {"id": 9, "x": 61.0, "y": 31.0, "is_visible": 0}])
    b = _person([], box=(1.0, 1.0, 4.0, 5.0))        # a person without annopoints still counts, with no joints
    path = _annolist_mat(tmp_path / "detections.mat", [[a, b]])
    people = read_mpii_eval_mat(path)
    assert people.layout == "annolist" and len(people) == 2
    # Matlab 1-based -> 0-based; every annotated joint counts (v = 2), occluded or not.
    np.testing.assert_array_equal(people.keypoints[0, 0], [50.0, 100.0, 2.0])
    np.testing.assert_array_equal(people.keypoints[0, 9], [60.0, 30.0, 2.0])
    assert people.keypoints[0, 2].tolist() == [0.0, 0.0, 0.0] and not people.keypoints[1, :, 2].any()
    assert people.head_size.tolist() == [0.6 * math.hypot(30.0, 40.0), 0.6 * 5.0]
    # The release file holds the same structs under RELEASE: the same joints and head sizes.
    release = {"annolist": mat_structs([{"image": {"name": "a.jpg"}, "annorect": mat_structs([a, b])}]),
               "img_train": np.array([[1]])}
    scipy.io.savemat(tmp_path / "release.mat", {"RELEASE": release})
    records = read_mpii_release_mat(tmp_path / "release.mat", "", split="all")
    np.testing.assert_array_equal(np.stack([r.keypoints[:, :2] for r in records]), people.keypoints[..., :2])
    assert [r.keypoints[0, 2] for r in records] == [2.0, 0.0] and records[0].keypoints[9, 2] == 1.0
    np.testing.assert_allclose([r.extras["head_size"] for r in records], people.head_size, rtol=1e-15)


def test_gt_valid_and_annolist_of_the_same_people_agree(tmp_path):
    a = _person([{"id": 3, "x": 5.0, "y": 6.0}, {"id": 15, "x": 7.5, "y": 8.5}], box=(0.0, 0.0, 3.0, 4.0))
    annolist = read_mpii_eval_mat(_annolist_mat(tmp_path / "annolist.mat", [[a]]))
    pos = np.zeros((16, 2, 1))
    pos[3, :, 0], pos[15, :, 0] = (5.0, 6.0), (7.5, 8.5)
    missing = np.ones((16, 1))
    missing[[3, 15]] = 0
    # Joints listed in reverse MPII order, named by dataset_joints.
    scipy.io.savemat(tmp_path / "gt_valid.mat", {
        "pos_gt_src": pos[::-1], "jnt_missing": missing[::-1], "headboxes_src": np.array([[[0.0], [0.0]], [[3.0], [4.0]]]),
        "dataset_joints": np.array([[n] for n in MPII_ABBREVIATIONS[::-1]], dtype=object)})
    gt_valid = read_mpii_eval_mat(tmp_path / "gt_valid.mat")
    assert gt_valid.layout == "gt_valid"
    np.testing.assert_array_equal(gt_valid.keypoints, annolist.keypoints)
    assert gt_valid.head_size.tolist() == annolist.head_size.tolist() == [3.0]


def test_mpii_eval_mat_errors_name_the_file(tmp_path):
    twice = _person([{"id": 3, "x": 5.0, "y": 6.0}, {"id": 3, "x": 7.0, "y": 8.0}])
    with pytest.raises(DataError, match=r"twice\.mat: .*annolist\(1\)\.annorect\(1\)\.annopoints\.point\(2\): joint 3 "
                                        r"is annotated twice"):
        read_mpii_eval_mat(_annolist_mat(tmp_path / "twice.mat", [[twice]]))
    bad_id = _person([{"id": 16, "x": 5.0, "y": 6.0}])
    with pytest.raises(DataError, match=r"joint id must be 0\.\.15"):
        read_mpii_eval_mat(_annolist_mat(tmp_path / "bad_id.mat", [[bad_id]]))
    scipy.io.savemat(tmp_path / "other.mat", {"joints": np.zeros((3, 14, 2))})
    with pytest.raises(DataError, match=r"other\.mat: not MPII ground truth: no 'pos_gt_src' .* \(keys: joints\)"):
        read_mpii_eval_mat(tmp_path / "other.mat")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DataError, match=r"junk\.mat: not MPII ground truth: cannot read it as a \.mat file"):
        read_mpii_eval_mat(tmp_path / "junk.mat")


def test_read_lsp_joints_tells_the_layout_by_shape(tmp_path):
    lsp = np.zeros((3, 14, 2))
    lsp[0], lsp[1] = 11.0, 21.0
    lsp[2, 5, 1] = 1                                 # LSP: flag 1 = occluded
    scipy.io.savemat(tmp_path / "lsp.mat", {"joints": lsp})
    keypoints, layout = read_lsp_joints(tmp_path / "lsp.mat")
    assert layout == "LSP" and keypoints.shape == (2, 14, 3)
    assert keypoints[1, 5].tolist() == [10.0, 20.0, 1.0] and keypoints[0, 5].tolist() == [10.0, 20.0, 2.0]
    lspet = np.full((14, 3, 1), 31.0)
    lspet[:, 2] = 1                                  # LSPET: flag 1 = visible
    lspet[4, :, 0] = (-1.0, -1.0, 0.0)               # not annotated
    scipy.io.savemat(tmp_path / "lspet.mat", {"joints": lspet})   # one person: Matlab drops the last axis
    keypoints, layout = read_lsp_joints(tmp_path / "lspet.mat")
    assert layout == "LSPET" and keypoints.shape == (1, 14, 3)
    assert keypoints[0, 0].tolist() == [30.0, 30.0, 2.0] and keypoints[0, 4].tolist() == [0.0, 0.0, 0.0]
    # Scoring reads the same keypoints.
    np.testing.assert_array_equal(load_ground_truth("lsp", tmp_path / "lspet.mat").keypoints, keypoints)


def test_load_mat_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="absent.mat: file not found"):
        load_mat(tmp_path / "absent.mat", "an LSP joints.mat")
    (tmp_path / "junk.mat").write_bytes(b"\x00garbage" * 40)
    for read in (load_mat, mat_variables):
        with pytest.raises(DataError, match=r"junk\.mat: not a FLIC examples\.mat: cannot read it as a \.mat file") as info:
            read(tmp_path / "junk.mat", "a FLIC examples.mat")
        assert "\n" not in str(info.value)
    scipy.io.savemat(tmp_path / "two.mat", {"a": np.zeros((2, 3)), "b": np.ones(4)})
    assert mat_variables(tmp_path / "two.mat", "x") == {"a": (2, 3), "b": (1, 4)}
    assert sorted(load_mat(tmp_path / "two.mat", "x", variable_names=["b"])) == ["__globals__", "__header__",
                                                                                 "__version__", "b"]
