"""The app's plain helpers: query parameters <-> plan inputs, the planner request built from them, uploads,
the Launch form's defaults, the run monitor's metric choice, errors shown on a page."""

from __future__ import annotations

from alignplan import inputs, launch_form, run_monitor, share_link, uploads


def test_query_round_trip_keeps_only_non_defaults():
    values = {**inputs.PLAN_DEFAULTS, "methods": ["dpo", "grpo"], "seq": 4096, "ckpt": False, "zero": 3,
              inputs.MODEL_KEY: "Qwen/Qwen2.5-7B", inputs.GPU_KEY: inputs.DEFAULT_GPU, inputs.GPUS_KEY: 4}
    query = share_link.query_from_inputs(values)
    assert query == {"methods": "dpo,grpo", "seq": "4096", "ckpt": "0", "zero": "3",
                     "model": "Qwen/Qwen2.5-7B", "gpus": "4"}
    back, problems = share_link.inputs_from_query(query, methods={"dpo": 1, "grpo": 1})
    assert problems == []
    assert back == {"methods": ["dpo", "grpo"], "seq": 4096, "ckpt": False, "zero": 3,
                    "model": "Qwen/Qwen2.5-7B", "gpus": 4}


def test_bad_query_values_are_reported_and_dropped():
    back, problems = share_link.inputs_from_query(
        {"seq": "lots", "zero": "5", "methods": "dpo,nope", "gpu": "Z80", "batch": "0", "precision": "fp8",
         "foreign": "x", "rank": "8"},
        methods={"dpo": 1}, gpus={"H100-80GB": 1},
    )
    assert back == {"rank": 8}
    assert share_link.inputs_from_query({"ckpt": "Off"})[0] == {"ckpt": False}
    _, bad_bool = share_link.inputs_from_query({"ckpt": "maybe"})
    assert bad_bool[0].startswith("link parameter ckpt='maybe' ignored: ckpt: expected true or false")
    joined = "\n".join(problems)
    for name in ("seq", "zero", "methods", "gpu", "batch", "precision"):
        assert f"link parameter {name}=" in joined
    assert "nope" in joined and "foreign" not in joined
    # in the page's words, not Python's
    assert "sequence length must be a whole number from 1 to 1048576" in joined and "invalid literal" not in joined
    assert "micro-batch must be a whole number from 1 to 4096, not 0" in joined
    assert "ZeRO stage must be one of 0, 1, 2, 3" in joined
    _, bad_beta = share_link.inputs_from_query({"beta": "high"})
    assert bad_beta == ["link parameter beta='high' ignored: beta must be a number of 0 or more"]


def test_shell_advice_is_put_in_the_pages_words():
    from alignplan.errors import page_words
    from planner.models import CONFIG_FILE_HINT

    text = page_words(f"model: 'org/x' is not in the catalogue and the hub cannot be reached; {CONFIG_FILE_HINT}")
    assert "--model" not in text and "upload it on the Plan page" in text


def test_request_kwargs_maps_adapters_and_offload():
    kw = inputs.request_kwargs({**inputs.PLAN_DEFAULTS, "adapter": "qlora", "rank": 32, "offload": "optimizer"},
                           "m", "A100-80GB", 2)
    assert kw["lora_rank"] == 32 and kw["quant"] == "nf4" and kw["offload"] == "optimizer"
    assert kw["gpu"] == "A100-80GB" and kw["gpus"] == 2
    full = inputs.request_kwargs(inputs.PLAN_DEFAULTS, "m", "H100-80GB", 1)
    assert full["lora_rank"] is None and full["quant"] is None and full["offload"] is None
    assert full["seq_len"] == 1024 and full["batch_size"] == 8 and full["grad_ckpt"] is True  # the runner's


def test_save_upload_is_content_addressed(tmp_path, monkeypatch):
    monkeypatch.setattr(uploads.tempfile, "gettempdir", lambda: str(tmp_path))
    a = uploads.save_upload(b'{"a": 1}', "../../evil.json")
    b = uploads.save_upload(b'{"a": 1}', "../../evil.json")
    c = uploads.save_upload(b'{"a": 2}')
    assert a == b != c and a.name == "evil.json" and tmp_path in a.parents
    assert a.read_bytes() == b'{"a": 1}'


def test_trl_defaults_table_matches_trl(monkeypatch):
    """The Launch form's defaults (kept in alignplan.launch_form so the page opens without importing TRL) are TRL's."""
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    import dataclasses

    from runners.recipes import configs
    from runners.recipes.defaults import method_defaults

    for method, fields in launch_form.TRL_DEFAULTS.items():
        cls, _ = configs.config_for(method)
        defaults = {f.name: f.default for f in dataclasses.fields(cls)} | method_defaults(method)
        for key, value in fields.items():
            assert defaults[key] == value, (method, key, defaults[key], value)


