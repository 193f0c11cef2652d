"""The Plan page, driven through streamlit's AppTest."""

from __future__ import annotations

import planner


def _metric(at, label_start):
    return next(m for m in at.metric if m.label.startswith(label_start))


def _gib(text):
    return float(text.split()[0].replace(",", ""))


def test_plan_page_renders_and_matches_the_planner(app):
    at = app.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    # The sidebar defaults: Llama-3.1-8B on one H100; the page compares DPO and PPO.
    req = planner.PlanRequest(model="meta-llama/Llama-3.1-8B", method="dpo", seq_len=2048, batch_size=1,
                              gpu="H100-80GB", gpus=1)
    expected = planner.estimate(req).peak_bytes_per_gpu / 2**30
    assert _gib(_metric(at, "dpo").value) == round(expected, 1)
    assert _metric(at, "ppo")
    assert at.query_params == {} or "methods" not in at.query_params  # defaults leave the link clean


def test_changing_model_or_method_changes_the_plan(app):
    at = app.run()
    before = _gib(_metric(at, "dpo").value)
    at.sidebar.selectbox(key="model").set_value("Qwen/Qwen2.5-0.5B").run()
    assert not at.exception
    small = _gib(_metric(at, "dpo").value)
    assert small < before
    at.multiselect(key="plan_methods").set_value(["orpo", "grpo"]).run()
    labels = [m.label for m in at.metric]
    assert any(lb.startswith("orpo") for lb in labels) and not any(lb.startswith("dpo") for lb in labels)
    # The link now carries the choices.
    assert at.query_params["methods"] in (["orpo,grpo"], "orpo,grpo")
    assert "Qwen" in str(at.query_params["model"])


def test_shared_link_fills_the_inputs(app):
    app.query_params.update({"model": "Qwen/Qwen2.5-7B", "methods": "sft", "seq": "4096", "zero": "bogus"})
    at = app.run()
    assert not at.exception
    assert at.sidebar.selectbox(key="model").value == "Qwen/Qwen2.5-7B"
    assert at.multiselect(key="plan_methods").value == ["sft"]
    assert at.number_input(key="plan_seq").value == 4096
    assert any("zero" in w.value for w in at.warning)  # the bad parameter is reported, not fatal


def test_bad_setup_shows_the_planner_message_not_a_traceback(app):
    at = app.run()
    at.selectbox(key="plan_offload").set_value("params").run()  # needs sharding stage 3
    assert not at.exception
    assert any("offload" in e.value for e in at.error)


def test_uploaded_config_json_is_planned(app):
    import json
    from pathlib import Path

    cfg = Path(__file__).resolve().parents[2] / "planner" / "catalogue" / "HuggingFaceTB--SmolLM2-135M.json"
    data = json.loads(cfg.read_text())
    data = data.get("config", data)  # catalogue files may wrap the config with its source
    at = app.run()
    big = _gib(_metric(at, "dpo").value)
    at.file_uploader(key="plan_upload").set_value(("config.json", json.dumps(data).encode(), "application/json")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    small = _gib(_metric(at, "dpo").value)
    assert small < big / 10
    # A file that is not JSON is refused with what to upload instead.
    at.file_uploader(key="plan_upload").set_value(("config.json", b"not json", "application/json")).run()
    assert not at.exception and "not a valid JSON file" in at.error[0].value


def test_gib_display():
    from alignplan import formatting

    assert formatting.gib(None) == "–" and formatting.gib(2**29) == "0.50 GiB" and formatting.gib(80 * 2**30) == "80.0 GiB"


def test_an_unknown_hub_id_says_what_to_do(app):
    app.query_params["model"] = "someorg/unknown-model"  # as typed into the selectbox, or from a link
    at = app.run()
    assert not at.exception
    assert at.sidebar.selectbox(key="model").value == "someorg/unknown-model"
    message = at.error[0].value
    assert "someorg/unknown-model" in message and "config.json" in message  # names the model and the way out
    assert not at.metric or all(not m.label.endswith("peak per GPU") for m in at.metric)
