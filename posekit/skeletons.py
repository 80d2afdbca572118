"""Keypoint sets: joint names, left/right flip pairs, limbs for drawing, OKS sigmas, body halves.

Pure data; knows nothing of images or tensors. Orders are those of the datasets' own files.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import ConfigError


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


def _side_colors(keypoints: Sequence[str], limbs: Sequence[Tuple[int, int]]) -> Tuple[Tuple[int, int, int], ...]:
    def side(i: int) -> str:
        n = keypoints[i]
        if n.startswith(("l_", "left")):
            return "l"
        if n.startswith(("r_", "right")):
            return "r"
        return "c"

    colors = []
    for a, b in limbs:
        sides = {side(a), side(b)}
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
