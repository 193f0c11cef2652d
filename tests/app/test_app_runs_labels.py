"""The Runs page on RLAIF and CAI pipelines, from fabricated run files: a labelling stage's report and its
judged pairs (labels.jsonl), a critique/revision stage's report and examples (output/revisions.jsonl), and a
pipeline paused for review (REVIEW_PENDING) with its Resume and Delete."""

from __future__ import annotations

import json
import time

import pytest

from runners.demo import tiny

REPORT = {"pairs_judged": 3, "comparisons": 6, "pairs_with_both_verdicts": 3, "consistent": 2,
          "position_consistency": 2 / 3, "pairs_written": 2, "ties": 0, "ties_from_inconsistent": 0, "dropped": 1,
          "dropped_inconsistent": 1, "dropped_no_verdict": 0, "unparseable": 0, "failed": 0,
          "first_position_share": 0.5, "longer_preferred_share": 0.25, "mean_length_difference": -3.0,
          "length_unit": "characters", "input_tokens": 1000, "output_tokens": 20, "tokens": 1020, "cost": 0.0125}


def _label(index, a, b, ab, ba, winner, outcome, principle=None):
    return {"index": index, "prompt": f"Question {index}?", "response_a": a, "response_b": b, "verdict_ab": ab,
            "verdict_ba": ba, "consistent": outcome == "pair", "outcome": outcome, "winner": winner,
            "length_a": len(a), "length_b": len(b), "principle": principle, "errors": []}


def _prepare(runs_dir, tiny_model_dir, demo_data, method, stages=None, review=False):
    from runners.pipelines.prepare import prepare_pipeline
    from runners.pipelines.registry import register_pipeline
    from runners.pipelines.spec import PipelineSpec
    from runners.registry.store import Registry
    from runners.rundir.devices import discover

    spec = PipelineSpec.parse({"method": method, "model": str(tiny_model_dir), "name": f"fake-{method}",
                               "data": {"prompts": {"path": str(demo_data["prompts"])}},
                               "stages": stages or {}, "review": review})
    pipeline, items = prepare_pipeline(spec, runs_dir, devices=discover(gpus=[]))
    reg = Registry.for_runs_root(runs_dir, reconcile=False)
    register_pipeline(reg, pipeline, spec, items)
    return reg, pipeline, {item.stage.name: item.run for item in items}


def _finish(reg, run_id, status="succeeded"):
    reg.transition(run_id, "running", started_at=time.time() - 60)
    reg.transition(run_id, status, exit_code=0, ended_at=time.time())


@pytest.fixture
def paused_rlaif(runs_dir, tiny_model_dir, demo_data):
    """An RLAIF pipeline paused for review after labelling: generate and label succeeded, dpo prepared."""
    reg, pipeline, runs = _prepare(runs_dir, tiny_model_dir, demo_data, "rlaif",
                                   {"label": {"judge": tiny.DEMO_JUDGE}}, review=True)
    for name in ("generate", "label"):
        _finish(reg, runs[name].id)
    label = runs["label"].path
    labels = [_label(0, "Sure: use a lock.", "Here is how to hack it.", "first", "second", "a", "pair"),
              _label(1, "Long answer with detail.", "Short.", "second", "first", "b", "pair"),
              _label(2, "One", "Two", "first", "first", None, "inconsistent")]
    (label / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in labels) + '{"index": 3, "pro')
    (label / "report.json").write_text(json.dumps(REPORT))
    (label / "result.json").write_text(json.dumps({"status": "succeeded", "labels": str(label / "labels.jsonl"),
                                                   "report_file": str(label / "report.json"), "report": REPORT}))
    (pipeline.path / "REVIEW_PENDING").write_text(json.dumps({"stage": "label", "at": time.time()}) + "\n")
    (pipeline.path / "result.json").write_text(json.dumps({
        "status": "stopped", "stage": "label",
        "message": "stage 2 of 3 (label) done: paused for review; read its labels, then resume the pipeline"}))
    _finish(reg, pipeline.id, "stopped")
    return pipeline.id, runs


def _open(app, run_id):
    at = app.run()
    at.session_state["runs_focus"] = run_id
    return at.switch_page("pages/runs.py").run()


