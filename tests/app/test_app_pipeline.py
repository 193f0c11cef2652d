"""Pipelines in the app: the Launch page's RLHF form (a plan row per stage, the advice's PPO preset, Launch
registers the pipeline and its stages) and the Runs page (a pipeline's stages, a PPO stage's curves and
samples)."""

from __future__ import annotations

import json
import time

import pytest

import advisor
from runners.demo import tiny


def _launch_rlhf(app):
    at = app.run()
    at.switch_page("pages/launch.py").run()
    return at.selectbox(key="launch_method").set_value("rlhf").run()


def _plan_table(at):
    return next(df.value for df in at.dataframe if "predicted peak" in df.value.columns)


def test_the_rlhf_form_plans_every_stage_and_a_given_model_skips_its_stage(app):
    at = _launch_rlhf(app)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    table = _plan_table(at)
    assert list(table["stage"]) == ["1. sft", "2. rm", "3. ppo"] and list(table["method"]) == ["sft", "rm", "ppo"]
    assert all(v.endswith("GiB") for v in table["predicted peak"]) and set(table["fits"]) == {"yes"}
    assert set(table["setup"]) == {"cpu"}
    # the tiny RLHF demo's steps per stage, and the pipeline.yaml the Launch button would run
    assert at.number_input(key="launch_pl_steps_ppo_tiny").value == tiny.DEMO_RLHF_STEPS["ppo"]
    import yaml

    spec = yaml.safe_load(next(c.value for c in at.code if c.value.startswith("method: rlhf")))
    assert set(spec["data"]) == {"sft", "preferences"}  # prompts: from the pairs unless given
    assert spec["stages"]["ppo"]["max_steps"] == tiny.DEMO_RLHF_STEPS["ppo"]
    assert spec["stages"]["ppo"]["hparams"]["response_length"] == tiny.DEMO_RLHF_HPARAMS["ppo"]["response_length"]
    assert not at.button(key="launch_go").disabled
    # an existing reward model replaces the rm stage: two stages planned, rm shown as skipped
    at.text_input(key="launch_pl_given_rm").set_value(str(tiny.default_tiny_model_dir())).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = _plan_table(at)
    assert list(table["stage"]) == ["1. sft", "2. ppo", "– rm"] and table["method"].iloc[2] == "skipped"


