"""`alignplan calibrate`: fit the time model's efficiency factors from the runs in the registry (issue 14).

    alignplan calibrate [--device-type NAME] [--write] [--json] [--runs-dir DIR]

For one device type ("cpu" or a GPU of the planner's catalogue, as the runs recorded it) the finished runs
with measured speed (succeeded or stopped, registry columns from result.json's throughput block) give:

  training MFU: per run, the MFU its prediction used x predicted / measured time of the step's training
      part (the step less its generation); the median over the runs;
  decode bandwidth fraction (runs that generate): the same with the generation time per step.

planner.calibration documents the fit and the file; --write stores the factors there, where
planner.timecost reads them for this device.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from planner import calibration
from planner.errors import PlannerError

FINISHED = ("succeeded", "stopped")


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit the time model's MFU and decode bandwidth from your runs",
                       description=__doc__.splitlines()[0])
    p.add_argument("--device-type", help="cpu, or a GPU type (H100-80GB, A100-80GB, ...); default: the only device "
                                         "type among the finished runs")
    p.add_argument("--write", action="store_true",
                   help=f"store the fit where the planner reads it (${calibration.CALIBRATION_ENV}, else "
                        f"{calibration.DEFAULT_PATH})")
    p.add_argument("--json", action="store_true", help="print the fit as JSON")
    p.add_argument("--runs-dir", help="runs root holding registry.db (default $ALIGNPLAN_RUNS_DIR or ./runs)")
    p.set_defaults(func=cmd_calibrate)


def normalise_device(name: str) -> str:
    """"cpu" or the catalogue id of a GPU name ("h100" -> "H100-80GB"); unknown names: PlannerError."""
    from planner.hardware import CPU_ID, GPUS, get_gpu

    if name.strip().lower() == CPU_ID:
        return CPU_ID
    try:
        return get_gpu(name).id
    except PlannerError:
        raise PlannerError("device-type", f"unknown device type {name!r}; accepted: {CPU_ID}, "
                           + ", ".join(GPUS)) from None


def _pos(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and v > 0 else None


def samples(records: list) -> dict[str, list[tuple[float, float, float]]]:
    """(factor used, predicted s, measured s) per run: the step's training part for the MFU, its
    generation for the decode bandwidth fraction."""
    mfu, bw = [], []
    for r in records:
        pred_gen, meas_gen = _pos(r.predicted_generation_seconds) or 0.0, _pos(r.measured_generation_seconds) or 0.0
        pred_step, meas_step = _pos(r.predicted_step_seconds), _pos(r.measured_step_seconds)
        if pred_step and meas_step and _pos(r.predicted_mfu) and pred_step - pred_gen > 0 and meas_step - meas_gen > 0:
            mfu.append((r.predicted_mfu, pred_step - pred_gen, meas_step - meas_gen))
        if pred_gen and meas_gen and _pos(r.predicted_decode_bw_fraction):
            bw.append((r.predicted_decode_bw_fraction, pred_gen, meas_gen))
    return {"mfu": mfu, "decode_bw": bw}


def calibrate(records: list, device: str | None) -> dict[str, Any]:
    """The fit for `device` (None: the only device type among the records) from registry records."""
    measured = [r for r in records if r.status in FINISHED and r.device_type and _pos(r.measured_step_seconds)]
    types = sorted({r.device_type for r in measured})
    if device is None:
        if len(types) != 1:
            raise PlannerError("device-type", "give one of the device types with finished runs: " + ", ".join(types)
                               if types else "no finished run with measured speed in the registry; run one first "
                               "(alignplan demo)")
        device = types[0]
    device = normalise_device(device)
    mine = [r for r in measured if r.device_type == device]
    if not mine:
        raise PlannerError("device-type", f"no finished run with measured speed on {device} in the registry"
                           + (f"; device types with runs: {', '.join(types)}" if types else "; run one first (alignplan demo)"))
    s = samples(mine)
    mfu, bw = calibration.fit_factor(s["mfu"]), calibration.fit_factor(s["decode_bw"])
    if mfu is None and bw is None:
        raise PlannerError("device-type", f"the {len(mine)} run(s) on {device} recorded no prediction to compare with "
                           "(plan.json without a time estimate)")
    return {
        "device_type": device, "runs": [r.id for r in mine], "mfu": mfu, "decode_bw": bw,
        "measured": {k: _median([getattr(r, k) for r in mine]) for k in
                     ("measured_step_seconds", "measured_tokens_per_second", "measured_mfu",
                      "measured_generation_tokens_per_second")},
    }


def _median(values: list) -> float | None:
    import statistics

    vals = [v for v in values if _pos(v)]
    return statistics.median(vals) if vals else None


def format_fit(fit: dict[str, Any], written: str | None, path: str) -> str:
    from planner.timecost import DEFAULT_ENGINE, DEFAULT_MFU, ENGINES

    def line(name: str, f, default: float, what: str) -> str:
        if f is None:
            return f"  {name}: not fitted ({what})"
        return (f"  {name}: {f.value:.4g} (median of {f.runs} run{'s' if f.runs != 1 else ''}; single-run fits "
                f"{f.low:.4g} to {f.high:.4g}; default {default:g})")

    m = fit["measured"]
    lines = [f"calibration for {fit['device_type']} from {len(fit['runs'])} finished run(s)",
             line("training MFU", fit["mfu"], DEFAULT_MFU, "no run with a training step"),
             line("decode bandwidth fraction", fit["decode_bw"], ENGINES[DEFAULT_ENGINE].bw_fraction,
                  "no run that generates")]
    if m["measured_step_seconds"]:
        lines.append(f"  measured (medians over runs): step {m['measured_step_seconds']:.3g} s"
                     + (f", {m['measured_tokens_per_second']:,.0f} tokens/s" if m["measured_tokens_per_second"] else "")
                     + (f", MFU achieved {m['measured_mfu']:.3g}" if m["measured_mfu"] else "")
                     + (f", generation {m['measured_generation_tokens_per_second']:,.0f} tokens/s"
                        if m["measured_generation_tokens_per_second"] else ""))
    lines.append(f"  written to {written}" if written else f"  not written: add --write to store it in {path}")
    return "\n".join(lines)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from runners.registry.store import Registry, default_path

    db = default_path(args.runs_dir)
    if not db.is_file():
        raise PlannerError("runs-dir", f"{db}: no run registry here; run something first (alignplan demo)")
    records = Registry(db).list()
    fit = calibrate(records, args.device_type)
    path = calibration.calibration_path()
    written = None
    if args.write:
        written = str(calibration.write_calibration(fit["device_type"], fit["mfu"], fit["decode_bw"],
                                                    time.strftime("%Y-%m-%d", time.gmtime()), path))
    if args.json:
        out = {**fit, "mfu": fit["mfu"] and fit["mfu"].to_dict(),
               "decode_bw_fraction": fit["decode_bw"] and fit["decode_bw"].to_dict(),
               "registry": str(db), "calibration_file": str(path), "written": written}
        out.pop("decode_bw")
        json.dump(out, sys.stdout, indent=2)
        print()
    else:
        print(format_fit(fit, written, str(path)))
    return 0
