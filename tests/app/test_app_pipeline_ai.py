"""The Launch page's RLAIF and CAI pipeline forms: the judge choice (rule, local model, reward model, endpoint
with the NAME of its key's variable), cai's constitution, review, a plan row per stage, and the advice's
"Launch it" opening them."""

from __future__ import annotations

import pytest
import yaml

import advisor
from alignplan import pipeline_form
from runners.demo import tiny


def _launch(app, method):
    at = app.run()
    at.switch_page("pages/launch.py").run()
    return at.selectbox(key="launch_method").set_value(method).run()


def _plan_table(at):
    return next(df.value for df in at.dataframe if "predicted peak" in df.value.columns)


def _spec(at, method):
    return yaml.safe_load(next(c.value for c in at.code if c.value.startswith(f"method: {method}")))


def test_the_method_list_offers_rlaif_and_cai_as_pipelines(app):
    at = app.run()
    at.switch_page("pages/launch.py").run()
    options = list(at.selectbox(key="launch_method").options)
    assert "rlaif (pipeline: generate → judge → dpo)" in options
    assert "cai (pipeline: critique/revise → sft → generate → judge → dpo)" in options


def test_the_rlaif_form_plans_each_stage_with_the_chosen_judge(app):
    at = _launch(app, "rlaif")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    table = _plan_table(at)
    assert list(table["stage"]) == ["1. generate", "2. label", "3. dpo"]
    assert list(table["method"]) == ["generate", "rlaif-label", "dpo"]
    spec = _spec(at, "rlaif")
    assert spec["stages"]["label"] == {"judge": {"kind": "function",
                                                 "function": "runners.judges.rules:prefer_safe_then_shorter"}}
    assert spec["stages"]["dpo"]["max_steps"] == tiny.DEMO_RLAIF_STAGES["dpo"]["max_steps"]
    assert "max_steps" not in spec["stages"]["label"] and "review" not in spec
    assert spec["data"]["prompts"]["path"].endswith("demo_prompts.jsonl")
    assert not at.button(key="launch_go").disabled
    # review, and an OpenAI-compatible endpoint: the spec names the key's variable, never a key
    at.checkbox(key="launch_pl_rlaif_review").check().run()
    at.radio(key="launch_pl_rlaif_judge_kind").set_value("endpoint").run()
    assert at.button(key="launch_go_disabled").disabled  # URL and model name still missing
    assert any("URL" in e.value for e in at.error)
    at.text_input(key="launch_pl_rlaif_judge_url").set_value("http://localhost:8000/v1")
    at.text_input(key="launch_pl_rlaif_judge_endpoint_model").set_value("judge-7b")
    at.text_input(key="launch_pl_rlaif_judge_key_env").set_value("sk-abc123-secret").run()
    assert any("NAME of the environment variable" in e.value for e in at.error)
    at.text_input(key="launch_pl_rlaif_judge_key_env").set_value("MY_JUDGE_KEY").run()
    assert not at.error, [e.value for e in at.error]
    spec = _spec(at, "rlaif")
    assert spec["review"] is True
    assert spec["stages"]["label"]["judge"] == {"kind": "endpoint", "base_url": "http://localhost:8000/v1",
                                                "endpoint_model": "judge-7b", "api_key_env": "MY_JUDGE_KEY"}
    assert len(_plan_table(at)) == 3


def test_the_cai_form_lists_the_constitution_and_plans_five_stages(app, tmp_path):
    from runners.judges.constitution import load_constitution

    at = _launch(app, "cai")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    principles = next(df.value for df in at.dataframe if "principle" in df.value.columns)
    assert list(principles["principle"]) == load_constitution().names
    table = _plan_table(at)
    assert list(table["stage"]) == ["1. critique", "2. sft", "3. generate", "4. label", "5. dpo"]
    spec = _spec(at, "cai")
    assert "constitution" not in spec["stages"]["critique"]  # the bundled one: the pipeline's default
    # a constitution file of the user's: its principles shown, and the critique and label stages get it
    own = tmp_path / "mine.yaml"
    own.write_text(yaml.safe_dump({"name": "mine", "principles": [
        {"name": "kind", "critique": "Is the answer unkind?", "revision": "Rewrite it kindly."}]}))
    at.text_input(key="launch_pl_cai_const_path").set_value(str(own)).run()
    assert not at.error, [e.value for e in at.error]
    principles = next(df.value for df in at.dataframe if "principle" in df.value.columns)
    assert list(principles["principle"]) == ["kind"]
    spec = _spec(at, "cai")
    assert spec["stages"]["critique"]["constitution"] == str(own)
    assert spec["stages"]["label"]["constitution"] == str(own)
    # CAI's default judge: the base model (no judge in the spec, the stage's defaults apply)
    at.radio(key="launch_pl_cai_judge_kind").set_value("default").run()
    assert "judge" not in _spec(at, "cai")["stages"].get("label", {})
    at.text_input(key="launch_pl_cai_const_path").set_value(str(tmp_path / "missing.yaml")).run()
    assert at.error and at.button(key="launch_go_disabled").disabled


@pytest.mark.parametrize("answers,method", [
    ({"reward_signal": "pairwise", "task": "factual", "annotators": "none"}, "rlaif"),
    ({"reward_signal": "none", "task": "safety", "annotators": "none", "principles": True}, "cai"),
])
def test_the_advice_for_rlaif_and_cai_opens_their_pipeline_forms(app, answers, method):
    rec = advisor.advise(answers)
    at = app.run()
    at.session_state["launch_prefill"] = {"from": rec.name, "method": rec.preset["method"], "model": None,
                                          "hparams": rec.preset["hparams"], "reward": None, "note": rec.preset["note"],
                                          "stage": rec.preset.get("stage")}
    at.switch_page("pages/launch.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="launch_method").value == method  # the pipeline, never plain DPO under its name
    assert any(f"Prefilled from the advice: **{rec.name}**" in i.value for i in at.info)
    spec = _spec(at, method)
    assert spec["stages"]["dpo"]["hparams"]["beta"] == pytest.approx(0.1)
    # the tiny model keeps the demo's step size
    assert spec["stages"]["dpo"]["hparams"]["learning_rate"] == tiny.DEMO_RLAIF_STAGES["dpo"]["hparams"]["learning_rate"]


def test_judge_spec_and_rule_judges():
    assert "runners.judges.rules:prefer_safe_then_shorter" in pipeline_form.rule_judges()
    assert pipeline_form.judge_spec("local", model="m") == {"kind": "local", "model": "m"}
    with pytest.raises(ValueError, match="NAME"):
        pipeline_form.judge_spec("endpoint", base_url="u", endpoint_model="m", api_key_env="sk-live key")
    with pytest.raises(ValueError, match="hub id"):
        pipeline_form.judge_spec("reward-model")