def test_pipeline_form_ppo_fields_are_ppo_configs_defaults():
    import dataclasses

    from alignplan import pipeline_form
    from runners.rl.ppo_config import PPOConfig

    defaults = {f.name: f.default for f in dataclasses.fields(PPOConfig)}
    assert pipeline_form.PPO_FIELDS == {k: defaults[k] for k in pipeline_form.PPO_FIELDS}


def test_form_hparams_layers_defaults_demo_and_preset():
    from runners.demo import tiny

    fields, extras = launch_form.form_hparams("dpo", tiny=False, preset={"beta": 0.3, "loss_type": ["ipo"]})
    assert fields == {**launch_form.TRL_DEFAULTS["dpo"], "beta": 0.3} and extras == {"loss_type": ["ipo"]}
    fields, extras = launch_form.form_hparams("dpo", tiny=True, preset={"beta": 0.3, "learning_rate": 1e-6})
    assert fields["learning_rate"] == tiny.DEMO_HPARAMS["learning_rate"] and fields["beta"] == 0.3
    assert fields["max_length"] == tiny.DEMO_HPARAMS["max_length"]
    assert fields["per_device_train_batch_size"] == tiny.DEMO_HPARAMS["per_device_train_batch_size"]
    assert extras["lr_scheduler_type"] == tiny.DEMO_HPARAMS["lr_scheduler_type"]
    fields, _ = launch_form.form_hparams("grpo", tiny=False)
    assert fields["num_generations"] == 8 and "max_length" not in fields
    fields, _ = launch_form.form_hparams("grpo", tiny=True, preset={"num_generations": 8})
    assert fields["num_generations"] == 4 and fields["max_completion_length"] == 16  # the CPU demo's
    assert fields["per_device_train_batch_size"] % fields["num_generations"] == 0


def test_metric_keys_pick_the_method_metrics():
    dpo = [{"step": 1, "loss": 0.7, "num_tokens": 300, "entropy": 5.0, "rewards/margins": 0.1, "logps/chosen": -3.0,
            "rewards/accuracies": 0.5, "memory_kind": "cpu_rss", "done": True}]
    assert run_monitor.method_metric_keys(dpo) == ["entropy", "rewards/margins", "logps/chosen", "rewards/accuracies"]
    assert run_monitor.key_metric_keys(dpo) == ["rewards/accuracies", "rewards/margins"]
    assert run_monitor.key_metric_keys([{"step": 1, "reward": 1.0, "kl": 0.1, "completions/mean_length": 3}]) == ["reward", "kl"]
    assert run_monitor.key_metric_keys([{"step": 1, "foo": 2.0}]) == ["foo"]


def test_errors_reach_the_page_as_messages_not_tracebacks():
    from streamlit.testing.v1 import AppTest

    def page():
        from alignplan import errors

        def boom():
            raise RuntimeError("kaboom")

        errors.run_page(boom)
        errors.attempt("Reading the count", int, "many")

    at = AppTest.from_function(page).run()
    assert not at.exception
    assert "failed unexpectedly (RuntimeError)" in at.error[0].value
    assert at.expander[0].label == "Error details" and "kaboom" in at.expander[0].code[0].value
    assert at.error[1].value.startswith("Reading the count: invalid literal")  # a ValueError: its message


def test_upload_names_cannot_leave_their_folder(tmp_path, monkeypatch):
    assert uploads.upload_name("../../etc/passwd", "x") == "passwd"
    assert uploads.upload_name("..", "x") == "x" and uploads.upload_name("", "x") == "x"
    assert uploads.upload_name("C:\\Users\\me\\prefs.jsonl", "x") == "prefs.jsonl"
    monkeypatch.setenv("ALIGNPLAN_RUNS_DIR", str(tmp_path / "runs"))
    path = uploads.save_dataset_upload(b'{"prompt": "p"}\n', "..")
    assert path.parent.parent == (tmp_path / "runs" / "uploads").resolve() and path.name == "data.jsonl"


def test_every_choice_the_plan_page_offers_is_accepted_by_the_planner():
    import planner

    for offload in inputs.OFFLOADS:
        for engine in inputs.ENGINES:
            for adapter in inputs.ADAPTERS:
                values = {**inputs.PLAN_DEFAULTS, "offload": offload, "engine": engine, "zero": 3, "adapter": adapter}
                kw = inputs.request_kwargs(values, "Qwen/Qwen2.5-0.5B", "A10G-24GB", 2)
                plan = planner.estimate(planner.PlanRequest(method="dpo", **kw))
                assert plan.peak_bytes_per_gpu > 0
    for precision in inputs.PRECISIONS:
        for optimizer in inputs.OPTIMIZERS:
            kw = inputs.request_kwargs({**inputs.PLAN_DEFAULTS, "precision": precision, "optimizer": optimizer},
                                   "Qwen/Qwen2.5-0.5B", "A10G-24GB", 1)
            assert planner.estimate(planner.PlanRequest(method="sft", **kw)).peak_bytes_per_gpu > 0
