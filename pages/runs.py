"""Runs: the registry as a table, one run's detail, two runs compared; stop, resume, delete."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import streamlit as st

from alignplan import errors, figures, formatting, run_monitor, sidebar

sidebar.use_app_navigation()


def _short_model(model: str) -> str:
    """A local model directory by its folder name (hub ids as they are): the table stays readable."""
    return Path(model).name if model.startswith(("/", ".", "~")) else model


def _table(records: list) -> pd.DataFrame:
    rows = []
    for r in records:
        last = r.last_metrics or {}
        rows.append({
            "id": r.id, "status": r.status, "method": r.method, "model": _short_model(r.model),
            "step": last.get("step"), "loss": last.get("loss"),
            "predicted peak (GiB)": None if r.predicted_peak_bytes is None else r.predicted_peak_bytes / formatting.GIB,
            "measured peak (GiB)": None if r.measured_peak_bytes is None else r.measured_peak_bytes / formatting.GIB,
            "duration": formatting.fmt_duration((r.ended_at or r.updated_at) - r.started_at) if r.started_at else "–",
            "created": dt.datetime.fromtimestamp(r.created_at), "name": r.name or "", "dataset": r.dataset,
            "pipeline": getattr(r, "pipeline_id", None) or "",
        })
    return pd.DataFrame(rows)


def _filters(records: list) -> list:
    c1, c2, c3 = st.columns([2, 2, 3])
    statuses = c1.multiselect("Status", sorted({r.status for r in records}), key="runs_status")
    methods = c2.multiselect("Method", sorted({r.method for r in records}), key="runs_method")
    text = c3.text_input("Search id, name, model or dataset", key="runs_search").strip().lower()
    out = []
    for r in records:
        if statuses and r.status not in statuses:
            continue
        if methods and r.method not in methods:
            continue
        if text and not any(text in (v or "").lower() for v in (r.id, r.name, r.model, r.dataset)):
            continue
        out.append(r)
    return out


def _actions(rec) -> None:
    from runners.launch import launch

    bar = st.container(horizontal=True)
    c1 = c2 = c3 = bar
    if (rec.status == "running" and not run_monitor.is_stopping(rec)
            and c1.button("Stop", key="runs_stop", icon=":material/stop:")):
        run_monitor.mark_stopping(rec.id)  # the monitor says "stopping…" until the process is gone
        run_monitor.stop_run_in_background(rec.id)
        st.toast(f"Asked {rec.id} to stop: it saves a checkpoint first, then the status turns to stopped.")
        st.rerun()
    if rec.status in launch.STARTABLE_STATUSES and c2.button("Start", key="runs_start", icon=":material/play_arrow:"):
        if errors.attempt("Starting the run", launch.start, rec.id).ok:
            st.toast(f"Started {rec.id}.")
            st.rerun()
    if rec.status in launch.RESUMABLE_STATUSES and c2.button("Resume", key="runs_resume", icon=":material/replay:"):
        if errors.attempt("Resuming the run", launch.resume, rec.id).ok:
            st.toast(f"Resumed {rec.id} from its newest checkpoint.")
            st.rerun()
    if rec.status == "succeeded":
        c3.page_link("pages/try.py", label="Try it", icon=":material/chat:", query_params={"run": rec.id})
    if rec.status != "running" and c3.button("Delete…", key="runs_delete", icon=":material/delete:"):
        st.session_state["runs_confirm_delete"] = rec.id
    if st.session_state.get("runs_confirm_delete") == rec.id:
        _confirm_delete(rec.id)


def _confirm_delete(run_id: str) -> None:
    with st.container(border=True):
        st.warning(f"Delete **{run_id}**? Its registry entry and its run directory (checkpoints included) "
                   "will be removed.", icon=":material/delete:")
        c1 = c2 = st.container(horizontal=True)
        if c1.button("Delete", type="primary", key="runs_delete_yes"):
            from runners.launch import launch

            st.session_state.pop("runs_confirm_delete", None)
            if errors.attempt("Deleting the run", launch.delete, run_id).ok:
                st.session_state.pop("runs_selected", None)
                st.toast(f"Deleted {run_id}.")
                st.rerun()
        if c2.button("Cancel", key="runs_delete_no"):
            st.session_state.pop("runs_confirm_delete", None)
            st.rerun()


def _detail(records: list) -> None:
    ids = [r.id for r in reversed(records)]  # newest first
    wanted = st.session_state.pop("runs_focus", None)
    if wanted in ids:
        st.session_state["runs_selected"] = wanted
    if st.session_state.get("runs_selected") not in ids:
        st.session_state["runs_selected"] = ids[0]
    run_id = st.selectbox("Run", ids, key="runs_selected")
    rec = next(r for r in records if r.id == run_id)
    _actions(rec)
    run_monitor.render_run(run_id, key="runs_detail")
    from alignplan.throughput_view import render_throughput

    render_throughput(rec)  # predicted vs measured speed (issue 14)
    from runners.rundir.reader import RunDir

    run = RunDir(Path(rec.run_dir))
    spec_path = run.spec_path if run.spec_path.exists() else run.path / "pipeline.yaml"
    with st.expander(f"Spec ({spec_path.name})"):
        text = spec_path.read_text(encoding="utf-8") if spec_path.exists() else "(missing)"
        st.code(text, language="yaml")
    if rec.error:
        with st.expander("Error"):
            st.code(rec.error, language="text")


def _compare(records: list) -> None:
    from runners.rundir.reader import RunDir

    ids = [r.id for r in reversed(records)]
    if len(ids) < 2:
        st.caption("Two runs are needed to compare.")
        return
    c1, c2, c3 = st.columns(3)
    a = c1.selectbox("First run", ids, index=0, key="runs_cmp_a")
    b = c2.selectbox("Second run", ids, index=1, key="runs_cmp_b")
    by_id = {r.id: r for r in records}
    rows = {rid: RunDir(Path(by_id[rid].run_dir)).metrics() for rid in dict.fromkeys([a, b])}
    keys = ["loss"] + sorted({k for rs in rows.values() for k in run_monitor.method_metric_keys(rs)})
    metric = c3.selectbox("Metric", keys, key="runs_cmp_metric")
    st.plotly_chart(figures.compare_runs_figure(rows, metric), key="runs_cmp_chart")


def main() -> None:
    from runners.paths import runs_root

    st.title("Runs")
    st.caption(f"Every run prepared or launched from this machine (registry: {runs_root()}/registry.db). "
               "Runs keep going when the tab closes; this page finds them again.")
    reg = errors.attempt("Opening the run registry", run_monitor.registry)
    if not reg.ok:
        return
    records = reg.value.list()
    if not records:
        st.info("No runs yet. Launch one from the Launch page.")
        if st.button("Go to Launch", icon=":material/rocket_launch:"):
            st.switch_page("pages/launch.py")
        return
    shown = _filters(records)
    st.dataframe(_table(shown), hide_index=True, key="runs_table",
                 column_config={"created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
                                "predicted peak (GiB)": st.column_config.NumberColumn(format="%.2f"),
                                "measured peak (GiB)": st.column_config.NumberColumn(format="%.2f"),
                                "loss": st.column_config.NumberColumn(format="%.4f")})
    if not shown:
        st.info("No run matches the filters.")
        return
    detail, compare = st.tabs(["Run detail", "Compare two runs"])
    with detail:
        _detail(shown)
    with compare:
        _compare(shown)


errors.run_page(main)
