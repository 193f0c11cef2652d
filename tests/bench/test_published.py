"""bench/published.py: each published figure carries its citation and setup, the planner's figure is
made comparable to what the source measured, and savers the planner cannot express are named."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

import planner
from planner import terms

_PATH = Path(__file__).resolve().parents[2] / "bench" / "published.py"
_spec = importlib.util.spec_from_file_location("bench_published", _PATH)
published = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = published
_spec.loader.exec_module(published)


def test_every_row_cites_a_source_and_states_its_setup():
    assert 8 <= len(published.ROWS) <= 15
    assert len({r["id"] for r in published.ROWS}) == len(published.ROWS)
    for r in published.ROWS:
        assert r["url"].startswith("https://github.com/") and r["setup"] and r["source"]
        assert r["measure"] in ("allocated", "active", "reserved") and r["measured_gib"] > 0
        # every setup is a request the planner accepts
        planner.estimate(published.build_request(r)[0], with_min_gpus=False)


def test_ratio_is_ours_over_measured_on_the_measured_basis():
    rows = published.compute()
    by_id = {r["id"]: r for r in rows}
    for r in rows:
        assert r["ratio"] == pytest.approx(r["ours_gib"] / r["measured_gib"], rel=2e-3)
        assert r["miss"] == (abs(r["ratio"] - 1) > published.MISS)
        assert r["reason"] or not r["miss"], f"{r['id']} misses without a reason"
    # allocated/active: the plan without its overhead; reserved: without the CUDA context only
    act = next(x for x in published.ROWS if x["id"] == "tt3b-ac")
    plan = planner.estimate(published.build_request(act)[0], with_min_gpus=False)
    peak = next(p for p in plan.phases if p["is_peak"])
    assert by_id["tt3b-ac"]["ours_gib"] == pytest.approx((peak["total_bytes"] - peak["components"]["overhead"]) / 2**30,
                                                        abs=0.006)
    res = next(x for x in published.ROWS if x["id"] == "swift-q7b-full-2048")
    plan = planner.estimate(published.build_request(res)[0], with_min_gpus=False)
    assert by_id["swift-q7b-full-2048"]["ours_gib"] == pytest.approx(
        (plan.peak_bytes_per_gpu - terms.CUDA_CONTEXT_BYTES) / 2**30, abs=0.006)


def test_savers_without_a_request_field_are_listed_not_dropped():
    fields = {f.name for f in dataclasses.fields(planner.PlanRequest)}
    row = next(x for x in published.ROWS if x["id"] == "tt3b-offload")
    req, applied, missing = published.build_request(row)
    for name in ("optimizer_in_backward", "activation_offload"):
        if name in fields:
            assert name in applied and getattr(req, name) is True
        else:
            assert name in missing
