"""The Launch page: defaults, data checks, the advisor's hand-over, and (slow) a real demo run."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import pytest
import yaml

from runners.demo import tiny


def _launch_page(app):
    at = app.run()
    return at.switch_page("pages/launch.py").run()


def _errors(at):
    """The page's errors other than the refusal of a hub model this offline machine cannot load."""
    return [e.value for e in at.error if not e.value.startswith("**Launch is off**")]


def _metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def test_launch_page_defaults_to_the_demo_run(app, runs_dir):
    at = _launch_page(app)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="launch_method").value == "dpo"
    assert any("Detected format **preference**" in s.value for s in at.success)
    # The tiny model was built (so the planner could read its config) and the fit is checked on the CPU.
    assert (runs_dir / "tiny-model" / "config.json").is_file()
    assert _metric(at, "Predicted peak in RAM").endswith("GiB")
    spec_yaml = next(c.value for c in at.code if c.value.startswith("method: dpo"))
    spec = yaml.safe_load(spec_yaml)
    assert spec["hparams"]["learning_rate"] == tiny.DEMO_HPARAMS["learning_rate"]  # the demo's, not TRL's 1e-6
    assert spec["max_steps"] == tiny.DEMO_MAX_STEPS and spec["trust_remote_code"] is False
    assert not at.button(key="launch_go").disabled


def test_a_bad_dataset_is_rejected_with_what_to_change(app, tmp_path):
    at = _launch_page(app)
    at.radio(key="launch_data_source").set_value("Upload a file").run()
    rows = [{"question": "hi", "answer": "hello"}] * 3
    at.file_uploader(key="launch_upload").set_value(
        ("wrong.jsonl", "\n".join(json.dumps(r) for r in rows).encode(), "application/jsonl")).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors and "wrong.jsonl" in errors[0] and "prompt" in errors[0]  # names the file and the columns
    assert at.button(key="launch_go_disabled").disabled
    # A path that does not exist is an error too, not a traceback.
    at.radio(key="launch_data_source").set_value("Local path or hub dataset id").run()
    at.text_input(key="launch_data_path").set_value(str(tmp_path / "missing.jsonl")).run()
    assert not at.exception and at.error


def test_the_advice_prefills_the_form(app):
    at = app.run()
    at.session_state["launch_prefill"] = {"from": "IPO", "method": "ipo", "model": None,
                                          "hparams": {"beta": 0.2, "loss_type": ["ipo"]}}
    at.switch_page("pages/launch.py").run()
    assert not at.exception
    assert at.selectbox(key="launch_method").value == "ipo"
    assert any("Prefilled from the advice" in i.value for i in at.info)
    assert "loss_type" in at.text_area(key="launch_extras_ipo_tiny").value
    assert at.number_input(key="launch_hp_ipo_tiny_beta").value == pytest.approx(0.2)


@pytest.mark.slow
def test_launching_the_demo_trains_and_the_runs_page_finds_it(app):
    from runners.launch import launch

    at = _launch_page(app)
    at.button(key="launch_go").click().run()
    assert not at.exception, at.exception
    run_id = at.session_state["launch_run_id"]
    rec = launch.wait(run_id, timeout=600)
    assert rec.status == "succeeded", rec.error
    at.run()
    assert _metric(at, "Status") == "succeeded"
    assert _metric(at, "Step") == "30 / 30"
    # A fresh session (as after an app restart) finds the run in the registry.
    fresh = type(app).from_file(app._script_path, default_timeout=60).run()
    fresh.switch_page("pages/runs.py").run()
    assert not fresh.exception
    table = fresh.dataframe[0].value
    assert list(table["id"]) == [run_id] and list(table["status"]) == ["succeeded"]
    assert float(table["measured peak (GiB)"].iloc[0]) > 0
    charts = fresh.get("plotly_chart")
    assert len(charts) >= 2  # loss and the DPO metrics (rewards/...) curves
    t0 = time.monotonic()
    fresh.button(key="runs_delete").click().run()
    fresh.button(key="runs_delete_yes").click().run()
    assert not fresh.exception and time.monotonic() - t0 < 60
    assert any("No runs yet" in i.value for i in fresh.info)


