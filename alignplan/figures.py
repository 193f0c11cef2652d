"""Plotly figures for the app: plain functions from numbers to go.Figure, unit-tested.

Inputs are plain data (dicts of bytes, lists of metric rows, node/edge lists) so the figures do not
depend on how the planner, advisor or runners represent them. Bytes are shown in GiB (2^30).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from alignplan.formatting import gib1

GIB = 2**30

# The memory components in stacking order, with their labels and colours.
COMPONENTS: tuple[tuple[str, str, str], ...] = (
    ("weights", "Weights", "#4F46E5"),
    ("gradients", "Gradients", "#0EA5E9"),
    ("optimizer_states", "Optimizer states", "#10B981"),
    ("activations", "Activations", "#F59E0B"),
    ("logits", "Logits", "#EF4444"),
    ("kv_cache", "KV cache", "#8B5CF6"),
    ("overhead", "Overhead", "#9CA3AF"),
)
COMPONENT_LABELS = {key: label for key, label, _ in COMPONENTS}


def _gib(n: float | int | None) -> float:
    return 0.0 if n is None else float(n) / GIB


def memory_breakdown_figure(
    components_by_method: Mapping[str, Mapping[str, int]],
    capacity_bytes: int | None = None,
    capacity_label: str = "GPU memory",
    peak_phase_by_method: Mapping[str, str] | None = None,
    fits_by_method: Mapping[str, bool | None] | None = None,
) -> go.Figure:
    """One stacked bar per method (per-GPU bytes at the peak, by component), the GPU's capacity as
    a horizontal line labelled with the figure the verdict compares against (one decimal, as
    formatting.gib1 shows it everywhere), each bar's total with its verdict and peak phase above it.
    Components a method lacks count as 0; unknown components are stacked last."""
    methods = list(components_by_method)
    known = [key for key, _, _ in COMPONENTS]
    extra = sorted({k for comps in components_by_method.values() for k in comps} - set(known))
    fig = go.Figure()
    for key in known + extra:
        label = COMPONENT_LABELS.get(key, key.replace("_", " ").capitalize())
        colour = next((c for k, _, c in COMPONENTS if k == key), None)
        values = [_gib(components_by_method[m].get(key, 0)) for m in methods]
        fig.add_trace(go.Bar(
            name=label, x=methods, y=values, marker_color=colour,
            hovertemplate="%{x}<br>" + label + ": %{y:.2f} GiB<extra></extra>",
        ))
    totals = [sum(_gib(v) for v in components_by_method[m].values()) for m in methods]
    # Total on top of each bar, and the phase that sets the peak.
    texts = []
    for m, total in zip(methods, totals, strict=True):
        phase = (peak_phase_by_method or {}).get(m)
        fits = (fits_by_method or {}).get(m)
        verdict = {True: " · fits", False: " · does not fit"}.get(fits, "")
        texts.append(f"{total:.1f} GiB{verdict}" + (f"<br>{phase}" if phase else ""))
    fig.add_trace(go.Scatter(
        x=methods, y=totals, mode="text", text=texts, textposition="top center",
        showlegend=False, hoverinfo="skip", name="total",
    ))
    if capacity_bytes:
        fig.add_hline(
            y=_gib(capacity_bytes), line_dash="dash", line_color="#111827",
            annotation_text=f"{capacity_label}: {gib1(capacity_bytes)} usable",
            annotation_position="top right", annotation_bgcolor="rgba(255,255,255,0.85)",
        )
    top = max(totals + [_gib(capacity_bytes)]) if methods else _gib(capacity_bytes)
    fig.update_layout(
        barmode="stack", yaxis_title="GiB per GPU", xaxis_title=None,
        legend_title_text="Component", margin=dict(t=30, b=10, l=10, r=10), height=420,
        yaxis_range=[0, top * 1.18 if top else 1],
    )
    return fig


def metric_curves_figure(
    rows: Sequence[Mapping[str, Any]],
    keys: Iterable[str],
    x: str = "step",
    title: str | None = None,
) -> go.Figure:
    """Lines of the given metric keys against the step, one trace per key, from metrics.jsonl rows.
    Rows without the key (or with a non-numeric value) are skipped for that trace."""
    fig = go.Figure()
    for key in keys:
        xs, ys = [], []
        for row in rows:
            value = row.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or row.get(x) is None:
                continue
            xs.append(row[x])
            ys.append(float(value))
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=key))
    fig.update_layout(
        xaxis_title=x, margin=dict(t=40 if title else 10, b=10, l=10, r=10), height=320,
        title=title, legend=dict(orientation="h", y=-0.25),
    )
    return fig


def compare_runs_figure(runs: Mapping[str, Sequence[Mapping[str, Any]]], key: str, x: str = "step") -> go.Figure:
    """One metric (key) of several runs on the same axes; runs maps a label to its metric rows."""
    fig = go.Figure()
    for label, rows in runs.items():
        pts = [(r[x], float(r[key])) for r in rows
               if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool) and r.get(x) is not None]
        if pts:
            fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=label))
    fig.update_layout(xaxis_title=x, yaxis_title=key, margin=dict(t=10, b=10, l=10, r=10), height=340)
    return fig


def memory_vs_prediction_figure(
    rows: Sequence[Mapping[str, Any]],
    predicted_bytes: int | None,
    capacity_bytes: int | None = None,
    x: str = "step",
) -> go.Figure:
    """Measured peak memory per logged step (GiB) against the predicted peak and the capacity."""
    pts = [(r[x], _gib(r["peak_memory_bytes"])) for r in rows
           if isinstance(r.get("peak_memory_bytes"), (int, float)) and r.get(x) is not None]
    kind = next((r.get("memory_kind") for r in rows if r.get("memory_kind")), None)
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
        name="measured" + (f" ({kind})" if kind else ""),
    ))
    if predicted_bytes:
        fig.add_hline(y=_gib(predicted_bytes), line_dash="dot", line_color="#4F46E5",
                      annotation_text=f"predicted {_gib(predicted_bytes):.2f} GiB", annotation_position="top left")
    if capacity_bytes:
        fig.add_hline(y=_gib(capacity_bytes), line_dash="dash", line_color="#111827",
                      annotation_text=f"capacity {_gib(capacity_bytes):.1f} GiB", annotation_position="bottom left")
    fig.update_layout(xaxis_title=x, yaxis_title="GiB", margin=dict(t=10, b=10, l=10, r=10), height=300,
                      yaxis_rangemode="tozero", showlegend=True, legend=dict(orientation="h", y=-0.3))
    return fig


def decision_tree_figure(
    nodes: Sequence[Mapping[str, Any]],
    edges: Sequence[Mapping[str, Any]],
    path: Sequence[str] = (),
) -> go.Figure:
    """The advisor's decision tree, laid out top-down, with the user's path highlighted.

    nodes: dicts with "id" and "label" (and optionally "hover", the longer text shown on hover, and
    "kind": "question" | "outcome");
    edges: dicts with "source", "target" and optionally "label" (the answer);
    path: node ids the user's answers went through, in order.
    """
    ids = [str(n["id"]) for n in nodes]
    labels = {str(n["id"]): str(n.get("label", n["id"])) for n in nodes}
    hovers = {str(n["id"]): str(n.get("hover", labels[str(n["id"])])) for n in nodes}
    kinds = {str(n["id"]): n.get("kind") for n in nodes}
    positions = tree_layout(ids, [(str(e["source"]), str(e["target"])) for e in edges])
    on_path = set(map(str, path))
    path_edges = {(str(a), str(b)) for a, b in zip(path, list(path)[1:], strict=False)}

    fig = go.Figure()
    for highlighted in (False, True):
        xs: list[float | None] = []
        ys: list[float | None] = []
        for e in edges:
            a, b = str(e["source"]), str(e["target"])
            if ((a, b) in path_edges) != highlighted or a not in positions or b not in positions:
                continue
            xs += [positions[a][0], positions[b][0], None]
            ys += [positions[a][1], positions[b][1], None]
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
            name="path edges" if highlighted else "edges",
            line=dict(color="#4F46E5" if highlighted else "#D1D5DB", width=4 if highlighted else 1),
        ))
    # Answer labels at the middle of the edges on the path (the others would clutter the drawing).
    mids = [((positions[str(e["source"])][0] + positions[str(e["target"])][0]) / 2,
             (positions[str(e["source"])][1] + positions[str(e["target"])][1]) / 2, str(e.get("label", "")))
            for e in edges if (str(e["source"]), str(e["target"])) in path_edges and e.get("label")]
    for mx, my, text in mids:  # annotations, so the answer sits on a white label over the line
        fig.add_annotation(x=mx, y=my, text=text, showarrow=False, bgcolor="rgba(255,255,255,0.9)",
                           font=dict(color="#4F46E5", size=11), name="answer")
    for highlighted in (False, True):
        chosen = [i for i in ids if (i in on_path) == highlighted]
        fig.add_trace(go.Scatter(
            x=[positions[i][0] for i in chosen], y=[positions[i][1] for i in chosen],
            mode="markers+text", text=[_short(labels[i]) for i in chosen], textposition="bottom center",
            hovertext=[hovers[i] for i in chosen], hoverinfo="text", showlegend=False,
            name="path" if highlighted else "nodes",
            marker=dict(
                size=[16 if kinds.get(i) == "outcome" else 12 for i in chosen],
                symbol=["square" if kinds.get(i) == "outcome" else "circle" for i in chosen],
                color="#4F46E5" if highlighted else "#E5E7EB",
                line=dict(color="#312E81" if highlighted else "#9CA3AF", width=1),
            ),
            textfont=dict(size=10, color="#111827" if highlighted else "#6B7280"),
        ))
    fig.update_layout(
        xaxis=dict(visible=False), yaxis=dict(visible=False),
        margin=dict(t=10, b=10, l=10, r=10), height=max(360, 90 * (1 + max((-p[1] for p in positions.values()), default=0))),
        plot_bgcolor="white",
    )
    return fig


def _short(text: str, width: int = 22) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def tree_layout(ids: Sequence[str], edges: Sequence[tuple[str, str]], sweeps: int = 4) -> dict[str, tuple[float, float]]:
    """(x, y) per node of a decision graph (a tree, or a DAG where branches meet again), in layers.

    A node's layer (-y) is its longest distance from a root, so every edge points down; within a
    layer nodes are ordered by the mean position of their neighbours in the layer above, then
    below (barycentre sweeps), which keeps crossings few. Edges that close a cycle are ignored.
    """
    known = set(ids)
    children: dict[str, list[str]] = {i: [] for i in ids}
    parents: dict[str, list[str]] = {i: [] for i in ids}
    for a, b in edges:
        if a in known and b in known and a != b and b not in children[a]:
            children[a].append(b)
            parents[b].append(a)
    # Drop back edges (cycles) with a depth-first search from the roots.
    roots = [i for i in ids if not parents[i]] or list(ids[:1])
    state: dict[str, int] = {}
    order: list[str] = []
    forward: dict[str, list[str]] = {i: [] for i in ids}

    def visit(node: str) -> None:
        state[node] = 1
        for child in children[node]:
            if state.get(child) == 1:
                continue  # back edge
            forward[node].append(child)
            if child not in state:
                visit(child)
        state[node] = 2
        order.append(node)

    for root in roots + list(ids):
        if root not in state:
            visit(root)
    depth = {i: 0 for i in ids}
    for node in reversed(order):  # reverse post-order is a topological order
        for child in forward[node]:
            depth[child] = max(depth[child], depth[node] + 1)
    back = {i: [] for i in ids}
    for a, kids in forward.items():
        for b in kids:
            back[b].append(a)
    layers: dict[int, list[str]] = {}
    for node in reversed(order):
        layers.setdefault(depth[node], []).append(node)
    rank = {n: float(i) for layer in layers.values() for i, n in enumerate(layer)}

    def reorder(layer: list[str], neighbours: dict[str, list[str]]) -> list[str]:
        def key(n: str) -> float:
            ns = neighbours[n]
            return sum(rank[m] for m in ns) / len(ns) if ns else rank[n]

        out = sorted(layer, key=key)
        for i, n in enumerate(out):
            rank[n] = float(i)
        return out

    levels = sorted(layers)
    for _ in range(sweeps):
        for d in levels[1:]:
            layers[d] = reorder(layers[d], back)
        for d in reversed(levels[:-1]):
            layers[d] = reorder(layers[d], forward)
    width = max(len(layer) for layer in layers.values())
    pos: dict[str, tuple[float, float]] = {}
    for d, layer in layers.items():
        offset = (width - len(layer)) / 2
        for i, node in enumerate(layer):
            pos[node] = (offset + i, -float(d))
    return pos


def progress_eta(step: int | None, max_steps: int | None, elapsed_s: float | None,
                 start_step: int = 0) -> tuple[float, float | None]:
    """(fraction done in [0, 1], seconds left or None) from the last logged step and the time this
    process has run; start_step is where it started (a resumed run continues the step count, so its
    rate is (step - start_step) / elapsed)."""
    if not step or not max_steps or max_steps <= 0:
        return 0.0, None
    fraction = min(1.0, max(0.0, step / max_steps))
    done = step - start_step
    if not elapsed_s or done <= 0:
        return fraction, None
    return fraction, elapsed_s * max(0, max_steps - step) / done


def cost_time_figure(candidates: Sequence[Mapping[str, Any]], within_hours: float | None = None,
                     cheapest: Mapping[str, Any] | None = None, currency: str = "USD") -> go.Figure:
    """Cost against wall time of the setups that fit (planner.timecost.cheapest_setup's candidates):
    one trace per GPU type, a point per GPU count, the deadline as a vertical line, the cheapest ringed."""
    fig = go.Figure()
    by_gpu: dict[str, list[Mapping[str, Any]]] = {}
    for c in candidates:
        if c.get("cost") is not None:
            by_gpu.setdefault(c["gpu"], []).append(c)
    for gpu, rows in by_gpu.items():
        rows = sorted(rows, key=lambda r: r["wall_hours"])
        fig.add_trace(go.Scatter(
            x=[r["wall_hours"] for r in rows], y=[r["cost"] for r in rows], mode="lines+markers", name=gpu,
            text=[f"{r['count']} x {gpu}, ZeRO-{r['zero']}" for r in rows],
            hovertemplate="%{text}<br>%{x:.2f} h, %{y:,.0f} " + currency + "<extra></extra>"))
    if cheapest:
        fig.add_trace(go.Scatter(x=[cheapest["wall_hours"]], y=[cheapest["cost"]], mode="markers", name="cheapest",
                                 marker={"size": 16, "symbol": "circle-open", "line": {"width": 2}}))
    if within_hours:
        fig.add_vline(x=within_hours, line_dash="dash", annotation_text=f"within {within_hours:g} h")
    fig.update_layout(xaxis_title="wall time (hours, log)", yaxis_title=f"cost ({currency}, indicative)",
                      xaxis_type="log", legend_title="GPU type", margin={"t": 30})
    return fig
