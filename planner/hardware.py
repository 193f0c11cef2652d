"""GPU catalogue: the memory each GPU reports to CUDA/ROCm (what `torch.cuda.mem_get_info` calls total).

The marketing size (80 GB) is not what a program can allocate: the driver reports a little less,
and the CUDA context (counted by the planner as overhead) takes its share of that.
Figures: total memory as reported by nvidia-smi / rocm-smi in MiB, converted to bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.errors import PlannerError

MIB = 2**20
GIB = 2**30


@dataclass(frozen=True)
class GPUSpec:
    id: str
    name: str
    memory_bytes: int  # as reported to programs
    bf16: bool = True
    vendor: str = "nvidia"

    @property
    def usable_bytes(self) -> int:
        return self.memory_bytes

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GIB


GPUS: dict[str, GPUSpec] = {
    g.id: g
    for g in [
        GPUSpec("T4-16GB", "NVIDIA T4", 15360 * MIB, bf16=False),
        GPUSpec("A10G-24GB", "NVIDIA A10G", 23028 * MIB),
        GPUSpec("L4-24GB", "NVIDIA L4", 23034 * MIB),
        GPUSpec("RTX4090-24GB", "NVIDIA GeForce RTX 4090", 24564 * MIB),
        GPUSpec("L40S-48GB", "NVIDIA L40S", 46068 * MIB),
        GPUSpec("A100-40GB", "NVIDIA A100-SXM4-40GB", 40960 * MIB),
        GPUSpec("A100-80GB", "NVIDIA A100-SXM4-80GB", 81920 * MIB),
        GPUSpec("H100-80GB", "NVIDIA H100 80GB HBM3", 81559 * MIB),
        GPUSpec("H200-141GB", "NVIDIA H200", 143771 * MIB),
        GPUSpec("B200-192GB", "NVIDIA B200", 183359 * MIB),
        GPUSpec("MI300X-192GB", "AMD Instinct MI300X", 196592 * MIB, vendor="amd"),
    ]
}


def _norm(s: str) -> str:
    return "".join(ch for ch in s.lower() if ch.isalnum())


def get_gpu(gpu: str | GPUSpec) -> GPUSpec:
    if isinstance(gpu, GPUSpec):
        return gpu
    if gpu in GPUS:
        return GPUS[gpu]
    key = _norm(str(gpu))
    for g in GPUS.values():
        if key in (_norm(g.id), _norm(g.name)):
            return g
    # "H100" alone: accept when exactly one catalogue entry starts with it.
    hits = [g for g in GPUS.values() if _norm(g.id).startswith(key)] if key else []
    if len(hits) == 1:
        return hits[0]
    raise PlannerError("gpu", f"unknown GPU {gpu!r}; accepted: {', '.join(GPUS)}")


def match_gpu_name(device_name: str, total_bytes: int | None = None) -> GPUSpec | None:
    """The catalogue entry for a device name as CUDA reports it (for the runners' device discovery)."""
    key = _norm(device_name)
    best = None
    for g in GPUS.values():
        model = _norm(g.id.split("-")[0])
        if model in key and (best is None or (total_bytes and abs(g.memory_bytes - total_bytes) < abs(best.memory_bytes - total_bytes))):
            best = g
    return best
