"""The Advise page: questions one at a time, back/restart, the recommendation and the hand-over."""

from __future__ import annotations

import advisor


def _advise(app):
    at = app.run()
    return at.switch_page("pages/advise.py").run()


def _answer(at, value):
    """Answer the current question through its widget, then press Next."""
    step = advisor.step(at.session_state["advise_answers"])
    key = f"advise_q_{step.question.key}"
    widget = at.get_by_key(key) if hasattr(at, "get_by_key") else None
    widget = widget or next(w for kind in ("radio", "number_input", "selectbox", "text_input")
                            for w in getattr(at, kind) if w.key == key)
    widget.set_value(value)
    at.button(key="advise_next").click().run()
    assert not at.exception, at.exception
    return step.question.key


def test_advise_renders_first_question_with_progress(app):
    at = _advise(app)
    assert not at.exception and not at.error
    first = advisor.step({}).question
    assert at.subheader[0].value == first.text
    assert "Question 1 of" in at.get("progress")[0].proto.text


def test_answering_the_questions_recommends_dpo_and_shows_the_tree(app):
    at = _advise(app)
    script = {"reward_signal": "pairwise", "task": "style", "annotators": "human", "pairs": 6000,
              "failure_mode": "none", "model": "Qwen/Qwen2.5-0.5B", "gpu": "A10G-24GB", "gpus": 1}
    asked = []
    for _ in range(20):
        step = advisor.step(at.session_state["advise_answers"])
        if step.done:
            break
        asked.append(_answer(at, script[step.question.key]))
    assert asked[:3] == ["reward_signal", "task", "annotators"]
    expected = advisor.advise(at.session_state["advise_answers"])
    assert expected.method == "dpo"
    headers = [s.value for s in at.subheader]
    assert f"Recommended: {expected.name}" in headers
    # The memory table names the model's peak for the chosen GPU.
    mem = next(d.value for d in at.dataframe if "peak per GPU (GiB)" in d.value.columns)
    assert list(mem["method"])[0] == "dpo"
    assert float(mem["peak per GPU (GiB)"].iloc[0]) == expected.memory["methods"][0]["peak_gib"]
    # The tree is drawn with the path highlighted.
    chart = at.get("plotly_chart")[0]
    assert "path" in chart.proto.spec
    # Carry the choice to Plan.
    at.button(key="advise_to_plan").click().run()
    assert not at.exception
    assert at.session_state["plan_methods"][0] == "dpo"
    assert at.session_state["model"] == "Qwen/Qwen2.5-0.5B"
    assert any(m.label.startswith("dpo") for m in at.metric)  # we are on Plan now


def test_back_and_restart(app):
    at = _advise(app)
    _answer(at, "pairwise")
    assert at.session_state["advise_answers"] == {"reward_signal": "pairwise"}
    at.button(key="advise_back").click().run()
    assert at.session_state["advise_answers"] == {}
    _answer(at, "verifiable")
    at.button(key="advise_restart").click().run()
    assert at.session_state["advise_answers"] == {}
    assert at.subheader[0].value == advisor.step({}).question.text


def _finish(at, script):
    for _ in range(20):
        step = advisor.step(at.session_state["advise_answers"])
        if step.done:
            return at
        _answer(at, script[step.question.key])
    raise AssertionError("the questionnaire did not end")


def test_plan_and_advise_agree_on_the_same_inputs(app):
    """The advice's memory check and the Plan page it hands over to show the same peak: one set of
    defaults (the runner's 1024 / 8), and "Plan it" carries every input the advice planned with."""
    import planner

    at = _advise(app)
    script = {"reward_signal": "pairwise", "task": "style", "annotators": "human", "pairs": 6000,
              "failure_mode": "none", "model": "meta-llama/Llama-3.1-8B", "gpu": "H100-80GB", "gpus": 1}
    at = _finish(at, script)
    rec = advisor.advise(at.session_state["advise_answers"])
    mem = rec.memory
    assert (mem["setup"]["seq_len"], mem["setup"]["batch_size"]) == (1024, 8)
    advised = {e["method"]: e["peak_bytes_per_gpu"] for e in mem["methods"]}
    # DPO, 98.2 GiB on one H100-80GB: does not fit, and no fix is "the same GPU under another name"
    assert advised["dpo"] == planner.estimate(planner.PlanRequest(
        model="meta-llama/Llama-3.1-8B", method="dpo", gpu="H100-80GB")).peak_bytes_per_gpu
    assert any("1 × H100-80GB (79.6 GiB)" in m.value for m in at.markdown)  # the verdict's figure
    warning = next(w.value for w in at.warning if "does not fit" in w.value)
    assert "A100-80GB" not in warning and "ZeRO-3" in warning
    at.button(key="advise_to_plan").click().run()
    assert not at.exception
    for method, peak in advised.items():
        metric = next(m for m in at.metric if m.label == f"{method} peak per GPU")
        assert metric.value == f"{peak / 2**30:,.1f} GiB"
    assert at.number_input(key="plan_seq").value == 1024 and at.number_input(key="plan_batch").value == 8
    assert at.selectbox(key="plan_precision").value == mem["setup"]["precision"]


GRPO = {"reward_signal": "verifiable", "task": "code_math", "model": None}
PPO_EPISODE = {"reward_signal": "episode", "task": "multi_turn", "model": None}


def _advise_page(app, answers):
    at = app.run()
    at = at.switch_page("pages/advise.py").run()
    at.session_state["advise_answers"] = dict(answers)
    return at.run()


def test_the_advise_page_shows_grpo_and_ppo_data_guidance_and_numbers_ppos_steps(app):
    for answers in (GRPO, PPO_EPISODE):
        assert advisor.step(answers).done
        rec = advisor.advise(answers)
        at = _advise_page(app, answers)
        assert not at.exception
        texts = [m.value for m in at.markdown]
        assert any(t.startswith("**Data**") for t in texts), texts
        assert any(rec.data_guidance["notes"][0] in c.value for c in at.caption)
        steps = next(t for t in texts if t.startswith("**Next steps**"))
        lines = steps.splitlines()[1:]
        assert lines == [f"{i}. {s}" for i, s in enumerate(rec.next_steps, 1)] and all(s.strip() for s in rec.next_steps)
