"""Reading a run directory: RunDir names its files and reads what the run wrote (spec, command,
plan, metrics, result, log tail) and how it ended. The layout is in runners/rundir/__init__.py.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runners.rundir.spec import RunSpec
from runners.rundir.timing import registry_fields

PHASE_FILE = "phase.json"  # written by runners.recipes.callbacks.write_phase


class RunDirError(ValueError):
    """A run directory or launch setup that cannot be used; the message names the file or field."""


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    spec_path = property(lambda self: self.path / "spec.yaml")
    accelerate_path = property(lambda self: self.path / "accelerate.yaml")
    command_sh = property(lambda self: self.path / "command.sh")
    command_json = property(lambda self: self.path / "command.json")
    plan_path = property(lambda self: self.path / "plan.json")
    stdout_log = property(lambda self: self.path / "stdout.log")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    result_path = property(lambda self: self.path / "result.json")
    stop_path = property(lambda self: self.path / "STOP")

    def spec(self) -> RunSpec:
        return RunSpec.load(self.spec_path)

    def command(self) -> dict[str, Any]:
        try:
            data = json.loads(self.command_json.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunDirError(f"{self.command_json}: missing; prepare the run first") from None
        except json.JSONDecodeError as exc:
            raise RunDirError(f"{self.command_json}: not valid JSON ({exc})") from None
        if not isinstance(data.get("argv"), list) or not all(isinstance(a, str) for a in data["argv"]):
            raise RunDirError(f"{self.command_json}: 'argv' must be a list of strings")
        return data

    def plan(self) -> dict[str, Any]:
        return _read_json(self.plan_path) or {}

    def result(self) -> dict[str, Any] | None:
        return _read_json(self.result_path)

    def decision(self) -> dict[str, Any]:
        """plan.json's launch decision ({} when the file or the entry is missing or malformed)."""
        decision = self.plan().get("decision")
        return decision if isinstance(decision, dict) else {}

    def parameters_held(self) -> dict[str, Any] | None:
        """result.json's parameters_held when it is well formed: whole counts, total > 0."""
        held = (self.result() or {}).get("parameters_held")
        if not isinstance(held, dict):
            return None
        mine, total = held.get("this_process"), held.get("total")
        if not (isinstance(mine, int) and isinstance(total, int)) or isinstance(mine, bool) or total <= 0:
            return None
        return {"this_process": mine, "total": total, "sharded": bool(held.get("sharded"))}

    def metrics(self) -> list[dict[str, Any]]:
        """Complete metrics lines so far (a line being written is skipped)."""
        try:
            text = self.metrics_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return json_objects(text)

    samples_path = property(lambda self: self.path / "samples.jsonl")

    def samples(self, iterations: int = 1, tail_bytes: int = 512_000) -> list[dict[str, Any]]:
        """The newest PPO samples (samples.jsonl: {iteration, prompt, response, score, ended_with_eos}, written
        every sample_every iterations): the rows of the last ``iterations`` iterations written, oldest
        first. Reads only the file's last ``tail_bytes``; a line being written is skipped; [] without a file."""
        rows = json_objects(tail_text(self.samples_path, tail_bytes))
        wanted = sorted({r.get("iteration") for r in rows if isinstance(r.get("iteration"), int)})[-iterations:]
        return [r for r in rows if r.get("iteration") in wanted] if wanted else rows[-8:]

    def phase(self) -> dict[str, Any] | None:
        """{phase, since, ...} from phase.json (the recipe's start: loading the model, tokenising N rows,
        the first step); None before the recipe wrote one or when it cannot be read."""
        try:
            got = json.loads((self.path / PHASE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return got if isinstance(got, dict) and isinstance(got.get("phase"), str) else None

    def progress(self, tail_bytes: int = 256_000) -> dict[str, Any] | None:
        """Where the run is, from its own files (what `runs list` shows, whether or not a supervisor
        still updates the registry): result.json's final metrics once it has them, else the newest
        training row of metrics.jsonl, with the newest held-out (eval_*) metrics alongside. Reads
        only the last ``tail_bytes`` of metrics.jsonl; None when the run has written neither."""
        result = self.result() or {}
        text = tail_text(self.metrics_path, tail_bytes)
        last = evals = None
        for line in reversed(text.splitlines()):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line being written, or cut by the tail
            if not isinstance(row, dict):
                continue
            if is_eval_row(row):
                evals = evals or row
            elif last is None:
                last = row
            if last is not None and evals is not None:
                break
        final = result.get("final") if isinstance(result.get("final"), dict) else None
        if final is not None and last is not None:
            final = {**last, **final}  # the final step keeps max_steps, stage and the like
        out = final or last
        if evals is not None:
            out = {**(out or {}), **{k: v for k, v in evals.items() if k.startswith("eval_")}}
        return out

    def log_tail(self, lines: int = 40, max_chars: int = 4000) -> str:
        tail = "\n".join(tail_text(self.stdout_log, 64_000).splitlines()[-lines:])
        return tail[-max_chars:]

    def measurements(self) -> dict[str, Any]:
        """Measured peak memory and last metrics, from result.json or else metrics.jsonl; measured and
        predicted speed from result.json's throughput block."""
        result = self.result() or {}
        rows = self.metrics()
        peaks = [int(r["peak_memory_bytes"]) for r in rows if isinstance(r.get("peak_memory_bytes"), int | float)]
        if isinstance(result.get("peak_memory_bytes"), int | float):
            peaks.append(int(result["peak_memory_bytes"]))
        peak = max(peaks) if peaks else None  # over every attempt of a resumed run
        evals = [r for r in rows if is_eval_row(r)]
        train_rows = [r for r in rows if not is_eval_row(r)]
        last = result.get("final") if isinstance(result.get("final"), dict) else (train_rows[-1] if train_rows else None)
        if evals:  # the newest held-out metrics ride along with the last training metrics
            last = {**(last or {}), **{k: v for k, v in evals[-1].items() if k.startswith("eval_")}}
        out: dict[str, Any] = {}
        if peak is not None:
            out["measured_peak_bytes"] = int(peak)
        if last is not None:
            out["last_metrics"] = last
        # speed measured beside speed predicted (issue 14): the registry's columns of the throughput block
        out.update(registry_fields(result.get("throughput")))
        return out

    def outcome(self, exit_code: int | None) -> tuple[str, str | None]:
        """(final status, error text) of an ended run.

        result.json decides when the recipe wrote one; otherwise exit code 0 is success, a STOP
        file means the user stopped it (killed after the grace period), anything else failed.
        """
        result = self.result() or {}
        status = result.get("status")
        if status in ("succeeded", "stopped") and exit_code in (0, None):
            return status, None
        if exit_code == 0 and status is None:
            return "succeeded", None
        if self.stop_path.exists():
            return "stopped", f"stopped by signal before a clean exit (exit code {exit_code})"
        if status == "failed" and result.get("error"):
            return "failed", f"{result['error']}\n--- log tail ---\n{self.log_tail()}"
        why = "process gone, no exit code recorded" if exit_code is None else f"exit code {exit_code}"
        return "failed", f"{why}\n--- log tail ---\n{self.log_tail()}"


def tail_text(path: Path, tail_bytes: int) -> str:
    """The last ``tail_bytes`` of a text file ("" when it cannot be read); its first line may be partial."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - tail_bytes))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def json_objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL text, one per line; a line that is not one (being written, cut off by a
    kill) is skipped."""
    out = []
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


def is_eval_row(row: dict[str, Any]) -> bool:
    return any(key.startswith("eval_") for key in row)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
