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
    # The sidebar defaults: Llama-3.1-8B on one H100; the page compares DPO and PPO at the runner's
    # sequence length and micro-batch (1024 / 8), the PlanRequest defaults.
    req = planner.PlanRequest(model="meta-llama/Llama-3.1-8B", method="dpo", gpu="H100-80GB", gpus=1)
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


def test_one_set_of_defaults_the_runners():
    """Plan's sequence length and micro-batch are the runner's, which PlanRequest (the CLI, the advisor) uses too."""
    import dataclasses

    from alignplan import inputs
    from runners.rundir.decide import DEFAULT_BATCH_SIZE, DEFAULT_MAX_LENGTH

    fields = {f.name: f.default for f in dataclasses.fields(planner.PlanRequest)}
    assert (inputs.PLAN_DEFAULTS["seq"], inputs.PLAN_DEFAULTS["batch"]) == (DEFAULT_MAX_LENGTH, DEFAULT_BATCH_SIZE)
    assert (fields["seq_len"], fields["batch_size"]) == (DEFAULT_MAX_LENGTH, DEFAULT_BATCH_SIZE) == (1024, 8)


def test_a_gpus_label_is_the_figure_its_verdict_uses(app):
    """Sidebar, chart line, Fits-on table and metric help all show the usable memory the verdict compares
    against, with one decimal: H100-80GB is 79.6 GiB (81559 MiB), not "80 GiB"."""
    at = app.run()
    assert not at.exception
    box = at.sidebar.selectbox(key="gpu")
    plan = planner.estimate(planner.PlanRequest(model="meta-llama/Llama-3.1-8B", gpu="H100-80GB"), with_min_gpus=False)
    assert plan.gpu_memory_bytes == planner.GPUS["H100-80GB"].usable_bytes == 81559 * 2**20
    figure = f"{plan.gpu_memory_bytes / 2**30:.1f} GiB"
    assert figure == "79.6 GiB"
    for label in box.options:
        gpu_id = label.split(" (")[0]
        usable = planner.GPUS[gpu_id].usable_bytes
        assert label == f"{gpu_id} ({usable / 2**30:.1f} GiB)"
    assert "H100-80GB (79.6 GiB)" in box.options and "A100-80GB (80.0 GiB)" in box.options
    assert "H100-80GB: 79.6 GiB usable" in at.get("plotly_chart")[0].proto.spec
    fits = next(d.value for d in at.dataframe if "usable memory" in d.value.columns)
    assert fits.set_index("GPU").loc["H100-80GB", "usable memory"] == "79.6 GiB"
    assert "H100-80GB (79.6 GiB)" in _metric(at, "dpo").help


def test_fits_on_names_the_sharding_each_count_needs(app):
    at = app.run()
    fits = next(d.value for d in at.dataframe if "usable memory" in d.value.columns).set_index("GPU")
    # one type per column (text), so Streamlit's Arrow conversion has nothing to complain about
    assert all(isinstance(v, str) for col in fits.columns for v in fits[col])
    req = planner.PlanRequest(model="meta-llama/Llama-3.1-8B", gpu="H100-80GB")
    for method in ("dpo", "ppo"):
        plan = planner.estimate(req.replace(method=method))
        for gid in ("H100-80GB", "H200-141GB", "A10G-24GB"):
            d = plan.min_gpus_detail[gid]
            cell = fits.loc[gid, method]
            assert cell.startswith(f"{d['count']} (")
            assert ("no sharding" in cell) == (d["zero"] == 0) and (f"ZeRO-{d['zero']}" in cell) == (d["zero"] > 0)
    # DPO 98.2 GiB on one H100: 2 GPUs with ZeRO-3 (2 without sharding would still hold 98.2 each)
    assert fits.loc["H100-80GB", "dpo"] == "2 (ZeRO-3)"
    assert planner.estimate(req.replace(gpus=2), with_min_gpus=False).fits is False
    # our runner trains PPO unsharded: its sharded counts are for the export
    assert fits.loc["H100-80GB", "ppo"] == "4 (ZeRO-3, export only)"


def test_long_sequence_and_bf16_without_bf16_are_warned(app):
    at = app.run()
    assert not any("context" in w.value for w in at.warning)
    at.sidebar.selectbox(key="model").set_value("Qwen/Qwen2.5-0.5B").run()
    context = planner.load_model("Qwen/Qwen2.5-0.5B").max_position_embeddings
    at.number_input(key="plan_seq").set_value(context + 1).run()
    assert any(f"model's context of {context:,} tokens" in w.value for w in at.warning)
    at.number_input(key="plan_seq").set_value(1024).run()
    at.sidebar.selectbox(key="gpu").set_value("T4-16GB").run()
    assert any("T4-16GB has no bf16" in w.value for w in at.warning)
    at.selectbox(key="plan_precision").set_value("fp32").run()
    assert not any("bf16" in w.value for w in at.warning)


def test_an_unknown_gpu_in_a_link_is_reported_not_replaced(app):
    app.query_params.update({"gpu": "Z80-1GB"})
    at = app.run()
    assert not at.exception
    assert any("gpu='Z80-1GB' ignored" in w.value and "kept H100-80GB" in w.value for w in at.sidebar.warning)
    assert at.sidebar.selectbox(key="gpu").value == "H100-80GB"
    # on any page the link opens (the sidebar is every page's)
    app2 = type(app).from_file(app._script_path, default_timeout=60)
    app2.query_params.update({"gpu": "Z80"})
    at2 = app2.switch_page("pages/advise.py").run()
    assert not at2.exception and at2.title[0].value == "Choose the method"
    assert at2.sidebar.selectbox(key="gpu").value == "H100-80GB"
    assert any("gpu='Z80' ignored" in w.value for w in at2.sidebar.warning)


