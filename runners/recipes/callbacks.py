"""Trainer callbacks shared by every recipe: metrics.jsonl, the STOP file, and result.json.

metrics.jsonl gets one JSON object per logging step (fields in notes/COMMON.md): step, max_steps,
epoch, loss, learning_rate, tokens_per_second, peak_memory_bytes, memory_kind, time, plus every
numeric value the TRL trainer logged under its own name (rewards/accuracies, rewards/margins, ...).
Only the main process writes files; every process takes part in the STOP decision so that all of
them stop at the same step (a process that kept going would wait forever in the next all-reduce).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
STOP_FILE = "STOP"


def write_phase(run_dir: str | Path, phase: str, **detail: Any) -> None:
    """What the run is doing before its first logged step (loading the model, tokenising N rows, the
    first step), for the monitor's "Step 0 / ?" stretch. The main process writes; replaced atomically."""
    from runners.rundir.reader import PHASE_FILE

    if os.environ.get("RANK", "0") != "0":
        return
    path = Path(run_dir) / PHASE_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps({"phase": phase, "since": time.time(), **detail}), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a phase is a courtesy to the monitor; training goes on without it


# Keys that the Trainer puts in its final summary log, not a per-step log.
SUMMARY_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss")


class PeakMemory:
    """Peak memory of this process: CUDA max allocated on a GPU, else the highest RSS sampled."""

    def __init__(self, cuda: bool | None = None) -> None:
        if cuda is None:
            import torch

            cuda = torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true")
        self.cuda = cuda
        self.kind = "cuda_max_allocated" if self.cuda else "cpu_rss"
        self._rss_peak = 0

    def sample(self) -> int:
        if self.cuda:
            import torch

            return int(torch.cuda.max_memory_allocated())
        import psutil

        self._rss_peak = max(self._rss_peak, psutil.Process().memory_info().rss)
        return self._rss_peak


