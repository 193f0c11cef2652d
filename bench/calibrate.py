"""The calibration table: the analytic plan against the traced step, with every peer on the same rows.

    python bench/calibrate.py                 # the full grid; writes bench/results/calibration.{json,csv,md}
    python bench/calibrate.py --quick         # a handful of small rows
    python bench/calibrate.py --only ROW_ID   # some rows (repeatable); results merged into the existing json
    python bench/calibrate.py --report        # rewrite csv/md from the json without tracing anything

Each row is one PlanRequest (catalogue model, method, full or LoRA, checkpointing, sequence length,
loss implementation), planned twice:

  analytic   planner.estimate(): per phase, the total without the overhead term (a trace has no CUDA
             context or allocator reserve), so both sides count the same tensors.
  traced     planner.traced.trace_plan(): the real model built from the same config under fake
             tensors, the method's step run as the trainer runs it and followed by torch's MemTracker.

The row's ratio is analytic / traced at each side's peak, and per phase. The peers answer the same row
through their own code, and their error is taken against the same traced peak:

  accelerate        bench/peers.py accelerate_training_bytes(): accelerate estimate-memory's
                    "Training using Adam" (float16) for the model (no method, no LoRA, no sequence).
  DeepSpeed ZeRO-2  bench/peers.py deepspeed_bytes(spec, 1 GPU): DeepSpeed's own
                    estimate_zero2_model_states_mem_needs (model states only), when deepspeed imports
                    (PYTHONPATH=/path/to/deepspeed as for bench/peers.py); otherwise left empty.
  16 B/param        the folk rule "16 bytes per parameter" (2 weights + 2 gradients + 12 fp32 Adam state
                    with master weights), as the simple formula it is: 16 x total parameters.
  18 B/param        the same rule with fp32 gradients: 18 x total parameters.
  gpu_poor          not run: it is a web page (JavaScript), not a Python package; there is nothing to
                    call offline.

Rows are written to the json as they finish (a run stopped part-way keeps what it traced); a later run
with --only merges its rows in.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import planner  # noqa: E402
from planner.errors import PlannerError  # noqa: E402
from planner.estimate import COMPONENTS  # noqa: E402

RESULTS = ROOT / "bench" / "results"
GIB = 2**30
TARGET_MEDIAN = 0.05  # |analytic / traced - 1| over the table
TARGET_WORST = 0.10
BATCH = 4
PEERS = ("accelerate", "deepspeed_zero2", "rule_16", "rule_18")

# The architectures of the grid: what each brings that the others do not.
ARCHS = {
    "qwen2.5-0.5b": ("Qwen/Qwen2.5-0.5B", "151,936-token vocabulary on a 0.5B model (logits dominate), tied head"),
    "llama-3.2-1b": ("meta-llama/Llama-3.2-1B", "GQA 32/8, 128k vocabulary, tied head"),
    "qwen3-0.6b": ("Qwen/Qwen3-0.6B", "q/k norms, head_dim 128 wider than hidden/heads, tied head"),
    "gemma-2-2b": ("google/gemma-2-2b", "logit soft-capping (eager attention), 256k vocabulary, sliding window"),
    "llama-3.1-8b": ("meta-llama/Llama-3.1-8B", "GQA 32/8 at 8B, untied 128k head"),
    "qwen3-moe": ("Qwen/Qwen3-30B-A3B", "MoE: 128 experts, 8 active, fused expert weights"),
}


@dataclasses.dataclass(frozen=True)
class Row:
    arch: str
    method: str
    lora: bool = False
    ckpt: bool = True
    seq: int = 512
    loss: str | None = None  # fused | chunked | materialised; None: the method's default
    batch: int = BATCH

    @property
    def id(self) -> str:
        parts = [self.arch, self.method, "lora" if self.lora else "full", "ckpt" if self.ckpt else "nockpt",
                 str(self.seq)]
        if self.loss:
            parts.append(self.loss)
        if self.batch != BATCH:
            parts.append(f"b{self.batch}")
        return "-".join(parts)


def _grid() -> list[Row]:
    q, ll1, q3, g2, ll8, moe = ARCHS
    return [
        # the large-vocabulary 0.5B model carries the loss options and every method family
        Row(q, "sft"), Row(q, "sft", seq=2048), Row(q, "sft", ckpt=False), Row(q, "sft", lora=True, seq=2048),
        Row(q, "sft", seq=2048, loss="chunked"), Row(q, "sft", loss="materialised"),
        Row(q, "dpo", loss="fused"), Row(q, "dpo", loss="chunked"), Row(q, "dpo", loss="materialised"),
        Row(q, "dpo", lora=True, seq=2048), Row(q, "dpo", lora=True, ckpt=False),
        Row(q, "ipo"), Row(q, "kto"), Row(q, "kto", lora=True, seq=2048), Row(q, "orpo"),
        Row(q, "simpo", lora=True, seq=2048), Row(q, "grpo"), Row(q, "grpo", loss="materialised"),
        Row(q, "grpo", lora=True, seq=2048), Row(q, "rloo"), Row(q, "ppo", lora=True),
        # GQA at 1B
        Row(ll1, "sft", seq=2048), Row(ll1, "sft", lora=True, ckpt=False, seq=2048), Row(ll1, "dpo", seq=2048),
        Row(ll1, "dpo", lora=True, loss="materialised"), Row(ll1, "kto", ckpt=False), Row(ll1, "orpo", lora=True, seq=2048),
        Row(ll1, "grpo", lora=True), Row(ll1, "rloo", lora=True, seq=2048), Row(ll1, "ppo"),
        Row(ll1, "simpo", loss="chunked"),
        # Qwen3 dense
        Row(q3, "sft"), Row(q3, "dpo", lora=True, seq=2048), Row(q3, "grpo", seq=2048), Row(q3, "ipo", lora=True, ckpt=False),
        # soft-capping
        Row(g2, "sft"), Row(g2, "sft", lora=True, seq=2048), Row(g2, "dpo", loss="fused"),
        Row(g2, "dpo", lora=True, seq=2048, loss="materialised"), Row(g2, "grpo", lora=True), Row(g2, "kto", lora=True, ckpt=False),
        # 8B GQA
        Row(ll8, "sft", seq=2048), Row(ll8, "sft", lora=True, seq=2048), Row(ll8, "dpo", lora=True, seq=2048),
        Row(ll8, "dpo"), Row(ll8, "grpo", lora=True), Row(ll8, "orpo", lora=True, ckpt=False),
        # MoE
        Row(moe, "sft", lora=True), Row(moe, "dpo", lora=True),
    ]


GRID = _grid()
QUICK = [Row("qwen2.5-0.5b", "sft", batch=1), Row("qwen2.5-0.5b", "dpo", lora=True, batch=1),
         Row("qwen3-0.6b", "grpo", lora=True, batch=2), Row("gemma-2-2b", "sft", lora=True, batch=1)]


def request_for(row: Row, model=None) -> planner.PlanRequest:
    """The row's PlanRequest. The loss goes in PlanRequest.loss when the planner has that field; without
    it "chunked" is also PlanRequest.chunked_loss, and the analytic side plans the method's default
    (the row's loss_in_request is then False and its gap is the missing option's)."""
    fields = {f.name for f in dataclasses.fields(planner.PlanRequest)}
    kw = dict(model=model or ARCHS[row.arch][0], method=row.method, seq_len=row.seq, batch_size=row.batch,
              grad_ckpt=row.ckpt, gpu="H100-80GB")
    if row.lora:
        # fused MoE expert weights take peft's ParamWrapper, which refuses dropout; dense rows keep the default
        kw.update(lora_rank=16, lora_dropout=0.0 if row.arch == "qwen3-moe" else 0.05)
    if row.method in ("grpo", "rloo"):
        kw["num_generations"] = row.batch
    if row.loss and "loss" in fields:
        kw["loss"] = row.loss
    elif row.loss == "chunked":
        kw["chunked_loss"] = True
    req = planner.PlanRequest(**kw)
    if row.loss and "loss" not in fields:
        # the tracer reads the loss from the request (planner.traced.loss_implementation); the analytic
        # plan has no field for it yet and plans the method's default: the row then shows that gap
        object.__setattr__(req, "loss", row.loss)
    return req


# --- peers ----------------------------------------------------------------------------------------

_PEER_CACHE: dict[str, dict[str, int | None]] = {}


def peer_bytes(model) -> dict[str, int | None]:
    """Each peer's answer for the model (none of them reads the method, LoRA or the sequence)."""
    spec = planner.load_model(model)
    if spec.id in _PEER_CACHE:
        return _PEER_CACHE[spec.id]
    sys.path.insert(0, str(ROOT / "bench"))
    import peers

    try:
        _model, acc = peers.accelerate_training_bytes(spec)
    except Exception as e:  # accelerate cannot build every config on the meta device
        print(f"  accelerate failed for {spec.id}: {type(e).__name__}: {e}", file=sys.stderr)
        acc = None
    out = {"accelerate": acc, "deepspeed_zero2": peers.deepspeed_bytes(spec, 1, 0),
           "rule_16": 16 * spec.params_total, "rule_18": 18 * spec.params_total}
    _PEER_CACHE[spec.id] = out
    return out


