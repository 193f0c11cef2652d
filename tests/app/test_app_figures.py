"""The app's plotly figures carry the numbers they are given (GiB = 2^30 bytes)."""

from __future__ import annotations

import math

import pytest

from alignplan import figures

GIB = 2**30


def _bars(fig):
    return {t.name: list(t.y) for t in fig.data if t.type == "bar"}


def test_memory_breakdown_stacks_each_component_per_method_in_gib():
    comps = {
        "dpo": {"weights": 16 * GIB, "gradients": 16 * GIB, "optimizer_states": 32 * GIB, "activations": 3 * GIB},
        "ppo": {"weights": 32 * GIB, "logits": 5 * GIB, "overhead": GIB},
    }
    fig = figures.memory_breakdown_figure(comps, capacity_bytes=80 * GIB)
    bars = _bars(fig)
    assert fig.layout.barmode == "stack"
    assert bars["Weights"] == [16.0, 32.0]
    assert bars["Optimizer states"] == [32.0, 0.0]
    assert bars["Logits"] == [0.0, 5.0]
    assert list(fig.data[0].x) == ["dpo", "ppo"]
    # The stacked heights add up to each method's total.
    totals = [sum(v[i] for v in bars.values()) for i in range(2)]
    assert totals == [67.0, 38.0]
    text = next(t for t in fig.data if t.name == "total")
    assert list(text.y) == totals and text.text[0].startswith("67.0 GiB")
    # The capacity is a horizontal line at 80 GiB.
    line = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(line) == 1 and line[0].y0 == pytest.approx(80.0) and line[0].y1 == pytest.approx(80.0)


