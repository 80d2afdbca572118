"""Keypoint sets: joint names, left/right flip pairs, limbs for drawing, OKS sigmas, body halves.

Pure data; knows nothing of images or tensors. Orders are those of the datasets' own files. Besides the built-in
sets (:data:`SKELETONS`), a set can come from a YAML/JSON keypoint-set file (:func:`load_skeleton_file`, format in
docs/keypoints.md) or from a COCO-format annotation file's person category (:func:`coco_file_skeleton`).
"""
from __future__ import annotations

import functools
import json
import os
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import yaml

from .errors import ConfigError, DataError
from .fileio import read_json


@dataclass(frozen=True)
class Skeleton:
    name: str
    keypoints: Tuple[str, ...]
    flip_pairs: Tuple[Tuple[int, int], ...]
    limbs: Tuple[Tuple[int, int], ...]
    upper_body: Tuple[int, ...]
    lower_body: Tuple[int, ...]
    # Per-keypoint OKS sigmas (COCO's definition); None where the dataset has no published ones.
    sigmas: Optional[Tuple[float, ...]] = None
    # Indices (a, b) whose distance normalises PCK (left shoulder - right hip for LSP/FLIC, as in evalLSP).
    torso: Optional[Tuple[int, int]] = None
    # BGR colour for each limb when drawing (left side warm, right side cool, centre green).
    limb_colors: Tuple[Tuple[int, int, int], ...] = field(default=())

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    def flip_permutation(self) -> np.ndarray:
        """Index array p such that flipped[k] = original[p[k]] after mirroring an image."""
        perm = np.arange(self.num_keypoints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def index(self, name: str) -> int:
        return self.keypoints.index(name)

    def subset(self, indices: Sequence[int], name: Optional[str] = None) -> "Skeleton":
        """The keypoint set made of ``indices`` of this one, in that order (e.g. CPM's 14 of MPII's 16 joints).

        Flip pairs, limbs, body halves, sigmas and the torso are kept where all their joints are kept.
        """
        indices = [int(i) for i in indices]
        if len(set(indices)) != len(indices) or not all(0 <= i < self.num_keypoints for i in indices):
            raise ConfigError(f"keypoint subset {indices} must list distinct joints of {self.name} "
                              f"(0..{self.num_keypoints - 1})")
        new = {old: n for n, old in enumerate(indices)}
        pairs = tuple((new[a], new[b]) for a, b in self.flip_pairs if a in new and b in new)
        limbs = [(a, b) for a, b in self.limbs if a in new and b in new]
        keep = [n for n, (a, b) in enumerate(self.limbs) if a in new and b in new]
        for a, b in self.flip_pairs:
            if (a in new) != (b in new):
                raise ConfigError(f"keypoint subset keeps {self.keypoints[a if a in new else b]} without its mirror joint")
        return Skeleton(
            name=name or f"{self.name}[{len(indices)}]",
            keypoints=tuple(self.keypoints[i] for i in indices),
            flip_pairs=pairs,
            limbs=tuple((new[a], new[b]) for a, b in limbs),
            upper_body=tuple(new[i] for i in self.upper_body if i in new),
            lower_body=tuple(new[i] for i in self.lower_body if i in new),
            sigmas=None if self.sigmas is None else tuple(self.sigmas[i] for i in indices),
            torso=(new[self.torso[0]], new[self.torso[1]]) if self.torso and all(t in new for t in self.torso) else None,
            limb_colors=tuple(self.limb_colors[n] for n in keep),
        )


# Where a keypoint name says its side: left/right (any case) opening the name (left_hand, leftHand, LeftHand,
# lefthand) or closing it after a separator or a camel-case step (hand_left, handLeft); l/r set apart by a
# separator (l_wrist, wrist_R); L/R opening a camel-case name (LShoulder, as OpenPose writes them). A closing
# left/right needs the boundary so that words like "upright" are not read as a side.
_SIDE_PATTERNS = (
    re.compile(r"^(left|right)(?=.)", re.IGNORECASE),
    re.compile(r"^(l|r)(?=[_\-. ])", re.IGNORECASE),
    re.compile(r"^([LR])(?=[A-Z][a-z])"),
    re.compile(r"(?<=[_\-. ])(left|right)$", re.IGNORECASE),
    re.compile(r"(?<=[a-z0-9])(Left|Right|LEFT|RIGHT)$"),
    re.compile(r"(?<=[_\-. ])(l|r)$", re.IGNORECASE),
)
_OTHER_SIDE = {"left": "right", "right": "left", "l": "r", "r": "l"}


def _side_word(name: str) -> Optional[re.Match]:
    for pattern in _SIDE_PATTERNS:
        match = pattern.search(name)
        if match:
            return match
    return None


def name_side(name: str) -> str:
    """'l', 'r' or 'c' (centre: no side word) for a keypoint name (see :data:`_SIDE_PATTERNS`)."""
    match = _side_word(name)
    return "c" if match is None else match.group(1)[0].lower()


def mirror_name(name: str) -> Optional[str]:
    """The name of the other side's keypoint (left_hand -> right_hand, LShoulder -> RShoulder, wrist_l -> wrist_r),
    in the same letter case; None for a name without a side word."""
    match = _side_word(name)
    if match is None:
        return None
    word = match.group(1)
    other = _OTHER_SIDE[word.lower()]
    other = other.upper() if word.isupper() else other.capitalize() if word[0].isupper() else other
    return name[:match.start(1)] + other + name[match.end(1):]


def flip_pairs_from_names(names: Sequence[str]) -> Tuple[Tuple[Tuple[int, int], ...], Tuple[str, ...]]:
    """(flip pairs, sided names without a mirror) found from the names' left/right words."""
    index = {n: i for i, n in enumerate(names)}
    pairs: List[Tuple[int, int]] = []
    paired: set = set()
    unpaired: List[str] = []
    for i, n in enumerate(names):
        if i in paired:
            continue
        mirror = mirror_name(n)
        if mirror is None:
            continue
        j = index.get(mirror)
        if j is None or j == i or j in paired:
            unpaired.append(n)
            continue
        pairs.append((i, j))
        paired.update((i, j))
    return tuple(pairs), tuple(unpaired)


def _side_colors(keypoints: Sequence[str], limbs: Sequence[Tuple[int, int]]) -> Tuple[Tuple[int, int, int], ...]:
    colors = []
    for a, b in limbs:
        sides = {name_side(keypoints[a]), name_side(keypoints[b])}
        if sides == {"l"} or sides == {"l", "c"}:
            colors.append((0, 128, 255))    # orange
        elif sides == {"r"} or sides == {"r", "c"}:
            colors.append((255, 128, 0))    # blue
        else:
            colors.append((0, 200, 0))      # green
    return tuple(colors)


def _make(name, keypoints, flip_pairs, limbs, upper, lower, sigmas=None, torso=None) -> Skeleton:
    keypoints = tuple(keypoints)
    limbs = tuple(tuple(l) for l in limbs)
    return Skeleton(
        name=name,
        keypoints=keypoints,
        flip_pairs=tuple(tuple(p) for p in flip_pairs),
        limbs=limbs,
        upper_body=tuple(upper),
        lower_body=tuple(lower),
        sigmas=None if sigmas is None else tuple(float(x) for x in sigmas),
        torso=torso,
        limb_colors=_side_colors(keypoints, limbs),
    )


COCO = _make(
    "coco",
    ["nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow",
     "l_wrist", "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle"],
    [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)],
    # COCO's own 'skeleton' field, 0-based.
    [(15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
     (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6)],
    upper=range(0, 11),   # official HRNet split; MSPN counts the hips as upper too
    lower=range(11, 17),
    sigmas=np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10.0,
    torso=(5, 12),
)

MPII = _make(
    "mpii",
    ["r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax", "upper_neck",
     "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist"],
    [(0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)],
    [(0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9), (10, 11), (11, 12),
     (12, 7), (7, 13), (13, 14), (14, 15)],
    upper=range(7, 16),
    lower=range(0, 7),
    torso=(13, 2),
)

# Order of the LSP README (joints.mat), identical for LSPET.
LSP = _make(
    "lsp",
    ["r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "r_wrist", "r_elbow", "r_shoulder",
     "l_shoulder", "l_elbow", "l_wrist", "neck", "head_top"],
    [(0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9)],
    [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 12), (12, 9), (9, 10), (10, 11),
     (12, 13), (8, 2), (9, 3)],
    upper=range(6, 14),
    lower=range(0, 6),
    torso=(9, 2),          # left shoulder - right hip, as evalLSP_official
)

