"""The Try it page over a finished tiny LoRA DPO run: it is listed (and linked from the Runs page), a
question gets the trained model's answer, the compare view answers the held-out prompts with both models,
and Merge and export writes a standalone model."""

from __future__ import annotations

import json

import pytest

from tests.runners.tryit_helpers import trained_run


@pytest.fixture
def finished(runs_dir, tiny_model_dir, demo_data):
    import torch

    torch.set_num_threads(1)
    return trained_run(runs_dir, tiny_model_dir, demo_data["preference"], name="try-dpo", lora={"r": 4, "alpha": 8})


def _try_page(app):
    return app.run().switch_page("pages/try.py").run()


def _tried(finished):
    from runners import tryit

    return tryit.load(finished.path)


def test_try_page_chats_compares_and_exports(app, finished, tmp_path):
    at = _try_page(app)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.selectbox(key="try_run").options == [f"{finished.id} (dpo)"]
    at.number_input(key="try_max_new_tokens").set_value(8).run()

    # chat: the answer is the trained model's greedy answer to the question, through the chat template
    at.chat_input(key="try_chat_input").set_value("How do I read a map?").run()
    assert not at.exception, at.exception
    from runners import tryit

    tried = _tried(finished)
    question = tryit.as_user_prompt("How do I read a map?", tried.tokenizer)
    expected = tryit.generate(tried.trained, tried.tokenizer, [question], 8)[0]
    said = [m.markdown[0].value for m in at.chat_message]
    assert said[0] == "How do I read a map?" and expected.strip()
    assert said[1].strip() == expected.strip()
    assert [m.name for m in at.chat_message] == ["user", "assistant"]

    # compare: one row per held-out prompt, trained and reference answers side by side
    at.number_input(key="try_k").set_value(3).run()
    at.button(key="try_compare").click().run()
    assert not at.exception, at.exception
    assert len(at.dataframe) == 1
    table = at.dataframe[0].value
    assert list(table.columns) == ["prompt", "trained", "reference"]
    prompts, source = tryit.held_out_prompts(finished.path, 3)
    assert source == "held-out split" and list(table["prompt"]) == prompts
    rows = tryit.answer(tried, prompts, compare=True, max_new_tokens=8)
    assert list(table["trained"]) == [r["trained"] for r in rows]
    assert list(table["reference"]) == [r["reference"] for r in rows]
    assert any(t != r for t, r in zip(table["trained"], table["reference"], strict=True))

    # export
    out = tmp_path / "exported"
    at.text_input(key="try_export_dir").set_value(str(out)).run()
    at.button(key="try_export").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(str(out) in s.value for s in at.success)
    assert json.loads((out / "ALIGNPLAN_EXPORT.json").read_text())["source_run"] == finished.id

    # a second export to the same directory is refused on the page, in words
    at.button(key="try_export").click().run()
    assert not at.exception and any("not an empty directory" in e.value for e in at.error)


def test_runs_page_links_a_finished_run_to_try_it(app, finished):
    at = app.run().switch_page("pages/runs.py").run()
    assert not at.exception
    links = [e.proto for e in at.main.get("page_link")]
    assert [(link.label, link.query_string) for link in links if "try" in link.page] == [("Try it", f"run={finished.id}")]


def test_without_a_finished_run_the_page_says_so(app, runs_dir, demo_data):
    from runners.launch.launch import prepare_and_register
    from runners.rundir.devices import discover
    from runners.rundir.spec import RunSpec

    spec = RunSpec.parse({"method": "dpo", "model": "Qwen/Qwen2.5-0.5B", "dataset": {"path": str(demo_data["preference"])},
                          "max_steps": 5})
    prepare_and_register(spec, runs_dir, devices=discover(gpus=[]))  # prepared, never run
    at = _try_page(app)
    assert not at.exception and not at.error
    assert any("No finished run yet" in i.value for i in at.info) and not at.main.selectbox
