"""The Data page's helpers (the data doctor in the app): the cached report, the length histograms, the
findings as rows, and the short summary the Launch page shows under its data choice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from alignplan import data_doctor

FROM_LAUNCH = "data_doctor_from_launch"  # session key: the data set Launch hands over
SEVERITY_ICON = {"error": ":material/error:", "warning": ":material/warning:", "info": ":material/info:"}
LAUNCH_SUMMARY_MAX_BYTES = 20 * 2**20  # Launch inspects smaller local files on the fly; bigger ones on the Data page


def file_stamp(path: str) -> tuple[float, int] | None:
    p = Path(path)
    return (p.stat().st_mtime, p.stat().st_size) if p.is_file() else None


@st.cache_data(show_spinner=False, max_entries=16)
def _cached_report(path: str, stamp: Any, options: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    opts = dict(options)
    if opts.get("markers") is not None:
        opts["markers"] = {k: list(v) for k, v in opts["markers"]}
    return data_doctor.run(path, **opts)


def report_for(path: str, options: dict[str, Any]) -> dict[str, Any]:
    """The doctor's report; rerun only when the file (mtime and size) or an option changes."""
    frozen = {k: (tuple(sorted((kk, tuple(vv)) for kk, vv in v.items())) if isinstance(v, dict) else v)
              for k, v in options.items()}
    return _cached_report(path, file_stamp(path), tuple(sorted(frozen.items())))


def markers_from_yaml(text: str) -> dict[str, list[str]]:
    """The word lists typed on the page (YAML: hedging: [...], confident: [...])."""
    import yaml

    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise ValueError("Marker words: expected YAML lists under hedging: and confident:")
    return {str(k): [str(w) for w in v] for k, v in data.items()}


def findings_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"severity": f["severity"], "code": f["code"], "figure": f["value"], "what it does, what to do": f["message"]}
            for f in report.get("findings", [])]


def length_figure(report: dict[str, Any]):
    """Prompt, chosen and rejected length histograms (plotly bars on shared bins)."""
    import plotly.graph_objects as go

    h = report["lengths"]["histogram"]
    edges = h["edges"]
    mids = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
    fig = go.Figure()
    for name, counts in h["counts"].items():
        fig.add_bar(x=mids, y=counts, name=name, width=(edges[1] - edges[0]) * 0.9, opacity=0.7)
    ln = report["lengths"]
    fig.add_vline(x=ln["truncation"]["max_length"], line_dash="dash", annotation_text="max_length")
    fig.add_vline(x=ln["suggested_max_length"]["suggested"], line_dash="dot", annotation_text="suggested")
    fig.update_layout(barmode="overlay", xaxis_title=ln["unit"], yaxis_title="pairs", height=360,
                      margin={"t": 30, "b": 40}, legend={"orientation": "h"})
    return fig


def quantile_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"field": name, **{k: q[k] for k in ("mean", "p50", "p90", "p95", "p99", "max")}}
            for name, q in report["lengths"]["fields"].items()]


@st.cache_data(show_spinner=False, max_entries=32)
def _launch_report(path: str, stamp: Any) -> dict[str, Any]:
    return data_doctor.run(path, sample_size=2_000)


def launch_summary(path: str | None) -> None:
    """Under Launch's data choice: the doctor's counts for small local files, and a link to the Data page
    with this data set chosen."""
    if not path:
        return
    st.session_state[FROM_LAUNCH] = path
    stamp = file_stamp(path)
    if stamp is not None and stamp[1] <= LAUNCH_SUMMARY_MAX_BYTES:
        try:
            s = _launch_report(path, stamp).get("summary")
        except ValueError:
            s = None
        if s:
            codes = ", ".join(s["codes"]) or "no findings"
            st.caption(f"Data doctor: {s['pairs']:,} pairs, {s['distinct_prompts']:,} distinct prompts; "
                       f"{s['errors']} errors, {s['warnings']} warnings ({codes}); suggested max_length "
                       f"{s['suggested_max_length']} ({s['length_unit']}).")
    st.page_link("pages/data.py", label="Inspect this data in the data doctor", icon=":material/stethoscope:")
