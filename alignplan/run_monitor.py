"""The run monitor: a run's live view (status, progress and ETA, curves, measured vs predicted
memory, log tail), which of its metrics to chart, the run registry, and stopping a run without
blocking the page. The Launch and Runs pages draw runs with it."""

from __future__ import annotations

import json
import re
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
LOG_SHOWN_CHARS = 500_000


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


# PPO's metrics (runners/rl/ppo_trainer.py) in the charts the monitor draws for a PPO run.
PPO_CHARTS = (
    ("Score and KL", ("score", "kl", "non_score_reward")),
    ("Policy and value loss", ("policy_loss", "value_loss")),
    ("Clip fractions and approximate KL", ("policy_clipfrac", "value_clipfrac", "approx_kl")),
    ("Entropy", ("entropy",)),
    ("Response length (tokens)", ("response_length",)),
)


def metric_charts(rows: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """(title, metric keys) of each chart for these rows: PPO's groups when the run logs PPO's losses, else
    the loss and the method's key metrics."""
    present = {k for row in rows for k in row}
    if "policy_loss" in present:
        return [(title, [k for k in keys if k in present]) for title, keys in PPO_CHARTS
                if any(k in present for k in keys)]
    charts = [("Loss", ["loss"])] if "loss" in present else []
    extra = key_metric_keys(rows)
    if extra:
        charts.append(("Method metrics", extra))
    return charts


def latest_samples(run) -> list[dict[str, Any]]:
    """The newest iteration's PPO samples as table rows (iteration, prompt, response, score, EOS)."""
    return [{"iteration": r.get("iteration"), "prompt": str(r.get("prompt", "")), "response": str(r.get("response", "")),
             "score": r.get("score"), "ended with EOS": r.get("ended_with_eos")}
            for r in run.samples(iterations=1)]


# --- labelling (rlaif-label) and critique/revision (cai-generate) stages ----------------------------------

LABEL_METHOD, CAI_METHOD = "rlaif-label", "cai-generate"


def _read_json_file(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _jsonl_head(path: Path, limit: int) -> list[dict[str, Any]]:
    """The first `limit` JSON objects of a JSONL file; a half-written or broken line is skipped."""
    rows: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                if isinstance(item, dict):
                    rows.append(item)
                    if len(rows) >= limit:
                        break
    except OSError:
        return []
    return rows


def stage_report(run_dir: Path) -> dict[str, Any] | None:
    """A labelling or critique/revision run's report: report.json (as result.json names it), else the one
    result.json carries (a run still going has neither)."""
    run_dir = Path(run_dir)
    result = _read_json_file(run_dir / "result.json") or {}
    for candidate in (result.get("report_file"), result.get("report") if isinstance(result.get("report"), str) else None,
                      run_dir / "report.json", run_dir / "output" / "report.json"):
        if candidate:
            report = _read_json_file(Path(candidate))
            if report is not None:
                return report
    return result.get("report") if isinstance(result.get("report"), dict) else None


def _share(value: Any) -> str:
    return "–" if value is None else f"{value:.0%}"


def label_report_rows(report: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(label, value, help) for the labelling report's figures (runners/judges/labelling.summarize)."""
    cost = report.get("cost")
    return [
        ("Pairs judged", str(report.get("pairs_judged", "–")), "Each pair judged twice, once in each order."),
        ("Position consistency", _share(report.get("position_consistency")),
         "Share of pairs whose two verdicts (both orders) named the same answer."),
        ("DPO pairs written", str(report.get("pairs_written", "–")), None),
        ("Dropped", str(report.get("dropped", "–")),
         f"{report.get('dropped_inconsistent', 0)} inconsistent, {report.get('dropped_no_verdict', 0)} without a verdict"),
        ("Ties", str(report.get("ties", "–")), None),
        ("Unparseable", str(report.get("unparseable", "–")), "Judge answers that named neither response."),
        ("Longer preferred", _share(report.get("longer_preferred_share")),
         "Of the written pairs whose answers differ in length, the share where the longer one won (length bias)."),
        ("Cost", "–" if cost is None else f"${cost:,.4f}", f"{report.get('tokens', 0):,} judge tokens"),
    ]


def _verdict_response(verdict: Any, shown_first: str) -> str:
    """The response ('A' or 'B') a verdict names, given which one was shown first."""
    other = "B" if shown_first == "A" else "A"
    return {"first": shown_first, "second": other}.get(verdict, "–" if verdict is None else str(verdict))


def label_pairs(run_dir: Path, limit: int = 200) -> list[dict[str, Any]]:
    """The first `limit` judged pairs of labels.jsonl as rows: prompt, the two responses, the verdict in each
    order (the response it named), the winner, the principle (CAI) and the outcome."""
    result = _read_json_file(Path(run_dir) / "result.json") or {}
    path = Path(result["labels"]) if result.get("labels") else Path(run_dir) / "labels.jsonl"
    if not path.exists():
        path = Path(run_dir) / "labels.jsonl"
    rows = []
    for r in _jsonl_head(path, limit):
        winner = r.get("winner")
        rows.append({"#": r.get("index"), "prompt": str(r.get("prompt", "")),
                     "response A": str(r.get("response_a", "")), "response B": str(r.get("response_b", "")),
                     "verdict (A shown first)": _verdict_response(r.get("verdict_ab"), "A"),
                     "verdict (B shown first)": _verdict_response(r.get("verdict_ba"), "B"),
                     "winner": {"a": "A", "b": "B"}.get(winner, "–"), "principle": r.get("principle") or "–",
                     "outcome": r.get("outcome") or "–"})
    return rows


def revision_report_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) for the critique/revision report (runners/recipes/cai_generate.write_report)."""
    return [
        ("Prompts", str(report.get("prompts", "–"))),
        ("Revisions differing", f"{report.get('revisions_differing', '–')} ({_share(report.get('share_differing'))})"),
        ("Critique rounds", str(report.get("rounds", "–"))),
        ("Mean critique tokens", str(report.get("mean_critique_tokens", "–"))),
        ("Mean revision tokens", str(report.get("mean_revision_tokens", "–"))),
        ("Empty revisions", str(report.get("empty_revisions", "–"))),
    ]


def revision_examples(run_dir: Path, limit: int = 3) -> list[dict[str, Any]]:
    """The first `limit` rows of output/revisions.jsonl: prompt, initial answer, the critiques (principle:
    critique per round) and the final revision."""
    out = []
    for r in _jsonl_head(Path(run_dir) / "output" / "revisions.jsonl", limit):
        rounds = [x for x in r.get("rounds") or [] if isinstance(x, dict)]
        out.append({"prompt": str(r.get("prompt", "")), "initial": str(r.get("initial", "")),
                    "principle": ", ".join(str(x.get("principle")) for x in rounds) or "–",
                    "critique": "\n\n".join(str(x.get("critique", "")) for x in rounds),
                    "revision": str(r.get("final", "")), "changed": r.get("changed")})
    return out


def review_pending(rec) -> dict[str, Any] | None:
    """A pipeline paused for review (REVIEW_PENDING in its directory, written after the labelling stage):
    {stage, message}; None otherwise."""
    from runners.pipelines.pipeline_dir import PipelineDir

    pipeline = PipelineDir(Path(rec.run_dir))
    if not pipeline.review_pending_path.exists():
        return None
    pending = _read_json_file(pipeline.review_pending_path) or {}
    result = _read_json_file(Path(rec.run_dir) / "result.json") or {}
    return {"stage": pending.get("stage") or result.get("stage"), "message": result.get("message")}


def _review_banner(rec, key: str) -> None:
    pending = review_pending(rec)
    if pending is None or rec.status == "running":
        return
    with st.container(border=True):
        st.warning(f"**Paused for review** after the **{pending['stage'] or 'labelling'}** stage: read the judged "
                   "pairs below, then **Resume** to continue (DPO trains on them) or **Delete** to stop here.",
                   icon=":material/pause_circle:")
        if pending.get("message"):
            st.caption(pending["message"])
        bar = st.container(horizontal=True)
        if bar.button("Resume", type="primary", key=f"{key}_review_resume", icon=":material/play_arrow:"):
            from runners.launch import launch

            try:
                launch.resume(rec.id)
            except Exception as exc:
                show_error("Resuming the pipeline", exc)
            else:
                st.toast(f"Resumed {rec.id}: the stages after the review run now.")
                st.rerun()
        if bar.button("Delete…", key=f"{key}_review_delete", icon=":material/delete:"):
            st.session_state["runs_confirm_delete"] = rec.id
            st.session_state["runs_focus"] = rec.id
            if key.startswith("runs"):
                st.rerun()
            st.switch_page("pages/runs.py")


def _label_view(run_dir: Path, key: str) -> None:
    report = stage_report(run_dir)
    if report:
        st.markdown("**Labelling report** (report.json)")
        items = label_report_rows(report)
        for row_start in range(0, len(items), 4):
            cols = st.columns(4)
            for col, (label, value, help_text) in zip(cols, items[row_start:row_start + 4], strict=False):
                col.metric(label, value, help=help_text)
    pairs = label_pairs(run_dir)
    if not pairs:
        if not report:
            st.caption("No judged pairs yet: labels.jsonl appears after the first batch.")
        return
    outcomes = ["all", *sorted({p["outcome"] for p in pairs})]
    pick = st.selectbox("Judged pairs shown", outcomes, key=f"{key}_pairs_filter",
                        help="pair: a winner, written for DPO; tie; inconsistent: the two orders disagreed (dropped); "
                        "no-verdict: a verdict was unusable (dropped).")
    shown = [p for p in pairs if pick == "all" or p["outcome"] == pick]
    st.markdown(f"**Judged pairs** ({len(shown)} of the first {len(pairs)} in labels.jsonl)")
    st.dataframe(shown, hide_index=True, key=f"{key}_pairs",
                 column_config={c: st.column_config.TextColumn(width="large")
                                for c in ("prompt", "response A", "response B")})


def _revision_view(run_dir: Path, key: str) -> None:
    report = stage_report(run_dir)
    if report:
        st.markdown(f"**Critique and revision report** (constitution {report.get('constitution', '?')})")
        items = revision_report_rows(report)
        cols = st.columns(len(items))
        for col, (label, value) in zip(cols, items, strict=True):
            col.metric(label, value)
        if report.get("principles_used"):
            st.caption("Principles used: " + ", ".join(f"{k} ({v})" for k, v in report["principles_used"].items()))
    examples = revision_examples(run_dir)
    if examples:
        st.markdown("**Examples** (initial → critique → revision, from output/revisions.jsonl)")
        st.dataframe(examples, hide_index=True, key=f"{key}_revisions",
                     column_config={c: st.column_config.TextColumn(width="large")
                                    for c in ("initial", "critique", "revision")})
    elif not report:
        st.caption("No revisions yet: output/revisions.jsonl appears after the first batch.")


def is_pipeline(rec) -> bool:
    from runners.pipelines.pipeline_dir import is_pipeline_dir

    return is_pipeline_dir(rec.run_dir)


def pipeline_stages(rec) -> list[dict[str, Any]]:
    """A pipeline's stages in order, each with its registry status and its step (from its own files), and
    which one is current: the running stage, else the last one that started, else the first."""
    from runners.pipelines.pipeline_dir import PipelineDir

    reg = registry()
    stages = PipelineDir(Path(rec.run_dir)).stage_runs()
    out = []
    for stage in stages:
        try:
            srec = reg.get(stage.run_id)
            status = srec.status
        except ValueError:
            status = "missing"
        progress = stage.run.progress() or {}
        out.append({"index": stage.index, "of": len(stages), "stage": stage.name, "method": stage.method,
                    "run_id": stage.run_id, "status": status, "step": progress.get("step"),
                    "max_steps": progress.get("max_steps"), "current": False})
    running = [s for s in out if s["status"] == "running"]
    started = [s for s in out if s["status"] not in ("prepared", "missing")]
    current = running[0] if running else (started[-1] if started else (out[0] if out else None))
    if current is not None:
        current["current"] = True
    return out


def _pipeline_view(rec, key: str) -> str | None:
    """A pipeline's status and stages (stage k of n, each stage's status and step, the current one marked);
    returns the run id of the stage to show below (the current one unless another is picked)."""
    stages = pipeline_stages(rec)
    if not stages:
        st.caption("This pipeline has no stages recorded (pipeline.yaml has no stage_runs).")
        return None
    current = next(s for s in stages if s["current"])
    c1, c2 = st.columns(2)
    c1.metric("Pipeline status", rec.status, help="From the run registry (runs/registry.db).")
    c2.metric("Stage", f"{current['index']} of {current['of']}: {current['stage']}")
    table = [{"": "▶" if s["current"] else "", "stage": f"{s['index']} of {s['of']}: {s['stage']}",
              "method": s["method"], "status": s["status"],
              "step": f"{s['step'] if s['step'] is not None else '–'} / {s['max_steps'] or '?'}",
              "run id": s["run_id"]} for s in stages]
    st.dataframe(table, hide_index=True, key=f"{key}_stages")
    names = [s["run_id"] for s in stages]
    labels = {s["run_id"]: f"{s['index']}. {s['stage']} ({s['method']}, {s['status']})"
              + (" – current" if s["current"] else "") for s in stages}
    return st.selectbox("Stage shown", names, index=names.index(current["run_id"]), format_func=labels.get,
                        key=f"{key}_stage_pick")


def registry():
    """The run registry under the runs root; opening it reconciles runs whose processes ended."""
    from runners.registry.store import Registry

    return Registry.for_runs_root()


def render_run(run_id: str, *, key: str, capacity_bytes: int | None = None) -> str | None:
    """A run's live view: status, progress and ETA, curves, measured vs predicted memory, log tail.

    Redraws every REFRESH_S seconds while the run is alive (st.fragment), and reruns the whole page
    once when it ends so the page's buttons match the new status. A pipeline shows its stages and
    the current (or chosen) stage's view. Returns the status drawn."""
    def body() -> str | None:
        try:
            rec = registry().get(run_id)
        except Exception as exc:
            show_error(f"Reading run {run_id}", exc)
            return None
        if is_pipeline(rec):
            _review_banner(rec, key)
            stage = _pipeline_view(rec, key)
            if stage is not None:
                try:
                    _run_view(registry().get(stage), f"{key}_stage", capacity_bytes)
                except ValueError as exc:  # a stage without a registry row
                    show_error(f"Reading stage {stage}", exc)
            return rec.status
        return _run_view(rec, key, capacity_bytes)

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


def _run_view(rec, key: str, capacity_bytes: int | None = None) -> str:
    """One run: status, progress and ETA, curves (PPO's groups and its samples), memory, log tail."""
    import time as _time

    from alignplan import figures
    from runners.rundir.reader import RunDir

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
    fraction, _ = figures.progress_eta(step, max_steps, elapsed, start_step)
    eta = smoothed_eta(rows, max_steps, start_step)
    if rec.status == "succeeded":
        fraction, eta = 1.0, 0.0
    status = "stopping…" if is_stopping(rec) else rec.status
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Status", status, help="From the run registry (runs/registry.db).")
    c2.metric("Step", f"{step or 0} / {max_steps or '?'}")
    c3.metric("Elapsed", fmt_duration(elapsed), help="Time since the run started.")
    c4.metric("ETA", fmt_duration(eta) if rec.status == "running" and eta is not None else "–",
              help=f"From the moving average of the step time, leaving out the first {ETA_SKIP_STEPS} steps.")
    if rec.status == "running" and not step:
        phase = run.phase()
        st.progress(phase_fraction(phase), text=f"{icon} {phase_text(phase, _time.time())}")
    else:
        st.progress(fraction, text=f"{icon} {status}: {fraction:.0%}")
    if rec.status == "failed" and rec.error:
        st.error("The run failed. Its last log lines are below.")
    if rows:
        charts = metric_charts(rows)
        cols = st.columns(2)
        for i, (title, keys) in enumerate(charts):
            cols[i % 2].plotly_chart(figures.metric_curves_figure(rows, keys, title=title),
                                     key=f"{key}_chart_{i}")
        samples = latest_samples(run)
        if samples:
            st.markdown(f"**Latest samples** (iteration {samples[0]['iteration']}, from samples.jsonl)")
            st.dataframe(samples, hide_index=True, key=f"{key}_samples",
                         column_config={"score": st.column_config.NumberColumn(format="%.3f"),
                                        "prompt": st.column_config.TextColumn(width="medium"),
                                        "response": st.column_config.TextColumn(width="large")})
        st.markdown("**Peak memory: measured vs predicted**")
        st.plotly_chart(figures.memory_vs_prediction_figure(rows, rec.predicted_peak_bytes, capacity_bytes),
                        key=f"{key}_mem")
    else:
        st.caption("No metrics yet: the first line appears after the first logging step.")
    if rec.method == LABEL_METHOD:  # the judge's report and the judged pairs, whether or not metrics came yet
        _label_view(Path(rec.run_dir), key)
    elif rec.method == CAI_METHOD:
        _revision_view(Path(rec.run_dir), key)
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
    st.markdown("**Log**")
    log = run.stdout_log.read_text(encoding="utf-8", errors="replace") if run.stdout_log.is_file() else ""
    shown = log[-LOG_SHOWN_CHARS:]  # the page redraws every REFRESH_S: the download has the whole file
    if len(shown) < len(log):
        st.caption(f"The last {LOG_SHOWN_CHARS:,} of {len(log):,} characters; the download has all of it.")
    st.code(readable_log(shown) or "(no output yet)", language="text", height=320)
    if log:
        st.download_button("Download the log", log.encode("utf-8"), file_name=f"{rec.id}-stdout.log",
                           mime="text/plain", key=f"{key}_log_download", icon=":material/download:")
    return rec.status


STOPPING_KEY = "monitor_stopping"  # session state: ids of runs asked to stop whose process is still alive
ETA_SKIP_STEPS = 2  # the first steps carry compilation, allocator warm-up and data-loader start
ETA_SMOOTHING = 0.3  # weight of the newest step time in the moving average


def smoothed_step_time(rows: list[dict[str, Any]], start_step: int = 0,
                       skip: int = ETA_SKIP_STEPS) -> float | None:
    """Seconds per step: an exponential moving average over the logged rows' (time, step) deltas,
    leaving out the first ``skip`` steps after start_step; None until two rows are past them."""
    marks = [(r["time"], r["step"]) for r in rows
             if isinstance(r.get("time"), int | float) and isinstance(r.get("step"), int)
             and r["step"] > start_step + skip and not any(k.startswith("eval_") for k in r)]
    avg = None
    for (t0, s0), (t1, s1) in zip(marks, marks[1:], strict=False):
        if s1 <= s0 or t1 < t0:
            continue
        per_step = (t1 - t0) / (s1 - s0)
        avg = per_step if avg is None else ETA_SMOOTHING * per_step + (1 - ETA_SMOOTHING) * avg
    return avg


def smoothed_eta(rows: list[dict[str, Any]], max_steps: int | None, start_step: int = 0) -> float | None:
    step = next((r["step"] for r in reversed(rows) if isinstance(r.get("step"), int)), None)
    per_step = smoothed_step_time(rows, start_step)
    if per_step is None or step is None or not max_steps:
        return None
    return per_step * max(0, max_steps - step)


def phase_text(phase: dict[str, Any] | None, now: float) -> str:
    """The start of a run in words, e.g. "Tokenising 1,000 rows (12 s)"; "Starting" before any phase."""
    if not phase:
        return "Starting the process"
    name = str(phase.get("phase", "starting"))
    what = {"loading the model": "Loading the model", "tokenising": "Tokenising the data",
            "first step": "Running the first step"}.get(name, name.capitalize())
    if name == "tokenising" and isinstance(phase.get("rows"), int):
        what = f"Tokenising {phase['rows']:,} rows"
    if name == "loading the model" and phase.get("model"):
        what = f"Loading the model ({Path(str(phase['model'])).name})"
    since = phase.get("since")
    return what + (f", {fmt_duration(now - since)} so far" if isinstance(since, int | float) else "")


START_PHASES = ("loading the model", "tokenising", "first step")


def phase_fraction(phase: dict[str, Any] | None) -> float:
    """How far through the start the run is: each phase reached counts a share (the bar moves on)."""
    name = (phase or {}).get("phase")
    return (START_PHASES.index(name) + 1) / (len(START_PHASES) + 1) if name in START_PHASES else 0.0


_DICT_LINE = re.compile(r"^\s*\{.*\}\s*$")


def readable_log(text: str) -> str:
    """The log with the trainer's metric dicts ({'loss': 0.6931, ...}) as "loss 0.693 · ..." lines."""
    import ast

    out = []
    for line in text.splitlines():
        if _DICT_LINE.match(line):
            try:
                row = ast.literal_eval(line.strip())
            except (ValueError, SyntaxError):
                row = None
            if isinstance(row, dict) and row:
                out.append(" · ".join(f"{k} {_metric_value(v)}" for k, v in row.items()))
                continue
        out.append(line)
    return "\n".join(out)


def _metric_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.4g}"
    if isinstance(value, str):
        try:
            return _metric_value(float(value))
        except ValueError:
            return value
    return str(value)


def mark_stopping(run_id: str) -> None:
    st.session_state.setdefault(STOPPING_KEY, set()).add(run_id)


def is_stopping(rec) -> bool:
    """Asked to stop from this session and still running: the page says "stopping…" until it ends."""
    stopping = st.session_state.get(STOPPING_KEY) or set()
    if rec.status != "running":
        stopping.discard(rec.id)
        return False
    return rec.id in stopping


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