class RunMonitor(TrainerCallback):
    """Writes metrics.jsonl and honours runs/<id>/STOP. One instance per recipe run."""

    def __init__(self, run_dir: str | Path, memory: PeakMemory | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.memory = memory or PeakMemory()
        self.stopped = False
        self.last_metrics: dict[str, Any] = {}
        self.summary: dict[str, Any] = {}
        self._last_time: float | None = None
        self._last_tokens: float | None = None
        self.counted_tokens: float | None = None  # set by count_tokens() for trainers that log no num_tokens
        self.parameters_held: dict[str, Any] | None = None  # set when training starts
        self._resume_checked = False
        self.token_offset = 0.0  # a resumed run's token count at its checkpoint (see _continue_after_resume)
        self._step_mark: tuple[float, int | float | None] | None = None  # (time, step) of the last row: step_time_s
        # The trainer's epoch counts passes over the rows it was given; when max_steps cut the train set
        # (common.rows_for_steps) this scales it back to passes over the whole data set.
        self.epoch_scale = 1.0

    def count_tokens(self, collator, mask_keys: tuple[str, ...], world_size: int = 1):
        """Wrap a data collator so the tokens of every batch (sums of the given attention masks) are
        counted, times world_size: an estimate of all processes' tokens for tokens_per_second."""
        self.counted_tokens = 0.0

        def counting_collator(features):
            batch = collator(features)
            for key in mask_keys:
                if key in batch:
                    self.counted_tokens += float(batch[key].sum()) * world_size
            return batch

        return counting_collator

    @property
    def stop_path(self) -> Path:
        return self.run_dir / STOP_FILE

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / METRICS_FILE

    # --- STOP ------------------------------------------------------------------------------------

    def on_step_end(self, args, state, control, **kwargs):
        self.memory.sample()
        if _any_process(self.stop_path.exists()):
            self.stopped = True
            control.should_save = True
            control.should_training_stop = True
        return control

    # --- metrics ---------------------------------------------------------------------------------

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        write_phase(self.run_dir, "first step")
        self._last_time = time.time()
        self._step_mark = (self._last_time, getattr(state, "global_step", None))
        self._last_tokens = None
        if model is not None:
            self.parameters_held = parameters_held(model)
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = dict(logs or {})
        if any(key in logs for key in SUMMARY_KEYS):
            self.summary.update({k: v for k, v in logs.items() if _is_number(v)})
            return control
        if not self._resume_checked:
            self._continue_after_resume(state)
        record = self._record(state, logs)
        if not any(key.startswith("eval_") for key in logs):
            self.last_metrics = record
        if state.is_world_process_zero:
            with self.metrics_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        return control

    def _continue_after_resume(self, state) -> None:
        """The first row this process logs, at step s: rows an earlier attempt wrote at steps >= s (after
        the checkpoint this attempt resumed from, before that attempt died) are dropped, so each step
        appears once and its row is the one of the training that continued; the token count at the last
        row kept becomes the offset that counters which restart from 0 on resume are continued from."""
        self._resume_checked = True
        step = getattr(state, "global_step", None)
        if not isinstance(step, int | float):
            return
        try:
            lines = self.metrics_path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return
        kept, dropped = [], 0
        for line in lines:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                dropped += 1  # a line cut when the earlier attempt was killed
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int | float) and row["step"] >= step:
                dropped += 1
                continue
            kept.append(line)
        train = [json.loads(line) for line in kept]
        train = [r for r in train if isinstance(r, dict) and not any(k.startswith("eval_") for k in r)]
        if train and _is_number(train[-1].get("num_tokens")):
            self.token_offset = float(train[-1]["num_tokens"])
            if self._last_tokens is None:
                self._last_tokens = self.token_offset
        if dropped and getattr(state, "is_world_process_zero", True):
            tmp = self.metrics_path.with_name(f".{self.metrics_path.name}.tmp")
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            os.replace(tmp, self.metrics_path)

    def _record(self, state, logs: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        seen = float(state.num_input_tokens_seen or 0)  # the Trainer's own count: restored on resume
        logged = _float(logs.get("num_tokens"))
        if logged is not None and not (seen and logged == seen):
            logged += self.token_offset  # TRL's, PPO's and generate's counters restart from 0 on resume
        counted = None if self.counted_tokens is None else self.counted_tokens + self.token_offset
        tokens = logged or (seen or counted)
        record: dict[str, Any] = {
            "step": state.global_step,
            "max_steps": state.max_steps,
            "epoch": _scaled(_float(state.epoch), self.epoch_scale),
            "loss": _float(logs.get("loss")),
            "learning_rate": _float(logs.get("learning_rate")),
            "tokens_per_second": self._tokens_per_second(now, tokens),
            "step_time_s": self._step_time(now, state.global_step),
            "peak_memory_bytes": self.memory.sample(),
            "memory_kind": self.memory.kind,
            "time": now,
        }
        for key, value in logs.items():
            if key not in record and key != "epoch" and _is_number(value):
                record[key] = _float(value)
        if logged is not None:
            record["num_tokens"] = logged
        return record

    def _step_time(self, now: float, step: Any) -> float | None:
        """Wall seconds per step since the previous row (or the start of training): the optimizer
        step interval, data loading and logging included. None when the step counter did not move
        or its start is unknown (a loop that starts training without a step number)."""
        mark, self._step_mark = self._step_mark, (now, step)
        if mark is None or not isinstance(mark[1], int | float) or not isinstance(step, int | float) or step <= mark[1]:
            return None
        return (now - mark[0]) / (step - mark[1])

    def _tokens_per_second(self, now: float, tokens: float | None) -> float | None:
        """Tokens processed since the previous log over the wall time since then."""
        rate = None
        if tokens is not None and self._last_time is not None:
            elapsed = now - self._last_time
            done = tokens - (self._last_tokens or 0.0)
            if elapsed > 0 and done > 0:
                rate = done / elapsed
        self._last_time = now
        if tokens is not None:
            self._last_tokens = tokens
        return rate


def parameters_held(model) -> dict[str, Any]:
    """How many of the model's parameters this process stores: all of them under DDP, about
    1/N under FSDP2, whose parameters are DTensors holding one shard each."""
    held = total = 0
    sharded = False
    for param in model.parameters():
        total += param.numel()
        to_local = getattr(param, "to_local", None)  # DTensor
        if to_local is not None:
            sharded = True
            held += to_local().numel()
        else:
            held += param.numel()
    return {"this_process": held, "total": total, "sharded": sharded}


def write_result(run_dir: str | Path, status: str, monitor: RunMonitor | None = None, **extra: Any) -> Path:
    """result.json: status (succeeded | stopped | failed), final metrics, peak memory, and extras."""
    path = Path(run_dir) / RESULT_FILE
    result: dict[str, Any] = {"status": status}
    if monitor is not None:
        result["final"] = monitor.last_metrics
        result["summary"] = monitor.summary
        result["peak_memory_bytes"] = monitor.memory.sample()
        result["memory_kind"] = monitor.memory.kind
        result["step"] = monitor.last_metrics.get("step")
        result["parameters_held"] = monitor.parameters_held
        result["throughput"] = _throughput(run_dir)
    result.update(extra)
    result["time"] = time.time()
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _throughput(run_dir: str | Path) -> dict[str, Any] | None:
    """Measured speed beside the speed predicted at launch (runners.rundir.timing); a failure here
    must not cost the run its result.json, so it is recorded instead."""
    try:
        from runners.rundir.timing import throughput

        return throughput(run_dir)
    except Exception as exc:  # noqa: BLE001
        return {"error": f"{type(exc).__name__}: {exc}"}


def _any_process(flag: bool) -> bool:
    """True on every process when it is True on any (one all-reduce when distributed)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    import torch
    from accelerate import PartialState

    tensor = torch.tensor([1 if flag else 0], device=PartialState().device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return hasattr(value, "item") and getattr(value, "ndim", 1) == 0


def _scaled(value: float | None, scale: float) -> float | None:
    return None if value is None else value * scale


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