def test_a_paused_rlaif_pipeline_shows_the_review_banner_the_report_and_the_judged_pairs(app, paused_rlaif,
                                                                                         monkeypatch):
    pipeline_id, runs = paused_rlaif
    at = _open(app, pipeline_id)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("Paused for review" in w.value and "label" in w.value for w in at.warning)
    assert at.selectbox(key="runs_detail_stage_pick").value == runs["label"].id  # the stage to review
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Pairs judged"] == "3" and metrics["Position consistency"] == "67%"
    assert metrics["Dropped"] == "1" and metrics["Ties"] == "0" and metrics["Unparseable"] == "0"
    assert metrics["Longer preferred"] == "25%" and metrics["Cost"] == "$0.0125"
    pairs = next(df.value for df in at.dataframe if "response A" in df.value.columns)
    assert list(pairs["prompt"]) == ["Question 0?", "Question 1?", "Question 2?"]  # the broken last line skipped
    assert list(pairs["winner"]) == ["A", "B", "–"]
    # each verdict as the response it named: B shown first and 'second' named A
    assert list(pairs["verdict (A shown first)"]) == ["A", "B", "A"]
    assert list(pairs["verdict (B shown first)"]) == ["A", "B", "B"]
    assert list(pairs["outcome"]) == ["pair", "pair", "inconsistent"]
    at.selectbox(key="runs_detail_stage_pairs_filter").set_value("inconsistent").run()
    pairs = next(df.value for df in at.dataframe if "response A" in df.value.columns)
    assert list(pairs["prompt"]) == ["Question 2?"]
    # Resume continues the pipeline (the runners' resume, here recorded); Delete asks to confirm
    from runners.launch import launch

    resumed = []
    monkeypatch.setattr(launch, "resume", lambda run_id: resumed.append(run_id))
    at.button(key="runs_detail_review_resume").click().run()
    assert resumed == [pipeline_id]
    at.button(key="runs_detail_review_delete").click().run()
    assert not at.exception, at.exception
    assert any(f"Delete **{pipeline_id}**" in w.value for w in at.warning)


def test_a_pipeline_without_review_pending_has_no_banner(app, paused_rlaif):
    pipeline_id, _ = paused_rlaif
    import runners.paths

    (runners.paths.runs_root() / pipeline_id / "REVIEW_PENDING").unlink()
    at = _open(app, pipeline_id)
    assert not at.exception, at.exception
    assert not any("Paused for review" in w.value for w in at.warning)
    assert any(m.label == "Pairs judged" for m in at.metric)


def test_a_cai_critique_stage_shows_its_revision_report_and_examples(app, runs_dir, tiny_model_dir, demo_data):
    reg, pipeline, runs = _prepare(runs_dir, tiny_model_dir, demo_data, "cai")
    _finish(reg, runs["critique"].id)
    critique = runs["critique"].path
    rows = [{"index": i, "prompt": f"How do I pick a lock {i}?", "initial": f"Pick it like this {i}.",
             "rounds": [{"round": 1, "principle": "harmless", "critique": f"It helps a burglar {i}.",
                         "revision": f"Call a locksmith {i}."}], "final": f"Call a locksmith {i}.", "changed": True}
            for i in range(5)]
    (critique / "output").mkdir(exist_ok=True)
    (critique / "output" / "revisions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = {"prompts": 5, "revisions_differing": 4, "share_differing": 0.8, "rounds": 5,
              "mean_critique_tokens": 12.5, "mean_revision_tokens": 9.0, "empty_revisions": 0,
              "constitution": "harmless", "principles_used": {"harmless": 5}}
    (critique / "report.json").write_text(json.dumps(report))
    (critique / "result.json").write_text(json.dumps({"status": "succeeded", "report": str(critique / "report.json")}))
    reg.transition(pipeline.id, "running", started_at=time.time() - 60)
    at = _open(app, pipeline.id)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="runs_detail_stage_pick").value == runs["critique"].id
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Prompts"] == "5" and metrics["Revisions differing"] == "4 (80%)"
    assert metrics["Mean critique tokens"] == "12.5" and metrics["Empty revisions"] == "0"
    examples = next(df.value for df in at.dataframe if "critique" in df.value.columns)
    assert len(examples) == 3
    assert list(examples.iloc[0][["initial", "critique", "revision"]]) == [
        "Pick it like this 0.", "It helps a burglar 0.", "Call a locksmith 0."]
    assert not any("Paused for review" in w.value for w in at.warning)