# The figures drawn by posekit.data.synthetic: a 14-joint stick person.
SYNTHETIC = _make(
    "synthetic",
    ["head", "neck", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist",
     "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle"],
    [(2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (12, 13)],
    [(0, 1), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7), (2, 8), (3, 9), (8, 9), (8, 10),
     (9, 11), (10, 12), (11, 13)],
    upper=range(0, 8),
    lower=range(8, 14),
    torso=(2, 9),
)

# FLIC's 11 annotated upper-body joints in the order of pose-hg-train's annot/*.h5 (examples.mat parts
# 1-7, 10, 13, 14, 17). Left/right as in those files: "l_" is the joint on the image's right (see data/flic.py).
FLIC = _make(
    "flic",
    ["l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist", "l_hip", "r_hip",
     "l_eye", "r_eye", "nose"],
    [(0, 3), (1, 4), (2, 5), (6, 7), (8, 9)],
    [(0, 1), (1, 2), (3, 4), (4, 5), (0, 3), (0, 6), (3, 7), (6, 7), (8, 9), (8, 10), (9, 10)],
    upper=range(0, 11),
    lower=(6, 7),
    torso=(0, 7),          # left shoulder - right hip (MODEC's and CPM's FLIC normaliser)
)

# CrowdPose (Li et al., CVPR'19), order of its annotation files' person category ("head" is the top of the
# head). Sigmas: the official crowdposetools/cocoeval.py computeOks (github.com/Jeff-sjtu/CrowdPose) —
# COCO's for the 12 body joints, 0.79 for head and neck. (Its files' own 'skeleton' field is COCO's, copied
# unchanged, so the limbs are defined here.)
CROWDPOSE = _make(
    "crowdpose",
    ["l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist", "l_hip", "r_hip",
     "l_knee", "r_knee", "l_ankle", "r_ankle", "head_top", "neck"],
    [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)],
    [(12, 13), (13, 0), (13, 1), (0, 2), (2, 4), (1, 3), (3, 5), (0, 6), (1, 7), (6, 7), (6, 8),
     (8, 10), (7, 9), (9, 11)],
    upper=(0, 1, 2, 3, 4, 5, 12, 13),
    lower=range(6, 12),
    sigmas=np.array([.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89, .79, .79]) / 10.0,
    torso=(0, 7),
)

