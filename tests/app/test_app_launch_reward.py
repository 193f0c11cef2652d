"""The Launch page's reward control for ppo/grpo/rloo: a built-in with its parameter fields, a Python
file, a reward model; the reward is called on two demo prompts before Launch is enabled."""

from __future__ import annotations

import yaml


def _online_form(app, method="grpo"):
    at = app.run()
    at = at.switch_page("pages/launch.py").run()
    at.selectbox(key="launch_method").set_value(method).run()
    return at


def _spec(at, method="grpo"):
    return yaml.safe_load(next(c.value for c in at.code if c.value.startswith(f"method: {method}")))


def test_the_demo_reward_is_a_builtin_that_passes_the_check(app):
    at = _online_form(app)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.radio(key="launch_reward_grpo_source").value == "Built-in"
    assert _spec(at)["reward"] == {"model": None, "function": "builtin:marker", "params": {}}
    assert any("called on the first 2 prompts" in c.value for c in at.caption)
    assert not at.button(key="launch_go").disabled


def test_a_builtin_the_data_cannot_serve_disables_launch_with_one_line(app):
    at = _online_form(app)
    at.selectbox(key="launch_reward_grpo_builtin").set_value("exact_match").run()
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert "reward.function: builtin:exact_match needs the data column 'answer'" in error
    assert at.button(key="launch_go_disabled").disabled
    # regex: its pattern field goes into reward.params
    at.selectbox(key="launch_reward_grpo_builtin").set_value("regex").run()
    at.text_input(key="launch_reward_grpo_regex_pattern").set_value(r"^\s*Sure").run()
    assert not at.error, [e.value for e in at.error]
    assert _spec(at)["reward"]["params"] == {"pattern": r"^\s*Sure", "full": False, "ignore_case": False}


def test_a_python_file_reward_by_path(app, tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text("def helper(x):\n    return x\n\n"
                    "def score(completions, **kw):\n    return [float(len(str(c)) > 3) for c in completions]\n")
    at = _online_form(app, "ppo")
    at.radio(key="launch_reward_ppo_source").set_value("Python file").run()
    at.text_input(key="launch_reward_ppo_path").set_value(str(path)).run()
    at.selectbox(key="launch_reward_ppo_function").set_value("score").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert _spec(at, "ppo")["reward"]["function"] == f"{path}:score"
    assert any(f"{path}:score" in c.value and "called on the first 2" in c.value for c in at.caption)
    path.write_text("def score(completions, **kw):\n    return 'good'\n")  # edited: checked again
    at.text_input(key="launch_reward_ppo_params").set_value("{}").run()
    assert any("reward.function:" in e.value and "returned str" in e.value for e in at.error)


def test_a_missing_reward_model_is_refused(app, tmp_path):
    at = _online_form(app, "rloo")
    at.radio(key="launch_reward_rloo_source").set_value("Reward model").run()
    at.text_input(key="launch_reward_rloo_model").set_value(str(tmp_path / "no-rm")).run()
    assert any("reward.model:" in e.value and "directory not found" in e.value for e in at.error)


def test_the_advisors_grpo_preset_prefills_a_working_builtin(app):
    import advisor

    preset = advisor.advise({"reward_signal": "verifiable"}).preset
    at = app.run()
    at.session_state["launch_prefill"] = {"from": "GRPO", "method": "grpo", "model": None,
                                          "hparams": preset["hparams"], "reward": preset["reward"]}
    at.switch_page("pages/launch.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert _spec(at)["reward"]["function"] == preset["reward"]["function"]
    assert not at.button(key="launch_go").disabled
