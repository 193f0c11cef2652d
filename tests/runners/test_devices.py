from __future__ import annotations

import json

import pytest

from runners.rundir import devices as dev

GIB = 2**30


def machine(n: int) -> list[dev.GPU]:
    return [dev.GPU(i, f"NVIDIA A100-SXM4-80GB #{i}", 80 * GIB, (80 - i) * GIB, uuid=f"GPU-{i}aa{i}-uuid") for i in range(n)]


def test_injected_gpus_are_returned_with_cpu_and_ram():
    gpus = machine(2)
    found = dev.discover(gpus=gpus)
    assert found.gpus == gpus
    assert found.source == "injected"
    assert found.cpu_count >= 1
    assert 0 < found.ram_available_bytes <= found.ram_total_bytes


def test_no_gpu_gives_empty_list_cleanly(monkeypatch):
    def broken():
        raise OSError("NVML Shared Library Not Found")

    monkeypatch.delenv(dev.FAKE_GPUS_ENV, raising=False)
    monkeypatch.setattr(dev, "nvml_gpus", broken)
    monkeypatch.setattr(dev, "torch_gpus", lambda: [])
    found = dev.discover()
    assert found.gpus == [] and found.source == "none"
    assert json.loads(json.dumps(found.to_dict()))["gpus"] == []


def test_real_discovery_matches_torch(monkeypatch):
    import torch

    monkeypatch.delenv(dev.FAKE_GPUS_ENV, raising=False)
    found = dev.discover()
    assert len(found.gpus) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert all(0 < g.free_bytes <= g.total_bytes for g in found.gpus)


def test_nvml_failure_falls_back_to_torch(monkeypatch):
    def broken():
        raise OSError("NVML Shared Library Not Found")

    monkeypatch.setattr(dev, "nvml_gpus", broken)
    monkeypatch.setattr(dev, "torch_gpus", lambda: machine(1))
    notes: list[str] = []
    gpus, source = dev.detect_gpus(notes)
    assert source == "torch" and len(gpus) == 1
    assert "NVML unavailable" in notes[0]


def test_nvml_list_is_filtered_by_cuda_visible_devices(monkeypatch):
    monkeypatch.setattr(dev, "nvml_gpus", lambda: machine(4))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    gpus, source = dev.detect_gpus()
    assert source == "nvml"
    assert [g.index for g in gpus] == [0, 1]  # renumbered as the run will see them
    assert [g.uuid for g in gpus] == ["GPU-2aa2-uuid", "GPU-0aa0-uuid"]
    assert gpus[0].free_bytes == 78 * GIB


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        (None, ["GPU-0aa0-uuid", "GPU-1aa1-uuid", "GPU-2aa2-uuid"]),
        ("", []),
        ("-1", []),
        ("1", ["GPU-1aa1-uuid"]),
        ("0,7,1", ["GPU-0aa0-uuid"]),  # CUDA stops at the first entry that matches nothing
        ("0,0", ["GPU-0aa0-uuid"]),
        ("GPU-2aa", ["GPU-2aa2-uuid"]),
        ("1aa1,0", ["GPU-1aa1-uuid", "GPU-0aa0-uuid"]),
        ("GPU-", []),  # an ambiguous UUID prefix matches nothing
    ],
)
def test_filter_visible_follows_cuda_rules(visible, expected):
    assert [g.uuid for g in dev.filter_visible(machine(3), visible)] == expected


def test_fake_gpus_from_env_json_and_ids(monkeypatch):
    monkeypatch.setenv(dev.FAKE_GPUS_ENV, json.dumps([{"name": "X", "total_bytes": 10 * GIB, "free_bytes": 4 * GIB}]))
    found = dev.discover()
    assert found.source == "env"
    assert found.gpus == [dev.GPU(0, "X", 10 * GIB, 4 * GIB)]
    monkeypatch.setenv(dev.FAKE_GPUS_ENV, "A10G-24GB,A10G-24GB")
    found = dev.discover()
    assert [g.index for g in found.gpus] == [0, 1]
    assert found.gpus[0].name == "NVIDIA A10G"
    assert found.gpus[0].total_bytes == found.gpus[0].free_bytes > 22 * GIB


@pytest.mark.parametrize("value", ["[{]", '[{"name": "X"}]', "NOPE-1GB"])
def test_bad_fake_gpus_raise_value_error_naming_the_variable_or_id(monkeypatch, value):
    monkeypatch.setenv(dev.FAKE_GPUS_ENV, value)
    with pytest.raises(ValueError, match=r"ALIGNPLAN_FAKE_GPUS|NOPE-1GB"):
        dev.discover()


@pytest.mark.gpu
def test_nvml_and_torch_agree_on_a_real_gpu(monkeypatch):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    monkeypatch.delenv(dev.FAKE_GPUS_ENV, raising=False)
    nvml, source = dev.detect_gpus()
    assert source == "nvml"
    via_torch = dev.torch_gpus()
    assert [g.name for g in nvml] == [g.name for g in via_torch]
    for a, b in zip(nvml, via_torch, strict=True):
        assert abs(a.total_bytes - b.total_bytes) < 2**30  # NVML counts a little reserved memory
        assert 0 < a.free_bytes <= a.total_bytes