def test_memory_breakdown_keeps_unknown_components_and_names_peak_phase():
    fig = figures.memory_breakdown_figure(
        {"grpo": {"weights": GIB, "lora_adapters": GIB // 2}}, peak_phase_by_method={"grpo": "generation"}
    )
    bars = _bars(fig)
    assert bars["Lora adapters"] == [0.5]
    assert "generation" in next(t for t in fig.data if t.name == "total").text[0]
    assert not fig.layout.shapes  # no capacity given, no line


def test_metric_curves_skip_rows_without_the_metric():
    rows = [{"step": 1, "loss": 0.69}, {"step": 2, "loss": 0.6, "rewards/margins": 0.1},
            {"step": 3, "loss": float("nan")}, {"step": 4, "rewards/margins": 0.3}]
    fig = figures.metric_curves_figure(rows, ["loss", "rewards/margins", "absent"])
    by_name = {t.name: t for t in fig.data}
    assert set(by_name) == {"loss", "rewards/margins"}
    assert list(by_name["loss"].x) == [1, 2, 3]
    assert list(by_name["rewards/margins"].y) == [0.1, 0.3]
    assert math.isnan(by_name["loss"].y[2])


def test_compare_runs_one_trace_per_run():
    fig = figures.compare_runs_figure({"a": [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}],
                                       "b": [{"step": 1, "loss": 0.9}], "c": [{"step": 1}]}, "loss")
    assert [t.name for t in fig.data] == ["a", "b"]
    assert list(fig.data[0].y) == [1.0, 0.5]


def test_memory_vs_prediction_lines():
    rows = [{"step": 1, "peak_memory_bytes": GIB, "memory_kind": "cpu_rss"}, {"step": 2, "peak_memory_bytes": 2 * GIB}]
    fig = figures.memory_vs_prediction_figure(rows, predicted_bytes=3 * GIB, capacity_bytes=8 * GIB)
    assert list(fig.data[0].y) == [1.0, 2.0] and "cpu_rss" in fig.data[0].name
    assert sorted(s.y0 for s in fig.layout.shapes) == [3.0, 8.0]


def test_tree_layout_layers_point_down_and_never_overlap():
    edges = [("q1", "q2"), ("q1", "c"), ("q2", "a"), ("q2", "b"), ("c", "b"), ("b", "q1")]  # b->q1 closes a cycle
    pos = figures.tree_layout(["q1", "q2", "a", "b", "c"], edges)
    assert pos["q1"][1] == 0 and pos["q2"][1] == -1 and pos["c"][1] == -1
    assert pos["b"][1] == -2  # its longest way from the root
    for a, b in edges[:-1]:
        assert pos[a][1] > pos[b][1]
    assert len(set(pos.values())) == 5  # no two nodes on the same spot


def test_tree_layout_orders_children_under_their_parents():
    # Two subtrees: each parent's children sit on its side of the layer below.
    edges = [("r", "x"), ("r", "y"), ("x", "x1"), ("x", "x2"), ("y", "y1"), ("y", "y2")]
    pos = figures.tree_layout(["r", "y", "x", "y1", "x1", "y2", "x2"], edges)
    left, right = sorted(["x", "y"], key=lambda n: pos[n][0])
    kids = {"x": ["x1", "x2"], "y": ["y1", "y2"]}
    assert max(pos[k][0] for k in kids[left]) < min(pos[k][0] for k in kids[right])


def test_decision_tree_highlights_the_path():
    nodes = [{"id": "q1", "label": "Reward?"}, {"id": "dpo", "label": "DPO", "kind": "outcome"},
             {"id": "ppo", "label": "PPO", "kind": "outcome"}]
    edges = [{"source": "q1", "target": "dpo", "label": "pairs"}, {"source": "q1", "target": "ppo", "label": "scalar"}]
    fig = figures.decision_tree_figure(nodes, edges, path=["q1", "dpo"])
    by_name = {t.name: t for t in fig.data}
    assert sorted(by_name["path"].hovertext) == ["DPO", "Reward?"]
    assert list(by_name["nodes"].hovertext) == ["PPO"]
    assert [x for x in by_name["path edges"].x if x is not None]
    assert [a.text for a in fig.layout.annotations] == ["pairs"]  # the answer taken, on its edge
    # The grey edges hold only the edge off the path.
    assert len([x for x in by_name["edges"].x if x is None]) == 1


def test_progress_eta():
    assert figures.progress_eta(None, 30, 10.0) == (0.0, None)
    frac, eta = figures.progress_eta(10, 40, 20.0)
    assert frac == 0.25 and eta == pytest.approx(60.0)
    assert figures.progress_eta(50, 40, 20.0) == (1.0, 0.0)


def test_progress_eta_after_resume_counts_only_the_new_steps():
    # resumed at step 20, 5 steps in 10 s since: 2 s/step, 15 steps left
    frac, eta = figures.progress_eta(25, 40, 10.0, start_step=20)
    assert frac == pytest.approx(0.625) and eta == pytest.approx(30.0)
    assert figures.progress_eta(20, 40, 3.0, start_step=20) == (0.5, None)  # no new step yet


def test_capacity_line_shows_the_verdicts_figure_and_each_bar_its_verdict():
    usable = 81559 * 2**20  # H100-80GB as the driver reports it: 79.65 GiB
    peak = int(79.9 * GIB)
    fig = figures.memory_breakdown_figure({"dpo": {"weights": peak}}, capacity_bytes=usable,
                                          capacity_label="H100-80GB", fits_by_method={"dpo": peak <= usable})
    note = fig.layout.annotations[0].text
    assert note == "H100-80GB: 79.6 GiB usable"  # not "80 GiB", which a 79.9 GiB bar sits under
    assert next(t for t in fig.data if t.name == "total").text[0] == "79.9 GiB · does not fit"


def test_fits_cells_name_the_sharding_and_are_all_text():
    from alignplan import plan_tables

    assert plan_tables.fits_cell({"count": 1, "zero": 0}) == "1 (no sharding)"
    assert plan_tables.fits_cell({"count": 2, "zero": 3}) == "2 (ZeRO-3)"
    assert plan_tables.fits_cell({"count": 4, "zero": 3}, export_only=True) == "4 (ZeRO-3, export only)"
    assert plan_tables.fits_cell(None) == "no fit"

    class Plan:
        min_gpus_detail = {"H100-80GB": {"count": 4, "zero": 3}, "T4-16GB": None}

    rows = plan_tables.fits_rows({"ppo": Plan()}, {"H100-80GB": {"usable_bytes": 81559 * 2**20},
                                                   "T4-16GB": {"usable_bytes": 15360 * 2**20}}, {"ppo": "why"})
    assert rows == [{"GPU": "H100-80GB", "usable memory": "79.6 GiB", "ppo": "4 (ZeRO-3, export only)"},
                    {"GPU": "T4-16GB", "usable memory": "15.0 GiB", "ppo": "no fit"}]