# OCHuman (Zhang et al., CVPR'19) is annotated in COCO's 17 joints and scored with COCO's OKS.
OCHUMAN = replace(COCO, name="ochuman")

# AI Challenger keypoints (Wu et al. 2017), order of the release's keypoint_annotations. Sigmas: the
# official AI_Challenger_2017 Evaluation/keypoint_eval/keypoint_eval.py, whose 'delta' is 2 x these (its
# OKS exp(-d^2 / 2 delta^2 / (area + 1)) equals COCO's form with these sigmas, up to the +1).
AIC = _make(
    "aic",
    ["r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist", "r_hip", "r_knee", "r_ankle",
     "l_hip", "l_knee", "l_ankle", "head_top", "neck"],
    [(0, 3), (1, 4), (2, 5), (6, 9), (7, 10), (8, 11)],
    [(2, 1), (1, 0), (0, 13), (13, 3), (3, 4), (4, 5), (8, 7), (7, 6), (6, 9), (9, 10), (10, 11),
     (12, 13), (0, 6), (3, 9)],
    upper=(0, 1, 2, 3, 4, 5, 12, 13),
    lower=range(6, 12),
    sigmas=[0.01388152, 0.01515228, 0.01057665, 0.01417709, 0.01497891, 0.01402144, 0.03909642,
            0.03686941, 0.01981803, 0.03843971, 0.03412318, 0.02415081, 0.01291456, 0.01236173],
    torso=(3, 6),
)