@pytest.mark.slow
def test_stop_then_resume_from_the_pages(app):
    from runners.launch import launch
    from runners.registry.store import Registry
    from runners.rundir.reader import RunDir

    at = _launch_page(app)
    at.number_input(key="launch_steps_dpo_tiny").set_value(400).run()
    at.button(key="launch_go").click().run()
    run_id = at.session_state["launch_run_id"]
    reg = Registry.for_runs_root()
    run = RunDir(Path(reg.get(run_id).run_dir))
    deadline = time.monotonic() + 300
    while not run.metrics() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert run.metrics(), "no metrics within 300 s"
    at.run()
    at.button(key="launch_stop").click().run()  # returns at once; the stop runs in the background
    rec = launch.wait(run_id, timeout=300)
    assert rec.status == "stopped"
    steps_before = run.metrics()[-1]["step"]
    at.switch_page("pages/runs.py").run()
    at.button(key="runs_resume").click().run()
    assert not at.exception and not at.error
    assert reg.get(run_id).status == "running" and reg.get(run_id).launches == 2
    while len(run.metrics()) <= steps_before and time.monotonic() < deadline + 300:
        time.sleep(0.5)
    launch.stop(run_id)
    assert run.metrics()[-1]["step"] > steps_before  # continued, step count going on


@contextlib.contextmanager
def _hub_model_form(app, monkeypatch, fake_gpus: str, model: str = "meta-llama/Llama-3.1-8B"):
    """The Launch page with fake GPUs and a hub model typed in (devices are cached: cleared around it)."""
    from alignplan import launch_form

    monkeypatch.setenv("ALIGNPLAN_FAKE_GPUS", fake_gpus)
    launch_form.devices_found.clear()
    try:
        at = _launch_page(app)
        at.radio(key="launch_model_source").set_value("Hub id or local model directory").run()
        at.text_input(key="launch_model").set_value(model).run()
        yield at
    finally:
        launch_form.devices_found.clear()


def test_a_run_that_will_not_fit_warns_with_fixes(app, monkeypatch):
    with _hub_model_form(app, monkeypatch, "T4-16GB") as at:
        assert not at.exception and not _errors(at), _errors(at)  # the Launch refusal is test_app_launch_gate.py's
        gpus = next(d.value for d in at.dataframe if "GPU" in d.value.columns)
        assert list(gpus["GPU"]) == ["NVIDIA T4"]
        assert _metric(at, "Setup") == "single-gpu"
        assert float(_metric(at, "Predicted peak per GPU").split()[0]) > 15
        warning = next(w.value for w in at.warning if "will not fit" in w.value)
        assert "T4" in warning or "GiB" in warning
        fixes = next(m.value for m in at.markdown if m.value.startswith("Suggested fixes"))
        assert fixes.count("\n- ") >= 1 and "GiB per GPU" in fixes  # each fix with its planned peak


def test_several_gpus_offer_sharding_and_the_stage_reaches_the_plan(app, monkeypatch):
    monkeypatch.setattr("runners.rundir.decide.deepspeed_installed", lambda: False)
    with _hub_model_form(app, monkeypatch, "A100-40GB,A100-40GB,A100-40GB,A100-40GB") as at:
        at.number_input(key="launch_hp_dpo_model_per_device_train_batch_size").set_value(1).run()
        assert not at.exception and not _errors(at), _errors(at)  # the Launch refusal is test_app_launch_gate.py's
        # auto without DeepSpeed installed: FSDP2. With the reference in memory no stage fits 40 GiB, so
        # the reference is precomputed, and stage 2 fits
        assert _metric(at, "Setup") == "fsdp-shard-grad-op"
        assert any("precompute_ref_log_probs set to true" in c.value for c in at.caption)
        at.selectbox(key="launch_stage").set_value(3).run()
        assert _metric(at, "Setup") == "fsdp-full-shard"
        acc = yaml.safe_load(next(c.value for c in at.code if c.value.startswith("compute_environment")))
        assert acc["distributed_type"] == "FSDP" and acc["fsdp_config"]["fsdp_reshard_after_forward"] is True
        at.selectbox(key="launch_sharding").set_value("deepspeed").run()
        assert _metric(at, "Setup") == "deepspeed-zero3"
        assert any("alignplan[deepspeed]" in c.value for c in at.caption)  # not installed: says how
        spec = yaml.safe_load(next(c.value for c in at.code if c.value.startswith("method: dpo")))
        assert (spec["sharding"], spec["zero_stage"]) == ("deepspeed", 3)