# --- one row --------------------------------------------------------------------------------------


def _analytic_phases(plan) -> dict[str, dict]:
    return {p["name"]: {"total": p["total_bytes"] - p["components"]["overhead"],
                        "components": {k: v for k, v in p["components"].items() if k != "overhead"}}
            for p in plan.phases}


def gaps_at_peak(analytic_components: dict[str, int], traced_components: dict[str, int]) -> list[dict]:
    """Per component, analytic - traced at the peak, largest first (what the row's gap is made of)."""
    out = []
    for comp in COMPONENTS:
        if comp == "overhead":
            continue
        a, t = analytic_components.get(comp, 0), traced_components.get(comp, 0)
        if a or t:
            out.append({"component": comp, "analytic_gib": round(a / GIB, 3), "traced_gib": round(t / GIB, 3),
                        "diff_gib": round((a - t) / GIB, 3)})
    return sorted(out, key=lambda g: -abs(g["diff_gib"]))


def run_row(row: Row, model=None, with_peers: bool = True) -> dict:
    from planner.traced import trace_plan

    req = request_for(row, model)
    plan = planner.estimate(req, with_min_gpus=False)
    started = time.time()
    traced = trace_plan(req)
    seconds = time.time() - started
    analytic = _analytic_phases(plan)
    a_peak = analytic[plan.peak_phase]
    phases = []
    for ph in traced.phases:
        a = analytic.get(ph["name"])
        phases.append({"phase": ph["name"], "traced_gib": round(ph["total_bytes"] / GIB, 3),
                       "analytic_gib": None if a is None else round(a["total"] / GIB, 3),
                       "ratio": None if a is None or not ph["total_bytes"] else round(a["total"] / ph["total_bytes"], 4),
                       "gaps": None if a is None else gaps_at_peak(a["components"], ph["components"])})
    traced_peak = traced.peak_bytes_per_gpu
    ratio = a_peak["total"] / traced_peak
    # the gap at the traced peak phase, component by component (the analytic phase of the same name)
    a_at = analytic.get(traced.peak_phase, a_peak)["components"]
    out = {
        "id": row.id, "arch": row.arch, "model": planner.load_model(req.model).id,
        "method": row.method, "lora": row.lora, "grad_ckpt": row.ckpt, "seq_len": row.seq, "batch_size": row.batch,
        "loss_asked": row.loss, "loss_traced": traced.loss,
        "loss_in_request": "loss" in {f.name for f in dataclasses.fields(planner.PlanRequest)},
        "analytic_peak_gib": round(a_peak["total"] / GIB, 3), "analytic_peak_phase": plan.peak_phase,
        "traced_peak_gib": round(traced_peak / GIB, 3), "traced_peak_phase": traced.peak_phase,
        "ratio": round(ratio, 4), "phases": phases,
        "gaps": gaps_at_peak(a_at, traced.components), "trace_seconds": round(seconds, 1),
        "traced_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if with_peers:
        for name, b in peer_bytes(req.model).items():
            out[f"{name}_gib"] = None if b is None else round(b / GIB, 3)
            out[f"{name}_ratio"] = None if b is None else round(b / traced_peak, 4)
    return out


# --- summary and files ----------------------------------------------------------------------------


def _stats(values: list[float]) -> dict[str, float | int | None]:
    errs = [abs(v - 1) for v in values if v is not None]
    if not errs:
        return {"rows": 0, "median_abs_error": None, "worst_abs_error": None}
    return {"rows": len(errs), "median_abs_error": round(median(errs), 4), "worst_abs_error": round(max(errs), 4)}


def expressible(r: dict) -> bool:
    """Whether the analytic request could state the row's setup: a materialised loss needs
    PlanRequest.loss (every profile the grid uses defaults to the fused head)."""
    return r["loss_asked"] != "materialised" or r["loss_in_request"]


def summary(rows: list[dict]) -> dict:
    ours = _stats([r["ratio"] for r in rows])
    phase_ratios = [p["ratio"] for r in rows for p in r["phases"] if p["ratio"] is not None]
    s = {"alignplan": ours, "alignplan_every_phase": _stats(phase_ratios),
         "alignplan_expressible": _stats([r["ratio"] for r in rows if expressible(r)]),
         "rows_not_expressible": [r["id"] for r in rows if not expressible(r)],
         "target": {"median": TARGET_MEDIAN, "worst": TARGET_WORST},
         "meets_target": ours["rows"] > 0 and ours["median_abs_error"] <= TARGET_MEDIAN
         and ours["worst_abs_error"] <= TARGET_WORST,
         "rows_over_10pct": [r["id"] for r in rows if abs(r["ratio"] - 1) > TARGET_WORST],
         "rows_over_5pct": [r["id"] for r in rows if abs(r["ratio"] - 1) > TARGET_MEDIAN]}
    for peer in PEERS:
        s[peer] = _stats([r.get(f"{peer}_ratio") for r in rows])
    s["gpu_poor"] = "not run: a JavaScript web page, no Python package to call offline"
    return s


def _meta() -> dict:
    meta = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "accelerate", "deepspeed"):
        try:
            meta[name] = __import__(name).__version__
        except Exception:
            meta[name] = None
    return meta


