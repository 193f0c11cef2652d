"""The rlaif-label recipe end to end on a prepared run directory: `python -m runners.recipes.rlaif_label
--spec ...` with the rule judge, the always-first judge (0% position consistency, every pair dropped),
STOP/--resume, and the local LM judge on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def prepared(tmp_path: Path, tiny_model_dir: Path, data: Path, judge: dict, **over) -> Path:
    from runners.rundir.prepare import prepare
    from runners.rundir.spec import RunSpec
    from tests.runners.launch_helpers import cpu_devices, no_estimate

    fields = {"method": "rlaif-label", "model": str(tiny_model_dir), "dataset": {"path": str(data)},
              "judge": judge, "devices": "cpu", **over}
    return Path(prepare(RunSpec.parse(fields), tmp_path / "runs", devices=cpu_devices(), estimate=no_estimate).path)


def run_recipe(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "runners.recipes.rlaif_label", "--spec", str(run_dir / "spec.yaml"),
                           *extra], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_rule_judge_labels_the_demo_pairs_and_resumes(tmp_path, tiny_model_dir, demo_data) -> None:
    run_dir = prepared(tmp_path, tiny_model_dir, demo_data["preference"],
                       {"kind": "function", "function": "runners.judges.rules:prefer_safe_then_shorter"},
                       hparams={"batch_size": 50, "max_pairs": 120})
    (run_dir / "STOP").write_text("")
    first = run_recipe(run_dir)
    assert first.returncode == 0, first.stderr[-2000:]
    assert json.loads((run_dir / "result.json").read_text())["status"] == "stopped"
    assert len(read_jsonl(run_dir / "labels.jsonl")) == 50 and len(read_jsonl(run_dir / "output/data.jsonl")) == 50
    second = run_recipe(run_dir, "--resume")
    assert second.returncode == 0, second.stderr[-2000:]
    labels = read_jsonl(run_dir / "labels.jsonl")
    assert [r["index"] for r in labels] == list(range(120))
    assert [m["step"] for m in read_jsonl(run_dir / "metrics.jsonl")] == [50, 100, 120]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["pairs_judged"] == 120 and report["position_consistency"] == 1.0 and report["attempts"] == 2
    # The demo's rejected answers are the short off-topic ones: the shorter-wins rule picks them all,
    # and the report shows the length bias (the longer response never preferred).
    assert report["pairs_written"] == 120 and report["longer_preferred_share"] == 0.0
    assert report["mean_length_difference"] < 0
    pairs = read_jsonl(run_dir / "output/data.jsonl")
    assert all(len(p["chosen"]) < len(p["rejected"]) for p in pairs)
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "succeeded" and result["report"]["pairs_written"] == 120


@pytest.mark.slow
def test_always_first_judge_has_zero_consistency_and_drops_everything(tmp_path, tiny_model_dir, demo_data) -> None:
    run_dir = prepared(tmp_path, tiny_model_dir, demo_data["preference"],
                       {"kind": "function", "function": "runners.judges.rules:always_first"},
                       hparams={"batch_size": 64, "max_pairs": 64})
    out = run_recipe(run_dir)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["position_consistency"] == 0.0 and report["first_position_share"] == 1.0
    assert report["dropped"] == report["dropped_inconsistent"] == 64 and report["pairs_written"] == 0
    assert (run_dir / "output/data.jsonl").read_text() == ""
    assert "position consistency 0.0%; 0 DPO pairs written, 64 dropped" in out.stdout


@pytest.mark.slow
def test_local_judge_through_the_recipe(tmp_path, tiny_model_dir) -> None:
    data = tmp_path / "responses.jsonl"
    rows = [{"prompt": f"Question: name a fruit ({k})\nAnswer:", "responses": [" An apple.", " A pear, or a plum.",
                                                                               " Bread."]} for k in range(6)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_dir = prepared(tmp_path, tiny_model_dir, data, {"kind": "local", "inconsistent": "tie"},
                       hparams={"batch_size": 4, "pairing": "all", "max_pairs_per_prompt": 2})
    out = run_recipe(run_dir)
    assert out.returncode == 0, out.stderr[-2000:]
    labels = read_jsonl(run_dir / "labels.jsonl")
    assert len(labels) == 12 and [r["positions"] for r in labels[:2]] == [[0, 1], [0, 2]]
    for r in labels:
        assert 0 < r["p_first_ab"] < 1 and 0 < r["p_first_ba"] < 1
        assert r["p_a"] == pytest.approx((r["p_first_ab"] + 1 - r["p_first_ba"]) / 2)
        assert r["outcome"] in ("pair", "tie") and r["tokens"] > 0
    report = json.loads((run_dir / "report.json").read_text())
    consistent = sum(r["consistent"] for r in labels)
    assert report["position_consistency"] == pytest.approx(consistent / 12)
    assert report["pairs_written"] == consistent and report["ties"] == 12 - consistent
    assert report["answer_tokens"] == ["A", "B"] and "next-token probabilities" in out.stdout
