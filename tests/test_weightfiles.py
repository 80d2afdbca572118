"""Reading, checking and atomically saving weights; refusing unsafe or broken files."""
from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from posekit.fileio import atomic_path, atomic_write_bytes
from posekit.weightfiles import load_weights, read_safetensors_metadata, read_state_dict, save_weights
from posekit.errors import CheckpointError
from posekit.models import create_model
from posekit.models.hrnet import hrnet_w16_small, hrnet_w32
from conftest import randomized


@pytest.fixture(scope="module")
def source() -> nn.Module:
    return randomized(hrnet_w32())


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))


def outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)[0]


def test_pth_round_trip_with_module_prefix_and_no_bn_counters(tmp_path, source, x):
    state = {"module." + k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert len(state) == 1754 - 292
    path = tmp_path / "dp_checkpoint.pth"
    torch.save(state, path)
    target = hrnet_w32()
    report = load_weights(target, path)
    assert report.ok
    assert torch.equal(outputs(target, x), outputs(source, x))


@pytest.mark.parametrize("container", [
    lambda sd: {"epoch": 3, "model": "pose_hrnet", "state_dict": sd, "optimizer": {"lr": 1e-3}},  # official train
    lambda sd: {"model": sd, "iteration": 96000},  # MSPN / cvpack
    lambda sd: {"model_state": {"module": sd}},
])
def test_common_containers_are_unwrapped(tmp_path, container):
    model = randomized(hrnet_w16_small(), seed=1)
    path = tmp_path / "ckpt.pth.tar"
    torch.save(container(model.state_dict()), path)
    state = read_state_dict(path)
    assert set(state) == set(model.state_dict())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_missing_and_unexpected_keys_are_named(tmp_path, source):
    state = dict(source.state_dict())
    del state["final_layer.weight"], state["final_layer.bias"]
    state["head.extra.weight"] = torch.zeros(3)
    path = tmp_path / "ckpt.pth"
    torch.save(state, path)
    target = hrnet_w32()
    before = target.conv1.weight.clone()
    with pytest.raises(CheckpointError) as info:
        load_weights(target, path)
    assert str(info.value) == (f"{path}: does not fit hrnet_w32: 2 missing keys (final_layer.weight, "
                               f"final_layer.bias), 1 unexpected (head.extra.weight)")
    assert torch.equal(target.conv1.weight, before)  # nothing loaded on failure

    report = load_weights(target, path, strict=False)  # e.g. ImageNet weights without the head
    assert report.missing == ["final_layer.weight", "final_layer.bias"]
    assert report.unexpected == ["head.extra.weight"]
    assert torch.equal(target.conv1.weight, source.conv1.weight)


def test_shape_mismatch_and_key_list_truncation(tmp_path):
    path = tmp_path / "mpii.pth"
    torch.save(hrnet_w16_small(num_keypoints=16).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"2 shape mismatches \(final_layer\.weight: file \(16, 16, 1, 1\) "
                                              r"vs model \(17, 16, 1, 1\)"):
        load_weights(hrnet_w16_small(), path)
    with pytest.raises(CheckpointError) as info:
        load_weights(hrnet_w32(), path)
    message = str(info.value)
    assert "\n" not in message and "more)" in message and "missing keys (" in message


def test_malicious_pickle_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": Payload()}}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused to load: .*arbitrary code"):
        read_state_dict(path)
    assert not marker.exists()
    # The payload is real: an unsafe load runs it.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_broken_files_are_named(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(hrnet_w16_small().state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pth: cannot read checkpoint"):
        read_state_dict(truncated)

    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(CheckpointError, match=r"corrupt\.safetensors: not a readable safetensors file"):
        read_state_dict(corrupt)
    with pytest.raises(CheckpointError, match=r"corrupt\.safetensors"):
        read_safetensors_metadata(corrupt)

    a_list = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], a_list)
    with pytest.raises(CheckpointError, match=r"list\.pth: expected a state dict, found a list"):
        read_state_dict(a_list)

    no_tensors = tmp_path / "meta.pth"
    torch.save({"epoch": 4, "perf": 0.7}, no_tensors)
    with pytest.raises(CheckpointError, match=r"no state dict .* top-level keys: epoch, perf"):
        read_state_dict(no_tensors)

    with pytest.raises(CheckpointError, match=r"absent\.pth: no such file"):
        load_weights(hrnet_w16_small(), tmp_path / "absent.pth")


def test_safetensors_round_trip_with_metadata(tmp_path, x):
    model = randomized(hrnet_w16_small(), seed=2)
    path = tmp_path / "out" / "weights.safetensors"
    config = "model:\n  name: hrnet_w16_small\n"
    save_weights(model, path, metadata={"model": "hrnet_w16_small", "num_keypoints": 17, "config": config})
    assert sorted(os.listdir(path.parent)) == ["weights.safetensors"]  # no temporary left behind
    assert read_safetensors_metadata(path) == {"model": "hrnet_w16_small", "num_keypoints": "17", "config": config}
    state = read_state_dict(path)
    assert set(state) == set(model.state_dict())
    loaded = create_model("hrnet_w16_small", weights=str(path))
    assert torch.equal(outputs(loaded, x), outputs(model, x))
    assert torch.equal(loaded.bn1.num_batches_tracked, torch.tensor(5))

    save_weights(model.state_dict(), tmp_path / "plain.safetensors")
    assert read_safetensors_metadata(tmp_path / "plain.safetensors") == {}
    os.replace(tmp_path / "plain.safetensors", tmp_path / "renamed.bin")  # recognised by content, not suffix
    assert set(read_state_dict(tmp_path / "renamed.bin")) == set(state)
    with pytest.raises(TypeError, match="strings"):
        save_weights(model, tmp_path / "bad.safetensors", metadata={"config": {"nested": 1}})


def test_shared_tensors_can_be_saved(tmp_path):
    shared = torch.arange(6.0)
    save_weights({"a": shared, "b": shared, "c": shared[:3]}, tmp_path / "tied.safetensors")
    state = read_state_dict(tmp_path / "tied.safetensors")
    assert torch.equal(state["a"], state["b"]) and torch.equal(state["c"], torch.arange(3.0))


def test_atomic_writes_keep_old_file_on_failure(tmp_path):
    path = tmp_path / "train_state.pt"
    atomic_write_bytes(path, b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["train_state.pt"]

    with atomic_path(path) as tmp:
        assert tmp.parent == path.parent and tmp != path
        torch.save({"step": 7, "optimizer": {"lr": 0.1}}, tmp)
    assert torch.load(path, weights_only=True) == {"step": 7, "optimizer": {"lr": 0.1}}
    assert os.listdir(tmp_path) == ["train_state.pt"]