CSV_FIELDS = ("id", "model", "method", "lora", "grad_ckpt", "seq_len", "batch_size", "loss_asked", "loss_traced",
              "analytic_peak_gib", "analytic_peak_phase", "traced_peak_gib", "traced_peak_phase", "ratio",
              "worst_phase_ratio", "largest_gap", "accelerate_gib", "accelerate_ratio", "deepspeed_zero2_gib",
              "deepspeed_zero2_ratio", "rule_16_gib", "rule_16_ratio", "rule_18_gib", "rule_18_ratio", "trace_seconds")


def _worst_phase(r: dict) -> float | None:
    rs = [p["ratio"] for p in r["phases"] if p["ratio"] is not None]
    return max(rs, key=lambda x: abs(x - 1)) if rs else None


def _largest_gap(r: dict) -> str:
    g = r["gaps"][0] if r["gaps"] else None
    return "" if g is None else f"{g['component']} {g['diff_gib']:+.2f} GiB"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def write(rows: list[dict], meta: dict, out_dir: Path = RESULTS) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    order = {r.id: i for i, r in enumerate(GRID + QUICK)}
    rows = sorted(rows, key=lambda r: order.get(r["id"], len(order)))
    s = summary(rows)
    (out_dir / "calibration.json").write_text(json.dumps({"meta": meta, "summary": s, "rows": rows}, indent=1) + "\n")
    with (out_dir / "calibration.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "worst_phase_ratio": _worst_phase(r), "largest_gap": _largest_gap(r)})
    lines = [
        "# Calibration: analytic plan against the traced step, peers on the same rows",
        "",
        f"Written by `python bench/calibrate.py` on {meta['when']} (torch {meta.get('torch')}, transformers "
        f"{meta.get('transformers')}, peft {meta.get('peft')}, accelerate {meta.get('accelerate')}, DeepSpeed "
        f"{meta.get('deepspeed') or 'not importable: its column is empty'}). {len(rows)} rows, batch {BATCH} unless "
        "the id says otherwise, bf16-kahan (the default), one GPU. GiB per GPU; analytic without its overhead term. "
        "Ratio = figure / traced peak. How the table is made: docs/accuracy.md.",
        "",
        "| | rows | median \\|error\\| | worst \\|error\\| |",
        "|---|---|---|---|",
        f"| alignplan (analytic, peak) | {s['alignplan']['rows']} | {_pct(s['alignplan']['median_abs_error'])} | "
        f"{_pct(s['alignplan']['worst_abs_error'])} |",
        f"| alignplan (analytic, peak), rows the request can state | {s['alignplan_expressible']['rows']} | "
        f"{_pct(s['alignplan_expressible']['median_abs_error'])} | {_pct(s['alignplan_expressible']['worst_abs_error'])} |",
        f"| alignplan (analytic, every phase) | {s['alignplan_every_phase']['rows']} | "
        f"{_pct(s['alignplan_every_phase']['median_abs_error'])} | {_pct(s['alignplan_every_phase']['worst_abs_error'])} |",
    ]
    labels = {"accelerate": "accelerate estimate-memory", "deepspeed_zero2": "DeepSpeed ZeRO-2 estimator",
              "rule_16": "16 bytes/param rule", "rule_18": "18 bytes/param rule"}
    for peer in PEERS:
        st = s[peer]
        lines.append(f"| {labels[peer]} | {st['rows']} | {_pct(st['median_abs_error'])} | {_pct(st['worst_abs_error'])} |")
    lines += [f"| gpu_poor | – | {s['gpu_poor']} | |", "",
              f"Target: median ≤ {TARGET_MEDIAN:.0%}, worst ≤ {TARGET_WORST:.0%}: "
              f"{'met' if s['meets_target'] else 'not met'}; rows over 10%: {', '.join(s['rows_over_10pct']) or 'none'}. "
              "Rows the analytic request cannot state (a materialised loss before PlanRequest.loss exists; the "
              f"trace runs it, the plan is the fused head's): {', '.join(s['rows_not_expressible']) or 'none'}.",
              "",
              "| row | loss | traced | phase | analytic | phase | ratio | worst phase | largest gap (analytic − traced) "
              "| accelerate | DS ZeRO-2 | 16 B/p | 18 B/p | s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def peer(name, r=r):
            v = r.get(f"{name}_ratio")
            return "–" if v is None else f"{v:.2f}"
        wp = _worst_phase(r)
        lines.append(
            f"| {r['id']} | {r['loss_traced']} | {r['traced_peak_gib']:.2f} | {r['traced_peak_phase']} | "
            f"{r['analytic_peak_gib']:.2f} | {r['analytic_peak_phase']} | {r['ratio']:.3f} | "
            f"{'–' if wp is None else f'{wp:.3f}'} | {_largest_gap(r)} | {peer('accelerate')} | "
            f"{peer('deepspeed_zero2')} | {peer('rule_16')} | {peer('rule_18')} | {r['trace_seconds']:.0f} |")
    lines += ["", "## Where each row over 5% differs", "",
              "At the traced peak phase, per component: analytic − traced GiB (largest first), and each side's "
              "peak phase.", ""]
    for r in rows:
        if abs(r["ratio"] - 1) <= TARGET_MEDIAN:
            continue
        gaps = "; ".join(f"{g['component']} {g['analytic_gib']:.2f} vs {g['traced_gib']:.2f} ({g['diff_gib']:+.2f})"
                         for g in r["gaps"] if abs(g["diff_gib"]) >= 0.005)
        lines.append(f"- **{r['id']}** ratio {r['ratio']:.3f}: {gaps}")
    (out_dir / "calibration.md").write_text("\n".join(lines) + "\n")
    return s


def reanalyse(row: dict) -> dict:
    """The row's analytic side again against its stored trace (per-phase totals and the components at
    the traced peak, rounded to 1 MiB): for a planner change that leaves the tracer as it was."""
    known = {r.id: r for r in GRID + QUICK}
    req = request_for(known[row["id"]])
    plan = planner.estimate(req, with_min_gpus=False)
    analytic = _analytic_phases(plan)
    a_peak = analytic[plan.peak_phase]
    for p in row["phases"]:
        a = analytic.get(p["phase"])
        p["analytic_gib"] = None if a is None else round(a["total"] / GIB, 3)
        p["ratio"] = None if a is None or not p["traced_gib"] else round(a["total"] / GIB / p["traced_gib"], 4)
        stored = p.get("gaps")  # per-phase components, where the trace stored them
        p["gaps"] = None if a is None or not stored else gaps_at_peak(
            a["components"], {g["component"]: int(g["traced_gib"] * GIB) for g in stored})
    traced_components = {g["component"]: int(g["traced_gib"] * GIB) for g in row["gaps"]}
    a_at = analytic.get(row["traced_peak_phase"], a_peak)["components"]
    row.update(analytic_peak_gib=round(a_peak["total"] / GIB, 3), analytic_peak_phase=plan.peak_phase,
               ratio=round(a_peak["total"] / GIB / row["traced_peak_gib"], 4),
               gaps=gaps_at_peak(a_at, traced_components),
               loss_in_request="loss" in {f.name for f in dataclasses.fields(planner.PlanRequest)},
               analysed_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return row


def load_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return json.loads(path.read_text()).get("rows", [])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a handful of small rows")
    ap.add_argument("--only", action="append", default=[], help="row id to run (repeatable)")
    ap.add_argument("--report", action="store_true", help="rewrite csv/md from the json, trace nothing")
    ap.add_argument("--skip-done", action="store_true", help="skip rows the json already holds")
    ap.add_argument("--reanalyse-before", metavar="ISO_TIME",
                    help="recompute the analytic side of rows traced before this time against their stored "
                         "trace, then write the report (no tracing)")
    ap.add_argument("--out", type=Path, default=None,
                    help="results folder (default bench/results; --quick: bench/results/calibration-quick)")
    ap.add_argument("--list", action="store_true", help="print the row ids and exit")
    args = ap.parse_args(argv)
    rows_all = QUICK if args.quick else GRID
    if args.list:
        print("\n".join(r.id for r in rows_all))
        return 0
    known = {r.id: r for r in GRID + QUICK}
    for rid in args.only:
        if rid not in known:
            print(f"--only: unknown row {rid!r}; see --list", file=sys.stderr)
            return 2
    args.out = args.out or (RESULTS / "calibration-quick" if args.quick else RESULTS)
    json_path = args.out / "calibration.json"
    done = {r["id"]: r for r in load_rows(json_path)}
    meta = _meta()
    if args.reanalyse_before:
        for r in done.values():
            if r.get("traced_at", "") < args.reanalyse_before and r["id"] in known:
                reanalyse(r)
        args.report = True
    if args.report:
        s = write(list(done.values()), meta, args.out)
        print(json.dumps(s, indent=1))
        return 0
    todo = [known[i] for i in args.only] if args.only else rows_all
    if args.skip_done:
        todo = [r for r in todo if r.id not in done]
    if not args.only and not args.skip_done:
        done = {}
    for i, row in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {row.id} …", file=sys.stderr, flush=True)
        try:
            result = run_row(row)
        except PlannerError as e:
            print(f"  {row.id}: {e}", file=sys.stderr, flush=True)
            continue
        done[row.id] = result
        print(f"  ratio {result['ratio']:.3f} (analytic {result['analytic_peak_gib']:.2f}, traced "
              f"{result['traced_peak_gib']:.2f} GiB, {result['trace_seconds']:.0f} s)", file=sys.stderr, flush=True)
        write(list(done.values()), meta, args.out)
    s = write(list(done.values()), meta, args.out)
    print((args.out / "calibration.md").read_text())
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
