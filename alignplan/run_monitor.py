"""The run monitor: a run's live view (status, progress and ETA, curves, measured vs predicted
memory, log tail), which of its metrics to chart, the run registry, and stopping a run without
blocking the page. The Launch and Runs pages draw runs with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from alignplan.errors import show_error
from alignplan.formatting import fmt_duration, gib

# metrics.jsonl keys that are bookkeeping rather than curves of the method.
BASE_METRIC_KEYS = frozenset({"step", "max_steps", "epoch", "loss", "learning_rate", "tokens_per_second",
                              "peak_memory_bytes", "memory_kind", "time", "grad_norm", "num_tokens"})
# The metrics that say whether preference learning works (TRL's names), shown first when present.
KEY_METRICS = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected", "reward", "reward_std",
               "kl", "accuracy")
STATUS_ICONS = {"prepared": ":material/schedule:", "running": ":material/directions_run:",
                "succeeded": ":material/check_circle:", "failed": ":material/error:",
                "stopped": ":material/stop_circle:"}
REFRESH_S = 2.0


def method_metric_keys(rows: list[dict[str, Any]]) -> list[str]:
    """The method's own numeric metrics in the rows (rewards/margins, kl, ...), in first-seen order."""
    keys: dict[str, None] = {}
    for row in rows:
        for key, value in row.items():
            if key not in BASE_METRIC_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
                keys[key] = None
    return list(keys)


def key_metric_keys(rows: list[dict[str, Any]]) -> list[str]:
    """The few method metrics worth a chart (DPO's reward accuracies and margins, GRPO's reward and
    KL...); all the method's metrics when none of those is logged."""
    found = method_metric_keys(rows)
    return [k for k in KEY_METRICS if k in found] or found


def registry():
    """The run registry under the runs root; opening it reconciles runs whose processes ended."""
    from runners.registry.store import Registry

    return Registry.for_runs_root()


def render_run(run_id: str, *, key: str, capacity_bytes: int | None = None) -> str | None:
    """A run's live view: status, progress and ETA, curves, measured vs predicted memory, log tail.

    Redraws every REFRESH_S seconds while the run is alive (st.fragment), and reruns the whole page
    once when it ends so the page's buttons match the new status. Returns the status drawn."""
    import time as _time

    from alignplan import figures

    def body() -> str | None:
        from runners.rundir.reader import RunDir

        try:
            rec = registry().get(run_id)
        except Exception as exc:
            show_error(f"Reading run {run_id}", exc)
            return None
        run = RunDir(Path(rec.run_dir))
        rows = run.metrics()
        last = rows[-1] if rows else {}
        icon = STATUS_ICONS.get(rec.status, "")
        step, max_steps = last.get("step"), last.get("max_steps")
        elapsed = None
        if rec.started_at:
            elapsed = (rec.ended_at or _time.time()) - rec.started_at
        # steps logged before this (re)start: a resumed run's rate counts only its own steps
        start_step = max((r.get("step") or 0 for r in rows if rec.started_at and (r.get("time") or 0) < rec.started_at),
                         default=0)
        fraction, eta = figures.progress_eta(step, max_steps, elapsed, start_step)
        if rec.status == "succeeded":
            fraction, eta = 1.0, 0.0
        c1, c2, c3, c4 = st.columns(4)
        c1.metric("Status", f"{rec.status}", help="From the run registry (runs/registry.db).")
        c2.metric("Step", f"{step or 0} / {max_steps or '?'}")
        c3.metric("Elapsed", fmt_duration(elapsed), help="Time since the run started.")
        c4.metric("ETA", fmt_duration(eta) if rec.status == "running" else "–")
        st.progress(fraction, text=f"{icon} {rec.status}: {fraction:.0%}")
        if rec.status == "failed" and rec.error:
            st.error("The run failed. Its last log lines are below.")
        if rows:
            left, right = st.columns(2)
            left.plotly_chart(figures.metric_curves_figure(rows, ["loss"], title="Loss"), key=f"{key}_loss")
            extra = key_metric_keys(rows)
            if extra:
                right.plotly_chart(figures.metric_curves_figure(rows, extra, title="Method metrics"),
                                   key=f"{key}_extra")
            st.markdown("**Peak memory: measured vs predicted**")
            st.plotly_chart(figures.memory_vs_prediction_figure(rows, rec.predicted_peak_bytes, capacity_bytes),
                            key=f"{key}_mem")
        else:
            st.caption("No metrics yet: the first line appears after the first logging step.")
        decision = run.decision()
        m1, m2, m3 = st.columns(3)
        m1.metric("Predicted peak", gib(rec.predicted_peak_bytes))
        m2.metric("Measured peak", gib(rec.measured_peak_bytes or last.get("peak_memory_bytes")))
        m3.metric("Setup", f"{decision.get('kind', '?')} × {decision.get('num_processes', '?')}",
                  help=str(decision["reason"]) if decision.get("reason") else None)
        held = run.parameters_held()
        if held:
            how = "its shard" if held.get("sharded") else "a full copy"
            st.caption(f"Each process held {how}: {held['this_process']:,} of {held['total']:,} parameters "
                       f"({held['this_process'] / held['total']:.0%}).")
        st.markdown("**Log (tail)**")
        st.code(run.log_tail(lines=30) or "(no output yet)", language="text")
        return rec.status

    alive = False
    try:
        alive = registry().get(run_id).status == "running"
    except Exception:
        pass
    if not alive:
        return body()

    @st.fragment(run_every=REFRESH_S)
    def live() -> None:
        status = body()
        if status != "running":
            st.rerun()  # full rerun: the page's controls follow the new status

    live()
    return "running"


def stop_run_in_background(run_id: str) -> None:
    """Ask a run to stop without blocking the page: launch.stop waits for the checkpoint (up to a
    minute), so it runs on its own thread; the registry, which the monitor reads, shows the outcome."""
    import threading

    from runners.launch import launch

    def stop() -> None:
        try:
            launch.stop(run_id)
        except Exception as exc:  # noqa: BLE001 - reported in the server log; the registry has the status
            print(f"alignplan: stopping {run_id} failed: {exc}")

    threading.Thread(target=stop, name=f"stop-{run_id}", daemon=True).start()

