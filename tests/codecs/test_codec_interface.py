"""The codec interface (posekit.codecs.base): every codec behind HeatmapCodec, the grid alignment that encode,
decode and the multi-scale centre share, the target key that lets the dataset encode once, and the one sigma knob
(build.output_specs)."""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from posekit.build import output_specs
from posekit.codecs import (TARGETS, CPMBeliefMap, GaussianHeatmap, HeatmapCodec, MegviiHeatmap, OutputSpec,
                            Torch7Gaussian, build_codec)
from posekit.config import config_from_dict
from posekit.data.dataset import codec_groups
from posekit.errors import ConfigError
from posekit.models.cpm import cpm_2stage
from posekit.models.hourglass import ke_multiscale_hourglass
from posekit.models.mspn import mspn_output_specs

# One spec per target kind at the input size its family uses.
SPECS = {
    "gaussian": (OutputSpec(target="gaussian", sigma=2.0), (256, 192)),
    "cpm": (OutputSpec(stride=8, target="cpm", sigma=7.0, loss="cpm", background=True), (368, 368)),
    "megvii": (OutputSpec(target="megvii", kernel=7, loss="mspn_l2"), (256, 192)),
    "torch7": (OutputSpec(target="torch7", sigma=1.0, loss="mean_mse"), (256, 256)),
}


def _random_joints(seed: int, input_hw, k: int = 6):
    rng = np.random.default_rng(seed)
    # some joints just outside the crop
    xy = rng.uniform([-8.0, -8.0], [input_hw[1] + 8.0, input_hw[0] + 8.0], (k, 2))
    vis = rng.integers(0, 3, k)
    return xy, vis


