"""Benchmark the runner's data check (preflight.check_dataset) on generated JSONL files: seconds and peak RSS.

    python bench/data_check.py [--sizes-mb 100 1024] [--baseline-rev 1d1534f] [--out bench/results/data_check]

For each size, writes a preference JSONL of about that many MiB in a temporary folder (the data doctor
benchmark's generator: varied prompts and answers, a repeat every 1000 rows), then runs the check in a
child process that reports its own peak RSS (getrusage RUSAGE_SELF), so each figure is one process's.
At the smallest size it also measures the recipe's load (load_and_normalize, which keeps every
normalized row) and, with --baseline-rev, the check as it was at that git revision (the whole file
read into lists, as `git show REV:runners/data/load.py` has it). The files are deleted afterwards.
Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.data_doctor import generate  # noqa: E402  (one generator for both data benchmarks)

CHILD = """
import json, resource, sys, time
what, path = sys.argv[1], sys.argv[2]
t = time.perf_counter()
if what == "check":
    from runners.launch.preflight import check_dataset
    from runners.rundir.spec import RunSpec
    spec = RunSpec.parse({"method": "dpo", "model": "unused/model", "dataset": {"path": path}})
    rows = len(check_dataset(spec))
    detail = "first rows kept: %d" % rows
elif what == "recipe-load":
    from runners.data.load import load_and_normalize
    dataset, fmt = load_and_normalize(path, "dpo")
    rows = len(dataset)
    detail = "rows kept: %d" % rows
else:  # baseline: load.py of an older revision, from a file
    import importlib.util
    spec = importlib.util.spec_from_file_location("baseline_load", sys.argv[3])
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_load"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    dataset, fmt = module.load_and_normalize(path, "dpo")
    rows = len(dataset)
    detail = "rows kept: %d" % rows
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
print(json.dumps({"seconds": seconds, "peak_rss_bytes": peak, "detail": detail}))
"""


def measure(what: str, path: Path, *extra: str) -> dict:
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, what, str(path), *extra], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    wall = time.perf_counter() - t
    if done.returncode:
        raise SystemExit(f"{what} on {path} failed:\n{done.stderr[-2000:]}")
    child = json.loads(done.stdout.strip().splitlines()[-1])
    return {"what": what, "seconds": round(child["seconds"], 2), "process_wall_seconds": round(wall, 2),
            "peak_rss_bytes": child["peak_rss_bytes"], "peak_rss_mib": round(child["peak_rss_bytes"] / 2**20, 1),
            "detail": child["detail"]}


def baseline_file(rev: str, folder: Path) -> Path:
    text = subprocess.run(["git", "show", f"{rev}:runners/data/load.py"], capture_output=True, text=True, cwd=ROOT,
                          check=True).stdout
    path = folder / "baseline_load.py"
    path.write_text(text, encoding="utf-8")
    return path


def markdown(result: dict) -> str:
    lines = ["# Data check: peak memory and time", "",
             f"`python bench/data_check.py` on {result['machine']} ({result['cpus']} CPUs, shared), Python "
             f"{result['python']}. Each row is one child process; peak RSS is that process's own "
             "(getrusage RUSAGE_SELF), interpreter and imports included.", "",
             "| file | rows | what | seconds | peak RSS (MiB) |", "|---|---|---|---|---|"]
    for run in result["runs"]:
        lines.append(f"| {run['file_mib']} MiB | {run['rows']:,} | {run['label']} | {run['seconds']} | "
                     f"{run['peak_rss_mib']} |")
    lines += ["", result["note"], ""]
    return "\n".join(lines)


LABELS = {"check": "preflight check_dataset (scan_rows, streamed)",
          "recipe-load": "recipe load_and_normalize (every normalized row, as Arrow columns)",
          "baseline": "check before this change (load_and_normalize of {rev}: whole file in lists)"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes-mb", type=int, nargs="+", default=[100, 1024])
    ap.add_argument("--baseline-rev", help="also measure the check at this git revision (smallest size only)")
    ap.add_argument("--out", default="bench/results/data_check")
    args = ap.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i, size_mb in enumerate(sorted(args.sizes_mb)):
            path = folder / f"pairs_{size_mb}.jsonl"
            rows = generate(path, size_mb * 2**20)
            whats = [("check", ())]
            if i == 0:
                whats.append(("recipe-load", ()))
                if args.baseline_rev:
                    whats.append(("baseline", (str(baseline_file(args.baseline_rev, folder)),)))
            for what, extra in whats:
                run = measure(what, path, *extra)
                run.update(file_mib=round(path.stat().st_size / 2**20, 1), rows=rows,
                           label=LABELS[what].format(rev=args.baseline_rev))
                runs.append(run)
                print(json.dumps(run), flush=True)
            path.unlink()
    result = {"runs": runs, "cpus": os.cpu_count(), "machine": platform.platform(),
              "python": platform.python_version(),
              "note": "The check keeps per row an 8-byte prompt digest (array('Q'), plus numpy's sorted copy "
                      "when counting distinct prompts) and the first 8 normalized rows; the rest of its peak is "
                      "the interpreter with datasets/pyarrow imported. The recipe holds every normalized row "
                      "(the trainer needs them) as an Arrow table built 8,192 rows at a time, then tokenizes "
                      "only the rows max_steps reaches."}
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
