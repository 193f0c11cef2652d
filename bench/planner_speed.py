"""Planner speed: `import planner` (torch must stay unimported) and one estimate.

Goals (issue 2): one estimate <= 1 ms; import <= 0.3 s. Writes bench/results/planner_speed.json.
Run: python bench/planner_speed.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "planner_speed.json"

IMPORT_PROBE = (
    "import time, sys; t = time.perf_counter(); import planner; dt = time.perf_counter() - t; "
    "print(dt, 'torch' in sys.modules)"
)


def import_time(repeats: int = 5) -> tuple[float, bool]:
    times, torch_loaded = [], False
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, check=True)
        dt, loaded = out.stdout.split()
        times.append(float(dt))
        torch_loaded |= loaded == "True"
    return statistics.median(times), torch_loaded


def estimate_time(method: str, with_min_gpus: bool, n: int) -> float:
    import planner

    req = planner.PlanRequest("meta-llama/Llama-3.1-8B", method=method, gpu="H100-80GB")
    planner.estimate(req, with_min_gpus=with_min_gpus)  # warm the catalogue cache
    t = time.perf_counter()
    for _ in range(n):
        planner.estimate(req, with_min_gpus=with_min_gpus)
    return (time.perf_counter() - t) / n


def main() -> int:
    imp, torch_loaded = import_time()
    result = {
        "import_planner_s": round(imp, 4),
        "torch_imported": torch_loaded,
        "estimate_ms": {m: round(estimate_time(m, False, 2000) * 1e3, 4) for m in ("sft", "dpo", "ppo", "rlaif")},
        "estimate_with_min_gpus_ms": {m: round(estimate_time(m, True, 20) * 1e3, 2) for m in ("dpo", "ppo")},
        "python": sys.version.split()[0],
    }
    result["goals_met"] = imp <= 0.3 and not torch_loaded and max(result["estimate_ms"].values()) <= 1.0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["goals_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
