"""The cai-generate recipe end to end on the tiny model: answer, one critique -> revision round with a
principle of the constitution, SFT rows, revisions.jsonl, report.json; deterministic with a seed;
the plain-text format and the prompt formats themselves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.runners.generation.test_generate_recipe import read_jsonl, run_recipe


def prepared_cai_run(tmp_path: Path, tiny_model_dir: Path, demo_data, name: str, **hparams):
    from runners.rundir.prepare import prepare
    from runners.rundir.spec import RunSpec
    from tests.runners.launch_helpers import cpu_devices, no_estimate

    fields = {
        "method": "cai-generate", "model": str(tiny_model_dir), "dataset": {"path": str(demo_data["prompts"])},
        "hparams": {"max_new_tokens": 8, "batch_size": 3, **hparams}, "max_steps": 4, "devices": "cpu", "seed": 3,
    }
    return Path(prepare(RunSpec.parse(fields), tmp_path / name, devices=cpu_devices(), estimate=no_estimate).path)


@pytest.mark.slow
def test_cai_generate_writes_revisions_report_and_sft_rows_deterministically(tmp_path, tiny_model_dir, demo_data):
    from runners.data.load import load_and_normalize
    from runners.judges.constitution import load_constitution
    from runners.rundir.spec import DatasetSpec

    names = set(load_constitution().names)
    runs = [prepared_cai_run(tmp_path, tiny_model_dir, demo_data, name) for name in ("a", "b")]
    for run_dir in runs:
        out = run_recipe("cai_generate", run_dir / "spec.yaml")
        assert out.returncode == 0, out.stderr[-2000:]
    a, b = runs
    assert (a / "output" / "data.jsonl").read_text() == (b / "output" / "data.jsonl").read_text()
    assert (a / "output" / "revisions.jsonl").read_text() == (b / "output" / "revisions.jsonl").read_text()

    rows = read_jsonl(a / "output" / "data.jsonl")
    prompts = [json.loads(line)["prompt"] for line in Path(demo_data["prompts"]).read_text().splitlines()][:4]
    # The tiny tokenizer has a chat template: conversational SFT rows
    assert [r["prompt"] for r in rows] == [[{"role": "user", "content": p}] for p in prompts]
    assert all(r["completion"][0]["role"] == "assistant" and r["completion"][0]["content"] for r in rows)
    revisions = read_jsonl(a / "output" / "revisions.jsonl")
    assert [r["index"] for r in revisions] == [0, 1, 2, 3]
    for rev, row in zip(revisions, rows, strict=True):
        assert len(rev["rounds"]) == 1 and rev["rounds"][0]["principle"] in names
        assert rev["final"].strip() == row["completion"][0]["content"]
        assert rev["changed"] == (rev["final"].strip() != rev["initial"].strip())
    report = json.loads((a / "report.json").read_text())
    assert report["prompts"] == 4 and report["rounds"] == 4
    assert report["revisions_differing"] == sum(r["changed"] for r in revisions)
    assert report["share_differing"] == report["revisions_differing"] / 4
    assert 0 < report["mean_critique_tokens"] <= 8 and 0 < report["mean_revision_tokens"] <= 8
    assert sum(report["principles_used"].values()) == 4 and set(report["principles_used"]) <= names
    assert len(report["examples"]) == 3 and report["constitution"] == "harmless"
    metrics = read_jsonl(a / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [3, 4]
    assert all(0 <= m["changed_fraction"] <= 1 and m["critique_length"] > 0 for m in metrics)
    result = json.loads((a / "result.json").read_text())
    assert result["status"] == "succeeded" and result["share_differing"] == report["share_differing"]
    # The SL-CAI stage can read the output as SFT data
    dataset, fmt = load_and_normalize(DatasetSpec(path=result["output_data"]), "sft")
    assert fmt.name == "prompt-completion" and len(dataset) == 4


@pytest.mark.slow
def test_cai_generate_plain_format_two_rounds_with_a_custom_constitution(tmp_path, tiny_model_dir, demo_data):
    constitution = tmp_path / "two.yaml"
    constitution.write_text("name: two\nprinciples:\n"
                            "  - {name: alpha, critique: 'Is it rude?', revision: Rewrite it politely.}\n"
                            "  - {name: beta, critique: 'Is it false?', revision: Rewrite it truthfully.}\n")
    run_dir = prepared_cai_run(tmp_path, tiny_model_dir, demo_data, "plain", prompt_format="plain", rounds=2)
    spec = run_dir / "spec.yaml"
    spec.write_text(spec.read_text().replace("constitution: null", f"constitution: {constitution}"))
    out = run_recipe("cai_generate", spec)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = read_jsonl(run_dir / "output" / "data.jsonl")
    assert all(isinstance(r["prompt"], str) and r["completion"].startswith(" ") for r in rows)
    revisions = read_jsonl(run_dir / "output" / "revisions.jsonl")
    assert all([s["round"] for s in r["rounds"]] == [1, 2] for r in revisions)
    assert {s["principle"] for r in revisions for s in r["rounds"]} <= {"alpha", "beta"}
    assert json.loads((run_dir / "report.json").read_text())["constitution"] == "two"


@pytest.mark.slow
def test_a_bad_constitution_fails_in_one_line_naming_the_field(tmp_path, tiny_model_dir, demo_data):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nprinciples:\n  - {name: a, critique: c}\n")
    run_dir = prepared_cai_run(tmp_path, tiny_model_dir, demo_data, "bad")
    spec = run_dir / "spec.yaml"
    spec.write_text(spec.read_text().replace("constitution: null", f"constitution: {bad}"))
    out = run_recipe("cai_generate", spec)
    assert out.returncode == 2
    assert f"constitution: {bad}: principles[0].revision: missing" in out.stderr


def test_prompt_formats_and_principle_draws():
    from runners.judges.constitution import Principle, load_constitution
    from runners.recipes.cai_generate import (
        CaiGenerateConfig,
        critique_text,
        draw_principle,
        revision_text,
        sft_row,
    )
    from runners.recipes.configs import config_for

    p = Principle("kind", "Is it unkind?", "Rewrite it kindly.")
    text = revision_text(None, "Question: hi\nAnswer:", " hello ", p, " mean ", chat=False)
    assert text == ("Question: hi\nAnswer: hello\n\nCritique request: Is it unkind?\nCritique: mean\n\n"
                    "Revision request: Rewrite it kindly.\nRevision:")
    assert critique_text(None, "Q:", "a", p, chat=False).endswith("Critique request: Is it unkind?\nCritique:")
    assert sft_row("Q:", " better ", chat=False) == {"prompt": "Q:", "completion": " better"}
    assert sft_row("Q: ", "better", chat=True)["completion"] == [{"role": "assistant", "content": "better"}]

    class Template:
        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            return messages

    chat = revision_text(Template(), "hi", "hello", p, "mean", chat=True)
    assert [m["role"] for m in chat] == ["user", "assistant", "user", "assistant", "user"]
    assert chat[2]["content"] == "Critique request: Is it unkind?" and chat[4]["content"].startswith("Revision request")

    constitution = load_constitution()
    draws = [draw_principle(constitution, 1, i, 1).name for i in range(40)]
    assert draws == [draw_principle(constitution, 1, i, 1).name for i in range(40)]
    assert len(set(draws)) >= 5
    assert config_for("cai-generate") == (CaiGenerateConfig, {})
    assert CaiGenerateConfig().rounds == 1
    with pytest.raises(ValueError, match="rounds"):
        CaiGenerateConfig(rounds=0)
