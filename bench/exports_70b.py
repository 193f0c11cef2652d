"""Llama-3.1-70B DPO and PPO on 8 x H100-80GB nodes: the fewest nodes that fit, the placement per role,
and the checks each export passes here (no GPU).

    python bench/exports_70b.py     # writes bench/results/exports_70b.json and .md (about a minute)

The model folder holds Llama-3.1-70B's public config.json (../shared/model-configs) and the tiny
demo tokenizer, so verl's validation and dataset checks can load it offline; no weights exist. The
PPO reward model and critic are the same 70B architecture. Host RAM is checked against a DGX H100's
2,048 GiB per node (planner.placement.NODE_HOST_RAM_GIB).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
CONFIG = ROOT.parent / "shared" / "model-configs" / "meta-llama--Llama-3.1-70B.json"
GIB = 2**30


def model_folder(tmp: Path) -> Path:
    from runners.demo.tiny import build_tiny_model

    tiny = build_tiny_model(tmp / "tiny")
    folder = tmp / "Llama-3.1-70B"
    folder.mkdir()
    shutil.copy(CONFIG, folder / "config.json")
    for f in tiny.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")) or f.name == "chat_template.jinja":
            shutil.copy(f, folder / f.name)
    return folder


def cases(model: str) -> list[tuple[str, str, dict]]:
    from runners.demo.tiny import demo_data_paths

    data = demo_data_paths()
    dpo = {"method": "dpo", "model": model, "dataset": {"path": str(data["preference"])},
           "hparams": {"max_length": 2048, "per_device_train_batch_size": 1}}
    ppo = {"method": "ppo", "model": model, "dataset": {"path": str(data["prompts"])},
           "reward": {"model": model}, "hparams": {"max_length": 2048, "response_length": 1024}}
    return [("DPO", "accelerate", dpo), ("DPO", "openrlhf", dpo), ("PPO", "verl", ppo), ("PPO", "openrlhf", ppo)]


def main() -> int:
    from runners.exports.common import fewest_nodes
    from runners.exports.export import write_export
    from runners.rundir.spec import RunSpec

    tmp = Path(tempfile.mkdtemp(prefix="alignplan-exports-"))
    os.environ.setdefault("ALIGNPLAN_RUNS_DIR", str(tmp / "runs"))
    model = str(model_folder(tmp))
    rows = []
    for label, engine, fields in cases(model):
        spec = RunSpec.parse(fields)
        nodes, placement = fewest_nodes(spec, engine, gpus_per_node=8, gpu="H100-80GB")
        result = write_export(tmp / f"{label}-{engine}", spec, engine, nodes=nodes, gpus_per_node=8, gpu="H100-80GB")
        roles = {r.role: {"gpus": r.gpus, "peak_gib": round(r.peak_bytes_per_gpu / GIB, 1),
                          "tensor_parallel": r.tensor_parallel, "engines": r.engines,
                          "gpu_memory_utilization": r.detail.get("gpu_memory_utilization")}
                 for r in placement.roles}
        rows.append({"method": label, "engine": engine, "nodes": nodes, "gpus_per_node": 8,
                     "zero": placement.zero, "offload": placement.offload,
                     "peak_gib_per_gpu": round(placement.peak_bytes_per_gpu / GIB, 1),
                     "usable_gib_per_gpu": round(placement.usable_bytes_per_gpu / GIB, 1),
                     "phases_gib": {k: round(v / GIB, 1) for k, v in placement.phases.items()},
                     "host_gib_per_node": round(placement.host_bytes_per_node / GIB, 1),
                     "host_ram_gib_per_node": round(placement.host_ram_bytes_per_node / GIB),
                     "host_fits": placement.host_fits, "roles": roles,
                     "checks": {k: v["status"] for k, v in result.checks.items()},
                     "check_details": {k: str(v.get("detail"))[:300] for k, v in result.checks.items()},
                     "files": result.files})
        print(f"{label} {engine}: {nodes} node(s), peak {rows[-1]['peak_gib_per_gpu']} GiB, "
              f"host {rows[-1]['host_gib_per_node']} GiB, checks {rows[-1]['checks']}", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    meta = {"written": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version(),
            "gpu": "H100-80GB (planned; no GPU used)", "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "exports_70b.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    lines = ["# Llama-3.1-70B exports on 8 x H100-80GB nodes", "",
             f"Written by `python bench/exports_70b.py` on {meta['written']}. Fewest nodes that fit; GiB per GPU "
             "of 79.6 usable; host RAM per node checked against a DGX H100's 2,048 GiB. No GPU ran: the checks "
             "are the engines' own loaders and parsers on this CPU.", "",
             "| method | engine | nodes x GPUs | sharding / offload | peak per GPU | phases | host RAM per node | checks |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        phases = ", ".join(f"{k} {v}" for k, v in r["phases_gib"].items()) or "-"
        checks = "; ".join(f"{k}: {v}" for k, v in r["checks"].items())
        lines.append(f"| {r['method']} | {r['engine']} | {r['nodes']} x 8 | ZeRO-{r['zero']} / {r['offload'] or 'none'} "
                     f"| {r['peak_gib_per_gpu']} | {phases} | {r['host_gib_per_node']} of {r['host_ram_gib_per_node']} "
                     f"({'fits' if r['host_fits'] else 'does not fit'}) | {checks} |")
    lines += ["", "Roles (GPUs, GiB per GPU in the role's phase, vLLM TP x engines and memory share):", ""]
    for r in rows:
        if len(r["roles"]) > 1:
            parts = []
            for name, x in r["roles"].items():
                tp = f", TP {x['tensor_parallel']} x {x['engines']} at {x['gpu_memory_utilization']}" if x["tensor_parallel"] else ""
                parts.append(f"{name} {x['gpus']} GPUs {x['peak_gib']} GiB{tp}")
            lines.append(f"- {r['method']} / {r['engine']}: " + "; ".join(parts))
    (RESULTS / "exports_70b.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