# ------------------------------------------------------------------------------------------------ interface
def test_every_target_builds_a_heatmap_codec():
    assert sorted(SPECS) == sorted(TARGETS)
    expected = {"gaussian": GaussianHeatmap, "cpm": CPMBeliefMap, "megvii": MegviiHeatmap, "torch7": Torch7Gaussian}
    for target, (spec, input_hw) in SPECS.items():
        codec = build_codec(spec, input_hw)
        assert isinstance(codec, HeatmapCodec) and type(codec) is expected[target]
        assert codec.heatmap_hw == (input_hw[0] // spec.stride, input_hw[1] // spec.stride)


def test_a_codec_without_the_alignment_cannot_be_made():
    class NoAlignment(HeatmapCodec):
        def encode(self, keypoints, visibility, others=None):
            raise NotImplementedError

        def decode(self, heatmaps):
            raise NotImplementedError

        def target_settings(self):
            return ()

    with pytest.raises(TypeError, match="grid_offset_xy"):
        NoAlignment()


@pytest.mark.parametrize("target", sorted(SPECS))
def test_grid_offset_is_where_encode_draws_and_decode_reads(target):
    """A joint on input pixel stride * g + offset is drawn with its peak on cell g and decoded back to that pixel
    (within the decoder's sub-pixel step: a quarter cell, CPM's half-pixel upsampling grid)."""
    spec, input_hw = SPECS[target]
    codec = build_codec(spec, input_hw)
    stride_x = input_hw[1] / codec.heatmap_hw[1]
    stride_y = input_hw[0] / codec.heatmap_hw[0]
    off_x, off_y = codec.grid_offset_xy
    cells = np.array([[5, 7], [20, 11], [30, 40]])
    xy = cells * [stride_x, stride_y] + [off_x, off_y]
    target_maps, _ = codec.encode(xy, np.full(len(xy), 2))
    peaks = [np.unravel_index(target_maps[k].argmax(), codec.heatmap_hw) for k in range(len(xy))]
    assert [(int(c), int(r)) for r, c in peaks] == [tuple(c) for c in cells]
    coords, _ = codec.decode(target_maps[None])
    tolerance = 0.5 if target == "cpm" else 0.25 * stride_x
    np.testing.assert_allclose(coords[0], xy, atol=tolerance)


def test_crop_centre_follows_the_grid_offset():
    for spec, input_hw in SPECS.values():
        codec = build_codec(spec, input_hw)
        cx, cy = codec.crop_center_on_heatmap()
        stride_x = input_hw[1] / codec.heatmap_hw[1]
        stride_y = input_hw[0] / codec.heatmap_hw[0]
        # The heatmap point found maps back onto the crop centre under the codec's own alignment.
        assert stride_x * cx + codec.grid_offset_xy[0] == input_hw[1] / 2
        assert stride_y * cy + codec.grid_offset_xy[1] == input_hw[0] / 2


# ------------------------------------------------------------------------------------------------ target key
@pytest.mark.parametrize("make_a, make_b", [
    # decoding settings do not shape the target
    (lambda: GaussianHeatmap((256, 192), (64, 48), 2.0),
     lambda: GaussianHeatmap((256, 192), (64, 48), 2.0, post_process=False, decoding="dark", dark_kernel=7)),
    (lambda: MegviiHeatmap((256, 192), (64, 48), kernel=9, blur_kernel=5),
     lambda: MegviiHeatmap((256, 192), (64, 48), kernel=9, blur_kernel=9)),
    (lambda: Torch7Gaussian((256, 256), (64, 64), 1.0), lambda: Torch7Gaussian((256, 256), (64, 64), 1.0, post_process=False)),
    (lambda: CPMBeliefMap((368, 368), (46, 46)), lambda: CPMBeliefMap((368, 368), (46, 46), cubic_a=-0.75)),
])
def test_equal_target_keys_encode_identically(make_a, make_b):
    a, b = make_a(), make_b()
    assert a.target_key == b.target_key and codec_groups([a, b]) == [0, 0]
    for seed in range(5):
        xy, vis = _random_joints(seed, a.input_hw)
        others = np.concatenate([xy[None] + 7.0, np.full((1, len(xy), 1), 2.0)], axis=2)
        ta, wa = a.encode(xy, vis, others)
        tb, wb = b.encode(xy, vis, others)
        np.testing.assert_array_equal(ta, tb)
        np.testing.assert_array_equal(wa, wb)


def test_every_target_setting_is_in_the_key():
    base = {
        "gaussian": GaussianHeatmap((256, 192), (64, 48), 2.0),
        "cpm": CPMBeliefMap((368, 368), (46, 46)),
        "megvii": MegviiHeatmap((256, 192), (64, 48), kernel=9),
        "torch7": Torch7Gaussian((256, 256), (64, 64), 1.0),
    }
    variants = [
        (base["gaussian"], GaussianHeatmap((256, 192), (64, 48), 3.0)),
        (base["gaussian"], GaussianHeatmap((256, 192), (32, 24), 2.0)),
        (base["gaussian"], GaussianHeatmap((384, 288), (64, 48), 2.0)),
        (base["cpm"], CPMBeliefMap((368, 368), (46, 46), sigma=5.0)),
        (base["cpm"], CPMBeliefMap((368, 368), (46, 46), background=False)),
        (base["cpm"], CPMBeliefMap((368, 368), (46, 46), people="all")),
        (base["megvii"], MegviiHeatmap((256, 192), (64, 48), kernel=7)),
        (base["torch7"], Torch7Gaussian((256, 256), (64, 64), 2.0)),
        (base["torch7"], Torch7Gaussian((256, 256), (64, 64), 1.0, exact_sigma=True)),
        (base["torch7"], Torch7Gaussian((256, 256), (64, 64), 1.0, border_quirk=False)),
        # one class's settings never match another's
        (base["gaussian"], Torch7Gaussian((256, 192), (64, 48), 2.0)),
    ]
    for a, b in variants:
        assert a.target_key != b.target_key, (a.target_key, b.target_key)
        assert codec_groups([a, b, a]) == [0, 1, 0]


def test_mspn_outputs_share_five_targets():
    codecs = [build_codec(s, (256, 192)) for s in mspn_output_specs(4)]
    groups = codec_groups(codecs)
    assert len(set(groups)) == 5
    assert {codecs[g].kernel_size for g in groups} == {15, 11, 9, 7, 5}


# ------------------------------------------------------------------------------------------------ sigma
@pytest.mark.parametrize("target", sorted(SPECS))
def test_carries_sigma_says_whether_sigma_shapes_the_target(target):
    spec, input_hw = SPECS[target]
    other = build_codec(replace(spec, sigma=spec.sigma + 1.0), input_hw)
    codec = build_codec(spec, input_hw)
    xy, _ = _random_joints(3, input_hw)
    changed = not np.array_equal(codec.encode(xy, np.full(len(xy), 2))[0], other.encode(xy, np.full(len(xy), 2))[0])
    assert spec.carries_sigma == changed == (codec.target_key != other.target_key)
    assert spec.carries_sigma == (target != "megvii")


def _cfg(name: str, sigma=None, kwargs=None):
    return config_from_dict({"model": {"name": name, "sigma": sigma, "kwargs": kwargs or {}}})


def test_model_sigma_is_the_final_sigma_and_keeps_the_ratios():
    model = SimpleNamespace(outputs=[OutputSpec(stride=8, sigma=1.0), OutputSpec(target="torch7", sigma=2.0, loss="mean_mse"),
                                     OutputSpec(sigma=2.0)])
    specs = output_specs(model, _cfg("hrnet_w32", sigma=3.0))
    assert [s.sigma for s in specs] == [1.5, 3.0, 3.0]
    assert [s.target for s in specs] == ["gaussian", "torch7", "gaussian"] and specs[0].stride == 8
    assert output_specs(model, _cfg("hrnet_w32")) == model.outputs


def test_model_sigma_reaches_every_output_exactly():
    # 7 * (7.25 / 7) is 7.250000000000001: outputs declared with the final sigma take the value itself.
    specs = output_specs(cpm_2stage(num_keypoints=14), _cfg("cpm_2stage", sigma=7.25))
    assert [s.sigma for s in specs] == [7.25, 7.25]
    ke = ke_multiscale_hourglass(num_keypoints=16, stacks=2, features=16)
    assert {s.sigma for s in output_specs(ke, _cfg("ke_multiscale_hourglass", sigma=1.5))} == {1.5}


def test_sigma_for_kernel_targets_is_an_error_naming_the_key():
    mspn = SimpleNamespace(outputs=mspn_output_specs(2))
    with pytest.raises(ConfigError, match=r"^model\.sigma: .*kernel size"):
        output_specs(mspn, _cfg("mspn_2stage", sigma=2.0))
    assert output_specs(mspn, _cfg("mspn_2stage")) == mspn.outputs


def test_builder_sigma_in_the_config_is_an_error_naming_the_key():
    model = SimpleNamespace(outputs=[OutputSpec(sigma=2.0)])
    with pytest.raises(ConfigError, match=r"^model\.kwargs\.sigma: .*model\.sigma"):
        output_specs(model, _cfg("hrnet_w32", kwargs={"sigma": 3.0}))
    with pytest.raises(ConfigError, match=r"^model\.kwargs\.sigma"):
        output_specs(model, _cfg("hrnet_w32", sigma=3.0, kwargs={"sigma": 3.0}))
