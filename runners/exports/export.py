"""write_export(): the planner's placement for a run rendered for one engine into
``<run dir>/export-<engine>/``, with placement.json, PINS.json and checks.json. Writes files,
launches nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from runners.exports import to_accelerate, to_openrlhf, to_verl
from runners.exports.common import (
    DEFAULT_GPU,
    PINS,
    ExportResult,
    check_method,
    plan_placement,
    run_check,
    write_checks,
)
from runners.rundir.spec import RunSpec


def write_export(run_dir: Path, spec: RunSpec, engine: str, *, nodes: int, gpus_per_node: int,
                 gpu: str = DEFAULT_GPU, repo: Path | None = None, main_process_ip: str = "127.0.0.1",
                 run_checks: bool = True, host_ram_gib: float | None = None) -> ExportResult:
    check_method(engine, spec.method)
    placement = plan_placement(spec, engine, nodes=nodes, gpus_per_node=gpus_per_node, gpu=gpu,
                               host_ram_gib=host_ram_gib)
    folder = Path(run_dir) / f"export-{engine}"
    folder.mkdir(parents=True, exist_ok=True)
    checks: dict[str, dict] = {}
    if engine == "accelerate":
        spec_path = Path(run_dir) / "spec.yaml"
        files = to_accelerate.render(placement, spec, folder, spec_path=spec_path,
                                     repo=repo or Path(__file__).resolve().parents[2], python=sys.executable,
                                     main_process_ip=main_process_ip)
        if run_checks:
            run_check(checks, "accelerate_config_loader", to_accelerate.check_yaml_loads, folder / "accelerate.yaml")
            run_check(checks, "shellcheck", to_accelerate.check_shellcheck, folder / "job.sbatch",
                      folder / "launch_node.sh")
            checks["two_node_cpu_dpo_step"] = {"status": "not run at export",
                                               "detail": "tests/runners/exports/test_exports.py::test_two_nodes_on_localhost_run_a_dpo_step (slow)"}
    elif engine == "verl":
        files = to_verl.render(placement, spec, folder)
        if run_checks:
            run_check(checks, "hydra_compose_with_verl_config", to_verl.check_compose, folder)
            run_check(checks, "verl_validate_config", to_verl.check_validate, folder)
            if Path(spec.model).is_dir():
                run_check(checks, "verl_rlhf_dataset_loads_parquet", to_verl.check_dataset, folder, spec.model)
            else:
                checks["verl_rlhf_dataset_loads_parquet"] = {
                    "status": "skipped", "detail": "the model's tokenizer is not a local directory here"}
            run_check(checks, "shellcheck", to_accelerate.check_shellcheck, folder / "ray_job.sh")
    else:
        files, module, argv = to_openrlhf.render(placement, spec, folder)
        if run_checks:
            run_check(checks, "openrlhf_parser_and_placement", to_openrlhf.check_parse, module, argv)
            run_check(checks, "shellcheck", to_accelerate.check_shellcheck, folder / "launch.sh")
    (folder / "placement.json").write_text(json.dumps(placement.to_dict(), indent=2, default=str) + "\n",
                                           encoding="utf-8")
    (folder / "PINS.json").write_text(json.dumps({"engine": engine, "targets": PINS[engine]}, indent=2) + "\n",
                                      encoding="utf-8")
    (folder / "PLACEMENT.txt").write_text(placement.summary() + "\n", encoding="utf-8")
    write_checks(folder, checks)
    files += ["placement.json", "PINS.json", "PLACEMENT.txt", "checks.json"]
    return ExportResult(engine, folder, files, placement.to_dict(), checks, list(placement.notes))


def export_command(run_dir: Path, spec: RunSpec, args) -> int:
    """`alignplan run ... --export ENGINE --nodes N --gpus G`: write the export, print where and what."""
    from runners.rundir.spec import SpecError

    try:
        result = write_export(run_dir, spec, args.export, nodes=args.nodes, gpus_per_node=args.gpus,
                              gpu=args.gpu_type, host_ram_gib=getattr(args, "host_ram_gib", None))
    except (SpecError, ValueError, FileNotFoundError) as exc:
        print(f"error: export {args.export}: {exc}", file=sys.stderr)
        return 2
    doc = {"export": result.engine, "folder": str(result.folder), "files": result.files,
           "checks": {k: v["status"] for k, v in result.checks.items()}, "notes": result.notes,
           "launched": False}
    if getattr(args, "json", False):
        print(json.dumps(doc, indent=2))
    else:
        print((result.folder / "PLACEMENT.txt").read_text(encoding="utf-8"), end="")
        print(f"export written to {result.folder} (launches nothing)")
        for name, check in result.checks.items():
            print(f"  check {name}: {check['status']}")
    return 0
