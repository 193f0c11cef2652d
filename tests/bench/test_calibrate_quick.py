"""bench/calibrate.py on two small rows: the analytic plan against the traced step, the peers beside it,
and the three result files with the fields docs/accuracy.md reads; two catalogue rows (slow) within the
table's target.

The two small rows (hidden 256, 4 layers, 2 x 256 tokens) are for the harness's structure: at that size
the analytic plan is 14-17% over the trace (its per-layer activation and gradient terms are sized for
real widths), so their ratio is checked for consistency, not held to the table's target."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("accelerate")

from planner.models import spec_from_config  # noqa: E402

_PATH = Path(__file__).resolve().parents[2] / "bench" / "calibrate.py"
_spec = importlib.util.spec_from_file_location("bench_calibrate", _PATH)
calibrate = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = calibrate  # dataclasses look their module up while the class is made
_spec.loader.exec_module(calibrate)

# hidden 256, 4 layers, vocabulary 8,192: the size tests/planner/test_traced.py traces
SMALL = dict(model_type="llama", hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
             intermediate_size=688, vocab_size=8192, tie_word_embeddings=False, max_position_embeddings=1024)
ROWS = (calibrate.Row("small-llama", "sft", seq=256, batch=2),
        calibrate.Row("small-llama", "dpo", lora=True, seq=256, batch=2))


@pytest.fixture(scope="module")
def results():
    spec = spec_from_config(SMALL, "small-llama")
    return spec, [calibrate.run_row(row, model=spec) for row in ROWS]


@pytest.mark.slow  # the two small traces take ~15 s on a shared core
def test_rows_hold_both_plans_per_phase(results):
    _spec, rows = results
    for r in rows:
        assert r["traced_peak_gib"] > 0 and r["analytic_peak_gib"] > 0
        # (the GiB columns are rounded to 1 MiB: at 70 MiB that is 1.5%)
        assert r["ratio"] == pytest.approx(r["analytic_peak_gib"] / r["traced_peak_gib"], rel=0.02)
        names = [p["phase"] for p in r["phases"]]
        assert "forward_backward" in names and "optimizer_step" in names
        for p in r["phases"]:
            if p["ratio"] is not None:
                assert p["ratio"] == pytest.approx(p["analytic_gib"] / p["traced_gib"], rel=0.05)
        # the gap is split by component, largest first
        diffs = [abs(g["diff_gib"]) for g in r["gaps"]]
        assert diffs == sorted(diffs, reverse=True) and "weights" in {g["component"] for g in r["gaps"]}
    sft, dpo = rows
    assert sft["method"] == "sft" and not sft["lora"] and dpo["lora"]
    # full fine-tuning's optimizer step holds the model states only: the same bytes on both sides
    opt = next(p for p in sft["phases"] if p["phase"] == "optimizer_step")
    assert opt["ratio"] == pytest.approx(1, abs=0.01)
    # DPO scores with the reference before its step: a phase SFT does not have
    assert "scoring" in [p["phase"] for p in dpo["phases"]] and "scoring" not in [p["phase"] for p in sft["phases"]]


@pytest.mark.slow
@pytest.mark.parametrize("row", [calibrate.Row("qwen2.5-0.5b", "dpo", lora=True, batch=1),
                                 calibrate.Row("gemma-2-2b", "sft", lora=True, batch=1)], ids=lambda r: r.id)
def test_catalogue_rows_within_target(row):
    """Two of the --quick rows on catalogue configs (a 151k vocabulary, Gemma-2's soft-capping): the
    analytic peak within the table's worst-row target of the traced one."""
    r = calibrate.run_row(row, with_peers=False)
    assert abs(r["ratio"] - 1) <= calibrate.TARGET_WORST, (r["id"], r["ratio"], r["gaps"][:2])


@pytest.mark.slow  # the two small traces take ~15 s on a shared core
def test_peers_answer_the_same_rows(results):
    spec, rows = results
    for r in rows:
        assert r["rule_16_gib"] == pytest.approx(16 * spec.params_total / 2**30, abs=1e-3)
        assert r["rule_18_gib"] == pytest.approx(18 * spec.params_total / 2**30, abs=1e-3)
        assert r["accelerate_gib"] > 0
        assert r["accelerate_ratio"] == pytest.approx(r["accelerate_gib"] / r["traced_peak_gib"], rel=1e-2)
    # none of the peers reads the method or LoRA: the same answer on both rows
    assert rows[0]["accelerate_gib"] == rows[1]["accelerate_gib"]


@pytest.mark.slow  # the two small traces take ~15 s on a shared core
def test_result_files(results, tmp_path):
    _spec, rows = results
    s = calibrate.write(rows, {"when": "test"}, tmp_path)
    data = json.loads((tmp_path / "calibration.json").read_text())
    assert [r["id"] for r in data["rows"]] == [r.id for r in ROWS]
    assert data["summary"]["alignplan"]["rows"] == 2
    worst = max(abs(r["ratio"] - 1) for r in rows)
    assert s["meets_target"] == (worst <= calibrate.TARGET_WORST and s["alignplan"]["median_abs_error"] <= 0.05)
    assert data["summary"]["alignplan"]["worst_abs_error"] == pytest.approx(max(abs(r["ratio"] - 1) for r in rows), abs=1e-4)
    for peer in calibrate.PEERS:
        assert peer in data["summary"]
    with (tmp_path / "calibration.csv").open() as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == list(calibrate.CSV_FIELDS) and len(table) == 2
    assert float(table[0]["ratio"]) == rows[0]["ratio"]
    md = (tmp_path / "calibration.md").read_text()
    assert "| alignplan (analytic, peak) | 2 |" in md and ROWS[1].id in md and "16 bytes/param rule" in md


def test_unknown_row_is_one_line_exit_2(capsys):
    assert calibrate.main(["--only", "no-such-row"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--only" in err[0] and "no-such-row" in err[0]


def test_grid_covers_the_issue():
    grid = calibrate.GRID
    assert len(grid) >= 40 and len({r.id for r in grid}) == len(grid)
    assert {r.arch for r in grid} == set(calibrate.ARCHS)
    assert {"sft", "dpo", "ipo", "kto", "orpo", "simpo", "grpo", "rloo", "ppo"} <= {r.method for r in grid}
    assert {r.lora for r in grid} == {True, False} and {r.ckpt for r in grid} == {True, False}
    assert {512, 2048} <= {r.seq for r in grid}
    assert {"fused", "chunked", "materialised"} <= {r.loss for r in grid}