# PoseTrack 2018 (Andriluka et al., CVPR'18): COCO's 17 slots with head_bottom / head_top in place of the eyes;
# the ears are never annotated. PoseTrack publishes no OKS sigmas (its own metric is head-normalised mAP);
# these are COCO's per slot, as MMPose's posetrack18 dataset info uses for COCO-style AP.
POSETRACK = _make(
    "posetrack",
    ["nose", "head_bottom", "head_top", "l_ear", "r_ear", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow",
     "l_wrist", "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle"],
    [(3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)],
    [(15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
     (7, 9), (8, 10), (0, 1), (0, 2), (1, 5), (1, 6)],
    upper=range(0, 11),
    lower=range(11, 17),
    sigmas=COCO.sigmas,
    torso=(5, 12),
)

SKELETONS: Dict[str, Skeleton] = {s.name: s for s in (COCO, MPII, LSP, SYNTHETIC, FLIC, CROWDPOSE, OCHUMAN, AIC,
                                                      POSETRACK)}


def get_skeleton(name: str) -> Skeleton:
    try:
        return SKELETONS[name]
    except KeyError:
        raise ConfigError(f"unknown keypoint set {name!r}; known: {', '.join(SKELETONS)}") from None


def list_skeletons() -> List[str]:
    return list(SKELETONS)


# ------------------------------------------------------------------------------------------------------------------
# Keypoint sets from files: a keypoint-set file (YAML/JSON) or a COCO-format annotation file's person category
# ------------------------------------------------------------------------------------------------------------------

AUTO = "auto"                                       # data.skeleton: read the set from the COCO annotation file
SKELETON_FILE_SUFFIXES = (".yaml", ".yml", ".json")
# OKS sigma for every keypoint of a set that lists none: the mean of COCO's 17 (0.0669), i.e. a joint of average
# COCO annotation spread. MMPose has no default (its dataset info must list sigmas); Ultralytics uses 1/K, which
# makes OKS looser the fewer keypoints a set has (0.2 for 5). COCO AP depends on these: list measured ones.
UNIFORM_SIGMA = float(np.mean(COCO.sigmas))
# Names of lower-body joints (HRNet's split puts hips, knees and ankles in the lower half); every other joint of a
# set read from a file without upper_body / lower_body counts as upper body.
_LOWER_BODY_WORDS = ("hip", "knee", "ankle", "foot", "feet", "toe", "heel", "leg", "thigh", "shin", "calf", "pelvis")
_FILE_KEYS = ("name", "keypoints", "flip_pairs", "limbs", "sigmas", "upper_body", "lower_body", "torso", "limb_colors")


class KeypointSetWarning(UserWarning):
    """A keypoint set read from a file lacks something that has a stated default (OKS sigmas, a mirror joint)."""


def is_skeleton_file(spec: str) -> bool:
    """Whether a data.skeleton value names a keypoint-set file (rather than a built-in set or ``auto``)."""
    return str(spec).lower().endswith(SKELETON_FILE_SUFFIXES)


def _lower_body_guess(names: Sequence[str]) -> Tuple[int, ...]:
    return tuple(i for i, n in enumerate(names) if any(w in n.lower() for w in _LOWER_BODY_WORDS))


def _torso_guess(names: Sequence[str]) -> Optional[Tuple[int, int]]:
    """(left shoulder, right hip) where the names have both, as LSP's and FLIC's PCK normaliser."""
    def find(side: str, word: str) -> Optional[int]:
        return next((i for i, n in enumerate(names) if name_side(n) == side and word in n.lower()), None)

    a, b = find("l", "shoulder"), find("r", "hip")
    return None if a is None or b is None else (a, b)


def _sigma_warning(source: str) -> None:
    warnings.warn(f"{source}: no OKS sigmas for this keypoint set: {UNIFORM_SIGMA:.4f} (the mean of COCO's) for "
                  f"every keypoint; COCO AP depends on them, list measured ones in a keypoint-set file "
                  f"(docs/keypoints.md)", KeypointSetWarning, stacklevel=3)


def _unpaired_warning(source: str, unpaired: Sequence[str]) -> None:
    if unpaired:
        warnings.warn(f"{source}: {', '.join(map(repr, unpaired))} name a side but have no mirror keypoint: not "
                      f"swapped by flips", KeypointSetWarning, stacklevel=3)


def _check_names(names: Any, fail) -> Tuple[str, ...]:
    if not isinstance(names, list) or not names:
        fail(f"'keypoints' must be a non-empty list of names, found {names!r}"[:200])
    seen: Dict[str, int] = {}
    for i, n in enumerate(names):
        if not isinstance(n, str) or not n.strip():
            fail(f"keypoints[{i}] must be a non-empty name, found {n!r}")
        if n in seen:
            fail(f"keypoint {n!r} appears twice (keypoints[{seen[n]}] and keypoints[{i}])")
        seen[n] = i
    return tuple(names)


def _name_pairs(value: Any, key: str, index: Mapping[str, int], fail) -> Tuple[Tuple[int, int], ...]:
    if not isinstance(value, list):
        fail(f"'{key}' must be a list of [name, name] pairs, found {type(value).__name__}")
    pairs = []
    for i, pair in enumerate(value):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            fail(f"{key}[{i}] must be a [name, name] pair, found {pair!r}")
        for n in pair:
            if n not in index:
                fail(f"{key}[{i}]: unknown keypoint {n!r}; the keypoints are {', '.join(index)}")
        if pair[0] == pair[1]:
            fail(f"{key}[{i}] joins {pair[0]!r} to itself")
        pairs.append((index[pair[0]], index[pair[1]]))
    return tuple(pairs)


def _name_list(value: Any, key: str, index: Mapping[str, int], fail) -> Tuple[int, ...]:
    if not isinstance(value, list):
        fail(f"'{key}' must be a list of keypoint names, found {type(value).__name__}")
    for n in value:
        if n not in index:
            fail(f"{key}: unknown keypoint {n!r}; the keypoints are {', '.join(index)}")
    if len(set(value)) != len(value):
        fail(f"{key} names a keypoint twice")
    return tuple(index[n] for n in value)


def _color_bgr(value: Any, where: str, fail) -> Tuple[int, int, int]:
    """'#rrggbb' or [r, g, b] (0-255) -> BGR, the order Skeleton stores."""
    if isinstance(value, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", value):
        rgb = [int(value[k:k + 2], 16) for k in (1, 3, 5)]
    elif (isinstance(value, (list, tuple)) and len(value) == 3
          and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value)):
        rgb = list(value)
    else:
        fail(f"{where} must be '#rrggbb' or [r, g, b] with 0-255 integers, found {value!r}")
    return rgb[2], rgb[1], rgb[0]


def skeleton_from_mapping(data: Any, source: str, default_name: str = "custom") -> Skeleton:
    """The keypoint set a keypoint-set file's mapping describes (format: docs/keypoints.md); ConfigError naming
    ``source`` and the problem. Optional keys take the defaults documented there (flip pairs from left/right names,
    no limbs, uniform sigmas with a warning, lower body from joint names, no torso, colours by side)."""
    def fail(problem: str):
        raise ConfigError(problem, source)

    if not isinstance(data, dict):
        fail(f"a keypoint-set file holds a mapping (keypoints: [...], limbs: ...), found {type(data).__name__}")
    unknown = [k for k in data if k not in _FILE_KEYS]
    if unknown:
        fail(f"unknown key {unknown[0]!r}; a keypoint-set file has {', '.join(_FILE_KEYS)}")
    names = _check_names(data.get("keypoints"), fail)
    index = {n: i for i, n in enumerate(names)}
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name:
        fail(f"'name' must be a non-empty string, found {name!r}")

    if "flip_pairs" in data:
        flip_pairs = _name_pairs(data["flip_pairs"], "flip_pairs", index, fail)
        counts = np.bincount(np.asarray(flip_pairs, dtype=np.int64).reshape(-1), minlength=len(names))
        if flip_pairs and counts.max() > 1:
            fail(f"flip_pairs: keypoint {names[int(counts.argmax())]!r} is in two pairs")
    else:
        flip_pairs, unpaired = flip_pairs_from_names(names)
        _unpaired_warning(source, unpaired)
    limbs = _name_pairs(data.get("limbs", []), "limbs", index, fail)

    sigmas = data.get("sigmas")
    if sigmas is None:
        _sigma_warning(source)
        sigmas = [UNIFORM_SIGMA] * len(names)
    elif isinstance(sigmas, (int, float)) and not isinstance(sigmas, bool):
        sigmas = [sigmas] * len(names)    # one number: the same sigma for every keypoint
    if not isinstance(sigmas, list) or len(sigmas) != len(names):
        count = len(sigmas) if isinstance(sigmas, list) else type(sigmas).__name__
        fail(f"sigmas: {count} values for {len(names)} keypoints (one per keypoint, or one number for all)")
    for i, v in enumerate(sigmas):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < np.inf:
            fail(f"sigmas[{i}] must be a positive number, found {v!r}")

    if "upper_body" in data or "lower_body" in data:
        upper = _name_list(data.get("upper_body", []), "upper_body", index, fail)
        lower = _name_list(data.get("lower_body", []), "lower_body", index, fail)
        both = set(upper) & set(lower)
        if both:
            fail(f"keypoint {names[min(both)]!r} is in both upper_body and lower_body")
    else:
        lower = _lower_body_guess(names)
        upper = tuple(i for i in range(len(names)) if i not in lower)

    torso: Optional[Tuple[int, int]] = None
    if data.get("torso") is not None:
        torso_pairs = _name_pairs([data["torso"]], "torso", index, fail)
        torso = torso_pairs[0]

    if data.get("limb_colors") is not None:
        colors = data["limb_colors"]
        if not isinstance(colors, list) or len(colors) != len(limbs):
            count = len(colors) if isinstance(colors, list) else type(colors).__name__
            fail(f"limb_colors: {count} colours for {len(limbs)} limbs")
        limb_colors = tuple(_color_bgr(c, f"limb_colors[{i}]", fail) for i, c in enumerate(colors))
    else:
        limb_colors = _side_colors(names, limbs)
    return Skeleton(name=name, keypoints=names, flip_pairs=flip_pairs, limbs=limbs, upper_body=upper,
                    lower_body=lower, sigmas=tuple(float(v) for v in sigmas), torso=torso, limb_colors=limb_colors)


def _cached_by_file(loader):
    """``loader(path)`` read once per file version (path, size, modification time): data.skeleton is resolved by
    every dataset, evaluation and predictor built from a config, and a COCO training file is large."""
    cached = functools.lru_cache(maxsize=16)(lambda path, size, mtime: loader(path))

    @functools.wraps(loader)
    def load(path: Union[str, "os.PathLike[str]"]) -> Skeleton:
        path = os.fspath(path)
        try:
            stat = os.stat(path)
        except OSError:
            return loader(path)     # the loader names the missing or unreadable file
        return cached(os.path.abspath(path), stat.st_size, stat.st_mtime_ns)

    load.cache_clear = cached.cache_clear   # type: ignore[attr-defined]
    return load


@_cached_by_file
def load_skeleton_file(path: Union[str, "os.PathLike[str]"]) -> Skeleton:
    """The keypoint set of a YAML/JSON keypoint-set file (docs/keypoints.md): keypoint names; flip pairs, limbs,
    upper/lower body and torso by name; OKS sigmas; limb colours. ConfigError ``"<path>: <problem>"``."""
    path = os.fspath(path)
    if not is_skeleton_file(path):
        raise ConfigError(f"a keypoint-set file ends in {', '.join(SKELETON_FILE_SUFFIXES)}", path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("keypoint-set file not found", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read keypoint-set file: {getattr(exc, 'strerror', None) or exc}", path) from None
    try:
        data = json.loads(text) if path.lower().endswith(".json") else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON ({exc})", path) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {str(exc).splitlines()[0]}", path) from None
    return skeleton_from_mapping(data, path, default_name=Path(path).stem)


def skeleton_from_coco(data: Any, source: str) -> Skeleton:
    """The keypoint set of a COCO-format annotation object: its person category's (id 1, the one the COCO reader
    reads; else the first with keypoints) ``keypoints`` names and ``skeleton`` (1-based index pairs, as COCO writes
    it). Flip pairs come from left/right names, lower body from joint names, sigmas are :data:`UNIFORM_SIGMA`
    (with a warning). DataError naming ``source`` and the problem."""
    def fail(problem: str):
        raise DataError(problem, source)

    if not isinstance(data, dict):
        fail(f"expected a COCO annotation object at the top level, found {type(data).__name__}")
    categories = data.get("categories")
    if not isinstance(categories, list) or not categories:
        fail("no 'categories' list: data.skeleton auto reads the keypoint names from the person category")
    with_keypoints = [c for c in categories if isinstance(c, dict) and c.get("keypoints") is not None]
    category = next((c for c in with_keypoints if c.get("id") == 1), with_keypoints[0] if with_keypoints else None)
    if category is None:
        fail("no category lists 'keypoints': data.skeleton auto needs the keypoint names there (or name a "
             "keypoint-set file)")
    where = f"category {category.get('id')!r}"
    names = _check_names(category["keypoints"], lambda problem: fail(f"{where}: {problem}"))
    links = category.get("skeleton", [])
    if not isinstance(links, list):
        fail(f"{where}: 'skeleton' must be a list of [a, b] pairs, found {type(links).__name__}")
    limbs = []
    for i, pair in enumerate(links):
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)):
            fail(f"{where}: skeleton[{i}] must be a pair of keypoint numbers, found {pair!r}")
        if not all(1 <= v <= len(names) for v in pair):
            hint = " (COCO numbers keypoints from 1)" if 0 in pair else ""
            fail(f"{where}: skeleton[{i}] {list(pair)} is outside 1-{len(names)}{hint}")
        limbs.append((pair[0] - 1, pair[1] - 1))
    flip_pairs, unpaired = flip_pairs_from_names(names)
    _unpaired_warning(source, unpaired)
    _sigma_warning(source)
    lower = _lower_body_guess(names)
    return Skeleton(
        name=str(category.get("name") or "auto"), keypoints=names, flip_pairs=flip_pairs, limbs=tuple(limbs),
        upper_body=tuple(i for i in range(len(names)) if i not in lower), lower_body=lower,
        sigmas=(UNIFORM_SIGMA,) * len(names), torso=_torso_guess(names), limb_colors=_side_colors(names, limbs))


