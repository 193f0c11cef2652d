"""GPU catalogue: the memory each GPU reports to CUDA/ROCm (what `torch.cuda.mem_get_info` calls total).

The marketing size (80 GB) is not what a program can allocate: the driver reports a little less,
and the CUDA context (counted by the planner as overhead) takes its share of that.
Figures: total memory as reported by nvidia-smi / rocm-smi in MiB, converted to bytes.

Speed (for planner.timecost, issue 14): dense bf16 tensor TFLOP/s (no 2:4 sparsity; fp16 where the
GPU has no bf16), HBM/GDDR bandwidth in GB/s (10^9 bytes/s), the GPU-to-GPU link inside a node
(NVLink/Infinity Fabric, or PCIe) and the usual per-GPU network between nodes, all in GB/s per
direction. Sources: the vendor datasheets, cited beside each row. What a program achieves of
these peaks is planner.timecost's efficiency defaults (docs/time-cost.md), not part of the GPU.
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
    bf16_tflops: float = 0.0  # dense bf16 (fp16 without bf16) tensor-core peak, TFLOP/s
    hbm_gbps: float = 0.0  # memory bandwidth, GB/s
    interconnect_gbps: float = 0.0  # GPU-to-GPU inside a node, GB/s per direction
    network_gbps: float = 0.0  # per-GPU network between nodes in the usual server, GB/s per direction

    @property
    def usable_bytes(self) -> int:
        return self.memory_bytes

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GIB


GPUS: dict[str, GPUSpec] = {
    g.id: g
    for g in [
        # T4 datasheet (2019): 65 TFLOPs fp16 tensor (no bf16), 320 GB/s GDDR6, PCIe 3.0 x16 (16 GB/s).
        GPUSpec("T4-16GB", "NVIDIA T4", 15360 * MIB, bf16=False, bf16_tflops=65, hbm_gbps=320,
                interconnect_gbps=16, network_gbps=3),
        # A10 datasheet (2021): 125 TFLOPs bf16 dense, 600 GB/s; AWS's A10G clocks lower (about 70 TFLOPs
        # bf16 per the g5 instance pages), which is what we use; PCIe 4.0 x16 (32 GB/s).
        GPUSpec("A10G-24GB", "NVIDIA A10G", 23028 * MIB, bf16_tflops=70, hbm_gbps=600,
                interconnect_gbps=32, network_gbps=12.5),
        # L4 datasheet (2023): 121 TFLOPs bf16 dense (242 with sparsity), 300 GB/s, PCIe 4.0 x16.
        GPUSpec("L4-24GB", "NVIDIA L4", 23034 * MIB, bf16_tflops=121, hbm_gbps=300,
                interconnect_gbps=32, network_gbps=12.5),
        # Ada Lovelace whitepaper (2022), RTX 4090: 165.2 TFLOPs bf16 with fp32 accumulate (dense),
        # 1008 GB/s GDDR6X, no NVLink (PCIe 4.0 x16).
        GPUSpec("RTX4090-24GB", "NVIDIA GeForce RTX 4090", 24564 * MIB, bf16_tflops=165, hbm_gbps=1008,
                interconnect_gbps=32, network_gbps=3),
        # L40S datasheet (2023): 362 TFLOPs bf16 dense (733 with sparsity), 864 GB/s, PCIe 4.0 x16.
        GPUSpec("L40S-48GB", "NVIDIA L40S", 46068 * MIB, bf16_tflops=362, hbm_gbps=864,
                interconnect_gbps=32, network_gbps=25),
        # A100 datasheet (2021), SXM4: 312 TFLOPs bf16 dense, 1555 GB/s (40GB) / 2039 GB/s (80GB),
        # NVLink 3 600 GB/s bidirectional (300 per direction); DGX A100: 200 Gb/s HDR per GPU.
        GPUSpec("A100-40GB", "NVIDIA A100-SXM4-40GB", 40960 * MIB, bf16_tflops=312, hbm_gbps=1555,
                interconnect_gbps=300, network_gbps=25),
        GPUSpec("A100-80GB", "NVIDIA A100-SXM4-80GB", 81920 * MIB, bf16_tflops=312, hbm_gbps=2039,
                interconnect_gbps=300, network_gbps=25),
        # H100 datasheet (2023), SXM5: 989 TFLOPs bf16 dense (1979 with sparsity), 3350 GB/s,
        # NVLink 4 900 GB/s bidirectional; DGX H100: 400 Gb/s NDR per GPU.
        GPUSpec("H100-80GB", "NVIDIA H100 80GB HBM3", 81559 * MIB, bf16_tflops=989, hbm_gbps=3350,
                interconnect_gbps=450, network_gbps=50),
        # H200 datasheet (2024), SXM: 989 TFLOPs bf16 dense, 4800 GB/s, NVLink 900 GB/s bidirectional.
        GPUSpec("H200-141GB", "NVIDIA H200", 143771 * MIB, bf16_tflops=989, hbm_gbps=4800,
                interconnect_gbps=450, network_gbps=50),
        # HGX B200 datasheet (2024): 2.25 PFLOPs bf16 dense per GPU (4.5 with sparsity), 8 TB/s,
        # NVLink 5 1.8 TB/s bidirectional; DGX B200: 400 Gb/s per GPU.
        GPUSpec("B200-192GB", "NVIDIA B200", 183359 * MIB, bf16_tflops=2250, hbm_gbps=8000,
                interconnect_gbps=900, network_gbps=50),
        # AMD Instinct MI300X datasheet (2023): 1307.4 TFLOPs bf16 dense, 5.3 TB/s, Infinity Fabric
        # 7 links x 128 GB/s (896 GB/s bidirectional) per GPU.
        GPUSpec("MI300X-192GB", "AMD Instinct MI300X", 196592 * MIB, vendor="amd", bf16_tflops=1307,
                hbm_gbps=5300, interconnect_gbps=448, network_gbps=50),
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


# --- the host CPU as a pseudo-GPU (issue 14: timing CPU runs) -------------------------------------------

CPU_ID = "cpu"
CPU_PEAK_ENV = "ALIGNPLAN_CPU_PEAK_GFLOPS"  # overrides the peak derived below
CPU_BANDWIDTH_ENV = "ALIGNPLAN_CPU_MEM_GBPS"  # overrides DEFAULT_CPU_MEM_GBPS
# Copy bandwidth (read + write) of a 256 MiB float32 array measured with numpy.copyto on the development
# VM (AMD EPYC Zen 4, 2 vCPUs, shared with other jobs): 12.1 GB/s. A CPU's bandwidth depends on its
# memory channels, not on anything /proc/cpuinfo says, so other hosts should set ALIGNPLAN_CPU_MEM_GBPS.
DEFAULT_CPU_MEM_GBPS = 12.0


def _cpu_flops_per_cycle(flags: set[str]) -> int:
    """fp32 FLOPs per cycle and core: 2 (a fused multiply-add) x 8 lanes (256-bit) x 2 FMA pipes = 32
    with AVX2 + FMA (Intel Haswell and later client cores, AMD Zen 2-4: Zen 4 runs AVX-512 as two
    256-bit halves, so AVX-512 alone does not double it); 8 with SSE only. Intel Xeons with two 512-bit
    FMA units reach 64: set ALIGNPLAN_CPU_PEAK_GFLOPS there."""
    return 32 if {"avx2", "fma"} <= flags else 8


def host_cpu() -> GPUSpec:
    """This machine's CPU as a device the time model can use: the theoretical fp32 peak (the precision
    CPU runs train in) = cores this process may use x the highest clock in /proc/cpuinfo x FLOPs per
    cycle (_cpu_flops_per_cycle), in the bf16_tflops field; memory bandwidth DEFAULT_CPU_MEM_GBPS or
    ALIGNPLAN_CPU_MEM_GBPS; memory the physical RAM. A datasheet-style peak, not a benchmark: what a
    run achieves of it is the MFU that `alignplan calibrate --device-type cpu` fits."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    mhz, flags, name = 0.0, set(), "CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "cpu MHz":
                    mhz = max(mhz, float(value or 0))
                elif key == "flags" and not flags:
                    flags = set(value.split())
                elif key == "model name" and name == "CPU":
                    name = value
    except (OSError, ValueError):
        pass
    mhz = mhz or 2000.0  # no /proc/cpuinfo (macOS): a middling clock; set ALIGNPLAN_CPU_PEAK_GFLOPS
    peak_gflops = cores * mhz / 1000 * _cpu_flops_per_cycle(flags)
    peak_gflops = _env_number(CPU_PEAK_ENV) or peak_gflops
    bandwidth = _env_number(CPU_BANDWIDTH_ENV) or DEFAULT_CPU_MEM_GBPS
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 0
    return GPUSpec(CPU_ID, f"{name} ({cores} cores)", ram, bf16=False, vendor="cpu",
                   bf16_tflops=peak_gflops / 1000, hbm_gbps=bandwidth)


def _env_number(name: str) -> float | None:
    import os

    raw = os.environ.get(name)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise PlannerError(name, f"must be a positive number, got {raw!r}") from None
    if not value > 0:
        raise PlannerError(name, f"must be a positive number, got {raw!r}")
    return value