def test_the_advice_for_ppo_opens_launch_with_the_rlhf_pipeline(app):
    rec = advisor.advise({"reward_signal": "pairwise", "task": "multi_objective", "pairs": 5000})
    assert rec.method == "ppo"
    at = app.run()
    at.session_state["launch_prefill"] = {"from": rec.name, "method": rec.preset["method"], "model": None,
                                          "hparams": rec.preset["hparams"], "reward": None, "note": rec.preset["note"],
                                          "stage": rec.preset.get("stage")}
    at.switch_page("pages/launch.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="launch_method").value == "rlhf"  # the pipeline, never plain DPO under PPO's name
    assert any("Prefilled from the advice: **RLHF with PPO**" in i.value for i in at.info)
    assert at.number_input(key="launch_pl_ppo_kl_coef_tiny").value == pytest.approx(0.05)
    assert at.number_input(key="launch_pl_ppo_cliprange_tiny").value == pytest.approx(0.2)
    # the tiny model keeps the demo's step size (a random 2-layer model does not move at 1e-6)
    assert at.number_input(key="launch_pl_ppo_learning_rate_tiny").value == pytest.approx(
        tiny.DEMO_RLHF_HPARAMS["ppo"]["learning_rate"])
    assert _plan_table(at)["method"].tolist() == ["sft", "rm", "ppo"]


@pytest.mark.slow  # starts the pipeline's processes (one step per stage on the tiny model)
def test_launching_rlhf_registers_the_pipeline_and_its_stages(app):
    from runners.launch import launch

    at = _launch_rlhf(app)
    for stage in ("sft", "rm", "ppo"):
        at.number_input(key=f"launch_pl_steps_{stage}_tiny").set_value(1)
    at.run()
    at.button(key="launch_go").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    pipeline_id = at.session_state["launch_run_id"]
    from runners.registry.store import Registry

    reg = Registry.for_runs_root(reconcile=False)
    rows = {r.id: r for r in reg.list()}
    assert rows[pipeline_id].method == "rlhf" and rows[pipeline_id].pipeline_id is None
    stages = [r for r in rows.values() if r.pipeline_id == pipeline_id]
    assert sorted(r.method for r in stages) == ["ppo", "rm", "sft"]
    rec = launch.wait(pipeline_id, timeout=600)
    assert rec.status == "succeeded", rec.error
    at.run()
    assert any(m.label == "Stage" and m.value.startswith("3 of 3") for m in at.metric)


# --- the Runs page -----------------------------------------------------------------------------------


@pytest.fixture
def fake_pipeline(runs_dir, tiny_model_dir, demo_data):
    """A prepared RLHF pipeline (planned, registered, not trained) whose files say: SFT and RM succeeded, PPO
    stopped after 2 iterations with metrics and samples."""
    from runners.pipelines.prepare import prepare_pipeline
    from runners.pipelines.registry import register_pipeline
    from runners.pipelines.spec import PipelineSpec
    from runners.registry.store import Registry
    from runners.rundir.devices import discover

    spec = PipelineSpec.parse({"method": "rlhf", "model": str(tiny_model_dir), "name": "fake-rlhf",
                               "data": {"sft": {"path": str(demo_data["sft"])},
                                        "preferences": {"path": str(demo_data["preference"])}}})
    pipeline, stages = prepare_pipeline(spec, runs_dir, devices=discover(gpus=[]))
    reg = Registry.for_runs_root(runs_dir, reconcile=False)
    register_pipeline(reg, pipeline, spec, stages)
    for item in stages:
        reg.transition(item.run.id, "running", started_at=time.time() - 60)
        reg.transition(item.run.id, "succeeded" if item.stage.name != "ppo" else "stopped", exit_code=0,
                       ended_at=time.time())
        rows = ([{"step": s, "max_steps": 2, "loss": 1.0 / s} for s in (1, 2)] if item.stage.name != "ppo" else
                [{"step": s, "max_steps": 40, "score": 0.1 * s, "kl": 0.01 * s, "non_score_reward": -0.001 * s,
                  "entropy": 5.0, "policy_loss": -0.1, "value_loss": 0.5, "policy_clipfrac": 0.02,
                  "value_clipfrac": 0.1, "approx_kl": 0.001, "explained_variance": 0.1, "response_length": 16.0,
                  "eos_fraction": 0.0, "tokens_per_second": 100.0, "kl_coef": 0.05} for s in (1, 2)])
        item.run.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ppo = next(item.run for item in stages if item.stage.name == "ppo")
    samples = [{"iteration": it, "prompt": f"Say hi #{i}", "response": f"hi {it}.{i}", "score": 0.5 * i,
                "ended_with_eos": False} for it in (1, 2) for i in range(3)]
    ppo.samples_path.write_text("".join(json.dumps(s) + "\n" for s in samples) + '{"iteration": 3, "pro')
    reg.transition(pipeline.id, "running", started_at=time.time() - 60)
    reg.transition(pipeline.id, "stopped", exit_code=0, ended_at=time.time())
    return pipeline.id, [item.run.id for item in stages]


def test_the_runs_page_shows_a_pipelines_stages_and_the_ppo_stages_curves_and_samples(app, fake_pipeline):
    pipeline_id, stage_ids = fake_pipeline
    at = app.run()
    at.session_state["runs_focus"] = pipeline_id
    at.switch_page("pages/runs.py").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value  # the registry: the pipeline row and its stages, tagged with the pipeline
    assert set(table.loc[table["pipeline"] == pipeline_id, "id"]) == set(stage_ids)
    stages = next(df.value for df in at.dataframe if "run id" in df.value.columns)
    assert list(stages["stage"]) == ["1 of 3: sft", "2 of 3: rm", "3 of 3: ppo"]
    assert list(stages["status"]) == ["succeeded", "succeeded", "stopped"]
    assert list(stages[""]) == ["", "", "▶"]  # the current stage: the last that ran
    assert list(stages["step"]) == ["2 / 2", "2 / 2", "2 / 40"]
    assert any(m.label == "Stage" and m.value == "3 of 3: ppo" for m in at.metric)
    assert at.selectbox(key="runs_detail_stage_pick").value == stage_ids[2]
    titles = [c.proto.spec for c in at.get("plotly_chart")]
    for title in ("Score and KL", "Policy and value loss", "Clip fractions", "Entropy", "Response length"):
        assert any(title in spec for spec in titles), title
    samples = next(df.value for df in at.dataframe if "response" in df.value.columns)
    assert list(samples["iteration"]) == [2, 2, 2]  # the newest iteration; the half-written line is skipped
    assert list(samples["prompt"]) == ["Say hi #0", "Say hi #1", "Say hi #2"]
    assert list(samples["score"]) == [0.0, 0.5, 1.0]
    assert any(c.value.startswith("method: rlhf") for c in at.code)  # pipeline.yaml in the spec expander
    # another stage on demand: the SFT stage's loss curve, no samples
    at.selectbox(key="runs_detail_stage_pick").set_value(stage_ids[0]).run()
    assert not at.exception
    assert not any("response" in df.value.columns for df in at.dataframe)
    assert any("Loss" in c.proto.spec for c in at.get("plotly_chart"))


def test_samples_reader_keeps_the_newest_iterations(tmp_path):
    from runners.rundir.reader import RunDir

    run = RunDir(tmp_path)
    assert run.samples() == []
    rows = [{"iteration": it, "prompt": "p", "response": "r", "score": float(it)} for it in (10, 10, 20, 30)]
    run.samples_path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    assert [r["iteration"] for r in run.samples()] == [30]
    assert [r["iteration"] for r in run.samples(iterations=2)] == [20, 30]