def test_a_tight_reference_is_precomputed_and_the_page_says_so(app, monkeypatch):
    with _hub_model_form(app, monkeypatch, "H100-80GB") as at:
        # pure bf16: DPO on Llama-3.1-8B is 82.5 GiB, 66.8 GiB with the reference precomputed (with the default
        # bf16-kahan, 98.2 GiB, which precomputing does not bring under 79.7 GiB)
        at.selectbox(key="launch_precision").set_value("bf16").run()
        assert not at.exception and not _errors(at), _errors(at)  # the Launch refusal is test_app_launch_gate.py's
        assert not any("will not fit" in w.value for w in at.warning)
        assert any("precompute_ref_log_probs set to true" in c.value for c in at.caption)
        spec = yaml.safe_load(next(c.value for c in at.code if c.value.startswith("method: dpo")))
        assert spec["hparams"]["precompute_ref_log_probs"] is True  # what Launch will write


def test_every_recipe_method_gets_a_valid_demo_form(app):
    """Every recipe is on the form (except the judge-labelling stage, which runs inside the RLAIF/CAI
    pipelines), then the pipelines; each recipe's demo form is a valid run, with a reward where it needs one."""
    from runners.rundir.spec import JUDGE_METHODS, RECIPE_METHODS, REWARD_METHODS

    at = _launch_page(app)
    single = [m for m in RECIPE_METHODS if m not in JUDGE_METHODS]
    options = list(at.selectbox(key="launch_method").options)
    assert options[:-3] == single
    assert options[-3:] == ["rlhf (pipeline: sft → rm → ppo)", "rlaif (pipeline: generate → judge → dpo)",
                            "cai (pipeline: critique/revise → sft → generate → judge → dpo)"]
    assert "ppo" in single
    for method in single:
        at.selectbox(key="launch_method").set_value(method).run()
        assert not at.exception, (method, at.exception)
        assert not at.error, (method, [e.value for e in at.error])
        spec = yaml.safe_load(next(c.value for c in at.code if c.value.startswith(f"method: {method}")))
        assert spec["dataset"]["path"].endswith(".jsonl") and spec["max_steps"] == tiny.DEMO_MAX_STEPS
        if method in REWARD_METHODS:
            assert spec["reward"]["function"] == "builtin:marker"  # the demo's reward, checked on the data
        assert not at.button(key="launch_go").disabled


def test_advice_without_a_recipe_says_so(app):
    """Every advisor outcome has a runnable preset today (a recipe, or RLHF's pipeline); advice for a method
    the runners cannot train (here a made-up one) still says so and lists what they can."""
    import advisor
    from runners.pipelines.definitions import PIPELINE_METHODS
    from runners.rundir.spec import RECIPE_METHODS

    fw = advisor.framework()
    assert all(o["preset"]["method"] in (*RECIPE_METHODS, *PIPELINE_METHODS) for o in fw.outcomes.values())
    at = app.run()
    at.session_state["launch_prefill"] = {"from": "Some new method", "method": "new-method", "model": None,
                                          "hparams": {}, "note": "runners has no recipe for it yet"}
    at.switch_page("pages/launch.py").run()
    assert not at.exception
    banner = next(i.value for i in at.info if "Some new method" in i.value)
    assert "no runnable recipe" in banner and "dpo" in banner and "rlhf" in banner
