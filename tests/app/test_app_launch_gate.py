"""Launch refuses a run that is expected to fail (no fit, a model this machine cannot load) unless the
user ticks the labelled override; the reasons speak to the page's fields."""

from __future__ import annotations

import contextlib

from alignplan import launch_gate


@contextlib.contextmanager
def _hub_model_form(app, monkeypatch, fake_gpus: str, model: str, hub: bool):
    from alignplan import launch_form

    monkeypatch.setenv("ALIGNPLAN_FAKE_GPUS", fake_gpus)
    monkeypatch.setattr(launch_gate, "hub_reachable", lambda: hub)
    launch_form.devices_found.clear()
    try:
        at = app.run().switch_page("pages/launch.py").run()
        at.radio(key="launch_model_source").set_value("Hub id or local model directory").run()
        at.text_input(key="launch_model").set_value(model).run()
        yield at
    finally:
        launch_form.devices_found.clear()


def _keys(at):
    return {b.key for b in at.button}


def test_a_plan_that_does_not_fit_disables_launch_until_the_labelled_override(app, monkeypatch):
    with _hub_model_form(app, monkeypatch, "T4-16GB", "meta-llama/Llama-3.1-8B", hub=True) as at:
        assert not at.exception, at.exception
        assert any("will not fit" in w.value for w in at.warning)
        refusal = next(e.value for e in at.error if "Launch is off" in e.value)
        assert "does not fit in memory" in refusal and "GiB needed" in refusal
        assert "launch_go" not in _keys(at) and at.button(key="launch_go_disabled").disabled
        override = at.checkbox(key="launch_override")
        assert override.label == launch_gate.OVERRIDE_LABEL and override.value is False
        override.check().run()
        assert not at.exception
        assert "launch_go_disabled" not in _keys(at) and not at.button(key="launch_go").disabled


def test_a_hub_model_that_cannot_be_loaded_here_disables_launch(app, monkeypatch):
    with _hub_model_form(app, monkeypatch, "H100-80GB,H100-80GB,H100-80GB,H100-80GB,H100-80GB,H100-80GB,"
                         "H100-80GB,H100-80GB", "meta-llama/Llama-3.1-8B", hub=False) as at:
        assert not at.exception, at.exception
        refusal = next(e.value for e in at.error if "Launch is off" in e.value)
        assert "hub cannot be reached" in refusal and "Llama-3.1-8B" in refusal
        assert "--model" not in refusal  # the page's field, not the command line's flag
        assert at.button(key="launch_go_disabled").disabled


def test_the_demo_run_is_not_blocked(app, runs_dir):
    at = app.run().switch_page("pages/launch.py").run()
    assert not at.exception
    assert not any("Launch is off" in e.value for e in at.error)
    assert not at.button(key="launch_go").disabled


def test_blockers_name_each_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(launch_gate, "hub_reachable", lambda: False)
    folder = tmp_path / "m"
    folder.mkdir()
    assert "no config.json" in launch_gate.blockers(True, str(folder))[0]
    (folder / "config.json").write_text("{}")
    assert "no tokenizer files" in launch_gate.blockers(True, str(folder))[0]
    (folder / "tokenizer.json").write_text("{}")
    assert launch_gate.blockers(True, str(folder)) == []
    both = launch_gate.blockers(False, "org/not-cached-model", "163.9 GiB", "21.0 GiB")
    assert len(both) == 2 and "163.9 GiB needed, 21.0 GiB available" in both[0] and "org/not-cached-model" in both[1]
    assert "does not exist" in launch_gate.blockers(None, str(tmp_path / "missing"))[0]


def _prefilled(app, monkeypatch, hub: bool):
    monkeypatch.setattr(launch_gate, "hub_reachable", lambda: hub)
    at = app.run()
    at.session_state["launch_prefill"] = {"from": "DPO", "method": "dpo", "model": "meta-llama/Llama-3.1-8B",
                                          "hparams": {"beta": 0.1}}
    return at.switch_page("pages/launch.py").run()


def test_the_advice_offers_the_local_model_first_when_its_hub_model_cannot_load(app, runs_dir, monkeypatch):
    at = _prefilled(app, monkeypatch, hub=False)
    assert not at.exception
    assert at.radio(key="launch_model_source").value == "Tiny demo model"
    banner = next(i.value for i in at.info if "Prefilled from the advice" in i.value)
    assert "tiny demo model is selected" in banner and "Llama-3.1-8B" in banner
    assert not at.button(key="launch_go").disabled  # the local choice runs
    at.radio(key="launch_model_source").set_value("Hub id or local model directory").run()
    assert at.text_input(key="launch_model").value == "meta-llama/Llama-3.1-8B"  # a click away


def test_the_advice_keeps_its_hub_model_when_the_hub_answers(app, runs_dir, monkeypatch):
    at = _prefilled(app, monkeypatch, hub=True)
    assert not at.exception
    assert at.radio(key="launch_model_source").value == "Hub id or local model directory"
    assert at.text_input(key="launch_model").value == "meta-llama/Llama-3.1-8B"


def test_a_pipeline_that_does_not_fit_is_refused_too(app, monkeypatch):
    with _hub_model_form(app, monkeypatch, "T4-16GB", "meta-llama/Llama-3.1-8B", hub=True) as at:
        at.selectbox(key="launch_method").set_value("rlhf").run()
        assert not at.exception, at.exception
        refusal = next(e.value for e in at.error if "Launch is off" in e.value)
        assert "does not fit in memory" in refusal
        assert at.button(key="launch_go_disabled").disabled and "launch_go" not in _keys(at)
        at.checkbox(key="launch_override").check().run()
        assert not at.button(key="launch_go").disabled
