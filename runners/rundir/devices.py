"""What this machine can run on: visible GPUs (name, total and free memory), CPU cores and RAM.

GPUs come from NVML (nvidia-ml-py) when its library loads, else from torch.cuda, else none. NVML
lists every GPU of the machine, so its list is filtered by CUDA_VISIBLE_DEVICES the way the CUDA
runtime does it (indices or UUID prefixes, the list ends at the first entry that matches nothing).
torch.cuda already honours the variable.

Tests and dry runs can inject devices: pass ``gpus=[GPU(...), ...]`` to :func:`discover`, or set
``ALIGNPLAN_FAKE_GPUS`` to a JSON list of ``{"name", "total_bytes", "free_bytes"}`` (or a
comma-separated list of planner GPU ids such as ``"A10G-24GB,A10G-24GB"``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

FAKE_GPUS_ENV = "ALIGNPLAN_FAKE_GPUS"


class DeviceError(ValueError):
    """An injected device description that cannot be used."""


@dataclass(frozen=True)
class GPU:
    index: int  # index as the run will see it (after CUDA_VISIBLE_DEVICES)
    name: str
    total_bytes: int
    free_bytes: int
    uuid: str | None = None


@dataclass(frozen=True)
class Devices:
    gpus: list[GPU]
    cpu_count: int
    ram_total_bytes: int
    ram_available_bytes: int
    source: str  # "nvml", "torch", "none", "injected", "env"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def discover(gpus: Sequence[GPU] | None = None) -> Devices:
    """Devices visible to a run started from this process; ``gpus`` replaces GPU detection."""
    notes: list[str] = []
    if gpus is not None:
        found, source = list(gpus), "injected"
    elif os.environ.get(FAKE_GPUS_ENV):
        found, source = gpus_from_env(os.environ[FAKE_GPUS_ENV]), "env"
    else:
        found, source = detect_gpus(notes)
    vm = psutil.virtual_memory()
    return Devices(
        gpus=found,
        cpu_count=os.cpu_count() or 1,
        ram_total_bytes=int(vm.total),
        ram_available_bytes=int(vm.available),
        source=source,
        notes=notes,
    )


def detect_gpus(notes: list[str] | None = None) -> tuple[list[GPU], str]:
    """GPUs from NVML, else torch.cuda; ([], "none") when neither sees one."""
    notes = notes if notes is not None else []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        nvml = nvml_gpus()
    except Exception as exc:  # no driver, no library, no permission: fall back to torch
        notes.append(f"NVML unavailable ({type(exc).__name__}: {exc})")
    else:
        return filter_visible(nvml, visible), "nvml"
    try:
        found = torch_gpus()
    except Exception as exc:
        notes.append(f"torch.cuda unavailable ({type(exc).__name__}: {exc})")
        return [], "none"
    return found, ("torch" if found else "none")


def nvml_gpus() -> list[GPU]:
    """All GPUs of the machine in NVML order (PCI bus order), before CUDA_VISIBLE_DEVICES."""
    import pynvml

    pynvml.nvmlInit()
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            out.append(
                GPU(
                    index=i,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    total_bytes=int(mem.total),
                    free_bytes=int(mem.free),
                    uuid=uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                )
            )
        return out
    finally:
        pynvml.nvmlShutdown()


def torch_gpus() -> list[GPU]:
    """GPUs through torch.cuda (already filtered by CUDA_VISIBLE_DEVICES); imports torch lazily."""
    import torch

    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        free, total = torch.cuda.mem_get_info(i)
        out.append(GPU(index=i, name=props.name, total_bytes=int(total), free_bytes=int(free)))
    return out


def filter_visible(all_gpus: Sequence[GPU], visible: str | None) -> list[GPU]:
    """Apply CUDA_VISIBLE_DEVICES to a machine-wide GPU list and renumber from 0.

    Entries are indices or UUID prefixes ("GPU-8f2c..."); as in the CUDA runtime, an entry that
    matches nothing (or repeats one) ends the list, so "-1" or "" hides every GPU.
    """
    if visible is None:
        return list(all_gpus)
    chosen: list[GPU] = []
    for raw in visible.split(","):
        entry = raw.strip()
        match = _match_entry(all_gpus, entry)
        if match is None or match in chosen:
            break
        chosen.append(match)
    return [GPU(i, g.name, g.total_bytes, g.free_bytes, g.uuid) for i, g in enumerate(chosen)]


def _match_entry(all_gpus: Sequence[GPU], entry: str) -> GPU | None:
    if not entry:
        return None
    if entry.lstrip("-").isdigit():
        idx = int(entry)
        return all_gpus[idx] if 0 <= idx < len(all_gpus) else None
    prefix = entry if entry.startswith(("GPU-", "MIG-")) else f"GPU-{entry}"
    hits = [g for g in all_gpus if g.uuid and g.uuid.startswith(prefix)]
    return hits[0] if len(hits) == 1 else None


def gpus_from_env(value: str) -> list[GPU]:
    """Fake GPUs from ALIGNPLAN_FAKE_GPUS: a JSON list of dicts, or planner GPU ids joined by commas."""
    value = value.strip()
    if value.startswith("["):
        try:
            items = json.loads(value)
        except json.JSONDecodeError as exc:
            raise DeviceError(f"{FAKE_GPUS_ENV}: not valid JSON ({exc})") from None
        out = []
        for i, item in enumerate(items):
            try:
                total = int(item["total_bytes"])
                out.append(GPU(i, str(item.get("name", f"fake-{i}")), total, int(item.get("free_bytes", total))))
            except (KeyError, TypeError, ValueError):
                raise DeviceError(
                    f"{FAKE_GPUS_ENV}[{i}]: expected an object with 'total_bytes' (and optional 'name', "
                    "'free_bytes')"
                ) from None
        return out
    return [fake_gpu(gpu_id.strip(), i) for i, gpu_id in enumerate(value.split(",")) if gpu_id.strip()]


def fake_gpu(gpu_id: str, index: int = 0) -> GPU:
    """A GPU shaped like a planner catalogue entry (e.g. "A100-80GB"), entirely free."""
    import planner

    spec = planner.GPUS.get(gpu_id)
    if spec is None:
        raise DeviceError(f"fake GPU {gpu_id!r}: unknown GPU id; accepted: {', '.join(planner.GPUS)}")
    return GPU(index, spec.name, int(spec.memory_bytes), int(spec.memory_bytes))
