"""Efficiency factors fitted from our own runs (issue 14), and where the planner finds them.

`alignplan calibrate --device-type NAME --write` fits, from the registry's finished runs on one device
type, the training MFU and the decode bandwidth fraction of our recipes (transformers generate), and
stores them here; planner.timecost reads them for that device whenever no --mfu is given, and says so
("mfu_source": "calibrated from 4 runs on H100-80GB, 2026-11-28" instead of "default").

The file: ALIGNPLAN_CALIBRATION when set (tests point it at a temporary file), else
~/.config/alignplan/calibration.yaml (per user, like the other tools' settings: a calibration describes
a machine, not a run directory). YAML:

    devices:
      H100-80GB:
        mfu: 0.31                  # training MFU
        mfu_runs: 4
        mfu_spread: [0.29, 0.33]   # lowest and highest single-run fit
        decode_bw_fraction: 0.42   # generation, our recipes' engine (transformers)
        decode_bw_runs: 2
        decode_bw_spread: [0.40, 0.44]
        date: "2026-11-28"

The fit (fit_factor): each run predicted its step time at launch with some factor f0 (default or an
earlier calibration); time in a compute-bound phase scales as 1/f, so the factor that would have
predicted the measured time is f0 x predicted / measured. The calibrated factor is the median of these
over the runs (robust to one slow run; a least-squares fit would let the longest run decide). Pure
Python and YAML, no torch.
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from planner.errors import PlannerError

CALIBRATION_ENV = "ALIGNPLAN_CALIBRATION"
DEFAULT_PATH = Path("~/.config/alignplan/calibration.yaml")


def calibration_path() -> Path:
    return Path(os.environ.get(CALIBRATION_ENV) or DEFAULT_PATH).expanduser()


@dataclass(frozen=True)
class Fit:
    """A factor fitted from `runs` runs: the median single-run fit, and the lowest and highest."""

    value: float
    runs: int
    low: float
    high: float

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "runs": self.runs, "spread": [self.low, self.high]}


def run_factor(used: float, predicted_s: float, measured_s: float) -> float | None:
    """The factor that would have predicted `measured_s` for a run predicted at `predicted_s` with
    factor `used` (time ~ 1 / factor); None when any figure is missing or not positive."""
    vals = (used, predicted_s, measured_s)
    if any(not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v) or v <= 0 for v in vals):
        return None
    return used * predicted_s / measured_s


def fit_factor(samples: list[tuple[float, float, float]]) -> Fit | None:
    """Median of run_factor over (factor used, predicted s, measured s) samples; None without any."""
    fits = [f for f in (run_factor(*s) for s in samples) if f is not None]
    if not fits:
        return None
    return Fit(statistics.median(fits), len(fits), min(fits), max(fits))


def load_calibration(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """device id -> its entry ({} when the file does not exist). A file that exists but is not a
    calibration is a PlannerError naming it."""
    p = Path(path).expanduser() if path is not None else calibration_path()
    try:
        stamp = p.stat().st_mtime_ns
    except OSError:
        return {}
    return _load(str(p), stamp)


@lru_cache(maxsize=8)
def _load(path: str, _stamp: int) -> dict[str, dict[str, Any]]:
    import yaml  # lazily: `import planner` parses no YAML

    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PlannerError("calibration", f"{path}: cannot be read ({str(exc).splitlines()[0]})") from None
    devices = doc.get("devices", {}) if isinstance(doc, dict) else None
    if not isinstance(devices, dict) or not all(isinstance(v, dict) for v in devices.values()):
        raise PlannerError("calibration", f"{path}: expected 'devices: {{device: {{mfu: ..., ...}}}}'")
    for dev, entry in devices.items():
        for key in ("mfu", "decode_bw_fraction"):
            v = entry.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 1):
                raise PlannerError("calibration", f"{path}: {dev}.{key} must be in (0, 1], got {v!r}")
    return {str(k): dict(v) for k, v in devices.items()}


def _source(entry: dict[str, Any], key: str, device: str, path: Path) -> str:
    runs = entry.get(f"{key}_runs")
    when = entry.get("date", "")
    return f"calibrated from {runs} run{'s' if runs != 1 else ''} on {device}, {when} ({path})"


def factors_for(device: str, path: str | Path | None = None) -> dict[str, Any]:
    """The calibrated factors for a device id: {"mfu", "mfu_source", "decode_bw_fraction",
    "decode_bw_source"}; a factor not calibrated is None with source "default"."""
    p = Path(path).expanduser() if path is not None else calibration_path()
    entry = load_calibration(p).get(device, {})
    out: dict[str, Any] = {}
    for key in ("mfu", "decode_bw_fraction"):
        short = "decode_bw" if key == "decode_bw_fraction" else key
        if entry.get(key) is not None:
            out[key], out[f"{short}_source"] = float(entry[key]), _source(entry, short, device, p)
        else:
            out[key], out[f"{short}_source"] = None, "default"
    return out


def write_calibration(device: str, mfu: Fit | None, decode_bw: Fit | None, date: str,
                      path: str | Path | None = None) -> Path:
    """Store the fits for `device` (other devices' entries kept; a factor not fitted keeps its old value)."""
    import yaml

    p = Path(path).expanduser() if path is not None else calibration_path()
    devices = dict(load_calibration(p)) if p.exists() else {}
    entry = dict(devices.get(device, {}))
    for key, fit in (("mfu", mfu), ("decode_bw", decode_bw)):
        if fit is None:
            continue
        name = "mfu" if key == "mfu" else "decode_bw_fraction"
        entry[name] = round(fit.value, 6)
        entry[f"{key}_runs"] = fit.runs
        entry[f"{key}_spread"] = [round(fit.low, 6), round(fit.high, 6)]
    entry["date"] = date
    devices[device] = entry
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text("# written by `alignplan calibrate --write` (docs/time-cost.md)\n"
                   + yaml.safe_dump({"devices": devices}, sort_keys=True), encoding="utf-8")
    tmp.replace(p)
    return p


__all__ = ["CALIBRATION_ENV", "Fit", "calibration_path", "factors_for", "fit_factor", "load_calibration",
           "run_factor", "write_calibration"]
