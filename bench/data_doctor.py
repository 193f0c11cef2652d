"""Benchmark the data doctor on a generated large JSONL file: seconds and peak RSS.

    python bench/data_doctor.py --size-mb 1024 [--out bench/results/data_doctor.json] [--keep FILE]

Writes a preference JSONL of about --size-mb MiB (varied prompts and answers, some duplicates), then runs
`runners.data.doctor.inspect` on it in a child process (so the peak RSS is the doctor's alone, read from
getrusage of the child) and records the size, rows, seconds, peak RSS, the sample size and the findings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("the a to of and in for on with how why what when can should could my your this that make fix "
         "clean store choose paint move test plan check bread tea rice bike tent garden shelf kite soup map "
         "lamp fence sail clock quilt drum violin canoe pond roof first then next finally carefully quickly "
         "slowly gently water heat oil salt time tool box rope knife board brush cloth paper glue nail screw").split()


def generate(path: Path, size_bytes: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    rows = 0
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < size_bytes:
            prompt = " ".join(rng.choices(WORDS, k=rng.randint(8, 40))) + "?"
            chosen = " " + " ".join(rng.choices(WORDS, k=rng.randint(20, 160))) + "."
            rejected = " " + " ".join(rng.choices(WORDS, k=rng.randint(10, 140))) + "."
            line = json.dumps({"prompt": f"Q{rows}: {prompt}", "chosen": chosen, "rejected": rejected}) + "\n"
            if rows % 1000 == 999:  # a few exact duplicates
                f.write(line)
                written += len(line)
                rows += 1
            f.write(line)
            written += len(line)
            rows += 1
    return rows


CHILD = """
import json, sys, time
from runners.data import doctor
t = time.perf_counter()
r = doctor.inspect(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - t, "pairs": r["pairs"], "sample": r["sample"],
                  "codes": [f["code"] for f in r["findings"]], "findings": r["findings"]}))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--out", default="bench/results/data_doctor.json")
    ap.add_argument("--keep", help="write the generated file here (default: a temporary file, removed)")
    args = ap.parse_args(argv)
    path = Path(args.keep) if args.keep else Path(tempfile.mkdtemp()) / "pairs.jsonl"
    if path.exists() and path.stat().st_size >= args.size_mb * 2**20:
        rows = sum(1 for _ in open(path, "rb"))
        gen_s = 0.0
    else:
        t = time.perf_counter()
        rows = generate(path, args.size_mb * 2**20)
        gen_s = time.perf_counter() - t
    size = path.stat().st_size
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], check=False)
    wall = time.perf_counter() - t
    if done.returncode:
        print(done.stderr, file=sys.stderr)
        return 1
    child = json.loads(done.stdout.strip().splitlines()[-1])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux: KiB
    result = {"file_bytes": size, "file_mib": round(size / 2**20, 1), "rows": rows, "pairs": child["pairs"],
              "generate_seconds": round(gen_s, 1), "inspect_seconds": round(child["seconds"], 1),
              "process_wall_seconds": round(wall, 1), "peak_rss_bytes": peak, "peak_rss_mib": round(peak / 2**20, 1),
              "sample": child["sample"], "codes": child["codes"], "cpus": os.cpu_count(),
              "machine": platform.platform(), "python": platform.python_version(),
              "note": "no --model: whitespace-word lengths over every pair; near-duplicates/n-grams on the sample"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))
    if not args.keep:
        path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