@_cached_by_file
def coco_file_skeleton(path: Union[str, "os.PathLike[str]"]) -> Skeleton:
    """:func:`skeleton_from_coco` of a COCO-format annotation file (data.skeleton: auto)."""
    return skeleton_from_coco(read_json(path, "annotation file"), os.fspath(path))


def skeleton_to_mapping(skeleton: Skeleton) -> Dict[str, Any]:
    """A keypoint-set file's content for ``skeleton`` (by name, colours as '#rrggbb'): what
    :func:`load_skeleton_file` reads back into an equal Skeleton."""
    names = skeleton.keypoints
    data: Dict[str, Any] = {
        "name": skeleton.name, "keypoints": list(names),
        "flip_pairs": [[names[a], names[b]] for a, b in skeleton.flip_pairs],
        "limbs": [[names[a], names[b]] for a, b in skeleton.limbs],
        "upper_body": [names[i] for i in skeleton.upper_body], "lower_body": [names[i] for i in skeleton.lower_body],
        "limb_colors": ["#%02x%02x%02x" % (r, g, b) for b, g, r in skeleton.limb_colors],
    }
    if skeleton.sigmas is not None:
        data["sigmas"] = [float(v) for v in skeleton.sigmas]   # exact: a saved set scores as the original
    if skeleton.torso is not None:
        data["torso"] = [names[skeleton.torso[0]], names[skeleton.torso[1]]]
    return data


def write_skeleton_file(skeleton: Skeleton, path: Union[str, "os.PathLike[str]"]) -> None:
    """Write ``skeleton`` as a keypoint-set file (YAML, or JSON for a .json path), e.g. to keep the set that
    ``data.skeleton: auto`` read for a deployment without the annotation file."""
    path = os.fspath(path)
    data = skeleton_to_mapping(skeleton)
    text = json.dumps(data, indent=1) if path.lower().endswith(".json") else yaml.safe_dump(
        data, sort_keys=False, default_flow_style=None)
    Path(path).write_text(text, encoding="utf-8")