def test_every_planner_lever_is_a_control_and_travels_in_the_link(app):
    at = app.run()
    dpo_before = _gib(_metric(at, "dpo").value)
    at.checkbox(key="plan_preref").check().run()
    assert _gib(_metric(at, "dpo").value) < dpo_before  # no reference copy while training
    ppo_before = _gib(_metric(at, "ppo").value)
    at.selectbox(key="plan_reward").set_value("rule").run()
    at.selectbox(key="plan_value").set_value("Qwen/Qwen2.5-0.5B").run()
    req = planner.PlanRequest(model="meta-llama/Llama-3.1-8B", method="ppo", gpu="H100-80GB",
                              reward_model="rule", value_model="Qwen/Qwen2.5-0.5B")
    assert _gib(_metric(at, "ppo").value) == round(planner.estimate(req, with_min_gpus=False).peak_bytes_per_gpu
                                                    / 2**30, 1) < ppo_before
    at.multiselect(key="plan_methods").set_value(["grpo"]).run()
    at.number_input(key="plan_gens").set_value(16).run()
    at.selectbox(key="plan_loss").set_value("chunked").run()
    req = planner.PlanRequest(model="meta-llama/Llama-3.1-8B", method="grpo", gpu="H100-80GB", num_generations=16,
                              loss="chunked", precompute_ref=True, reward_model="rule",
                              value_model="Qwen/Qwen2.5-0.5B")
    assert _gib(_metric(at, "grpo").value) == round(planner.estimate(req, with_min_gpus=False).peak_bytes_per_gpu
                                                     / 2**30, 1)
    # RLOO's KL term (beta 0.05) keeps a reference copy; beta 0 drops it
    at.multiselect(key="plan_methods").set_value(["rloo"]).run()
    with_kl = _gib(_metric(at, "rloo").value)
    at.number_input(key="plan_beta").set_value(0.0).run()
    assert _gib(_metric(at, "rloo").value) == round(planner.estimate(
        req.replace(method="rloo", beta=0.0), with_min_gpus=False).peak_bytes_per_gpu / 2**30, 1) < with_kl
    params = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert params["gens"] == "16" and params["loss"] == "chunked" and params["preref"] == "1"
    assert params["reward"] == "rule" and params["value"] == "Qwen/Qwen2.5-0.5B" and params["beta"] == "0.0"


def test_request_kwargs_and_plan_values_are_inverses():
    """The Plan inputs -> PlanRequest fields, and back (what "Plan it" carries from the advice)."""
    from alignplan import inputs

    values = {**inputs.PLAN_DEFAULTS, "adapter": "qlora", "rank": 32, "seq": 4096, "batch": 2, "zero": 3,
              "offload": "optimizer", "preref": True, "loss": "chunked", "gens": 16, "reward": "rule",
              "value": "shared", "judge": "Qwen/Qwen2.5-7B", "beta": 0.0}
    kwargs = inputs.request_kwargs(values, "m", "H100-80GB", 8)
    assert (kwargs["lora_rank"], kwargs["quant"], kwargs["seq_len"], kwargs["batch_size"]) == (32, "nf4", 4096, 2)
    assert (kwargs["num_generations"], kwargs["reward_model"], kwargs["value_model"], kwargs["judge_model"]) == \
        (16, "rule", "shared", "Qwen/Qwen2.5-7B")
    assert kwargs["precompute_ref"] and kwargs["loss"] == "chunked" and kwargs["offload"] == "optimizer"
    assert inputs.plan_values({"chunked_loss": True})["loss"] == "fused"  # the planner's alias
    assert kwargs["beta"] == 0.0
    back = inputs.plan_values(kwargs)
    assert {k: back[k] for k in back} == {k: values[k] for k in back}
    int8 = inputs.request_kwargs({**values, "adapter": "qlora8"}, "m", "H100-80GB", 8)
    assert (int8["quant"], int8["lora_rank"]) == ("int8", 32) and inputs.plan_values(int8)["adapter"] == "qlora8"
    defaults = inputs.request_kwargs(inputs.PLAN_DEFAULTS, "m", "H100-80GB", 1)
    assert defaults["num_generations"] is None and defaults["reward_model"] is None and defaults["offload"] is None
    assert defaults["beta"] is None  # the method's own default


def test_link_parameters_of_the_new_controls():
    from alignplan import share_link

    values, problems = share_link.inputs_from_query({"beta": "0.1", "gens": "4", "preref": "1", "loss": "fused",
                                                     "reward": "rule", "judge": "Qwen/Qwen2.5-7B"})
    assert values == {"beta": 0.1, "gens": 4, "preref": True, "loss": "fused", "reward": "rule",
                      "judge": "Qwen/Qwen2.5-7B"} and problems == []
    _, problems = share_link.inputs_from_query({"beta": "nan", "gens": "2000", "adapter": "qlora4", "loss": "liger"})
    assert [p.split(" ignored")[0] for p in problems] == ["link parameter beta='nan'", "link parameter gens='2000'",
                                                          "link parameter adapter='qlora4'", "link parameter loss='liger'"]
    assert "fused, chunked, materialised" in problems[3]
    assert "qlora8" in problems[2]
    assert share_link.query_from_inputs({"beta": None, "gens": 0, "preref": True, "loss": ""}) == {"preref": "1"}


def test_a_model_the_hub_cannot_give_is_answered_in_the_pages_words(app, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    app.query_params["model"] = "someorg/not-a-model"
    at = app.run()
    assert not at.exception
    (error,) = [e.value for e in at.error if "someorg/not-a-model" in e.value]
    assert "upload it on the Plan page" in error and "--model" not in error
