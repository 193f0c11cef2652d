"""`alignplan advise`: interactive (scripted stdin), --answers FILE [--json], missing answers, bad values."""

from __future__ import annotations

import builtins
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alignplan.cli import main

REPO = Path(__file__).resolve().parents[2]


def _run_cli(args: list[str], stdin: str, tmp_path: Path) -> subprocess.CompletedProcess:
    out = tmp_path / "out.txt"
    with open(out, "w") as fh:
        proc = subprocess.run(
            [sys.executable, "-m", "alignplan.cli", *args],
            input=stdin, stdout=fh, stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=120,
            start_new_session=True,
        )
    proc.stdout = out.read_text()
    return proc


def test_interactive_session_with_scripted_stdin_reasks_on_invalid_input(tmp_path):
    # reward_signal by number (1 = pairwise), a bad task, then style, annotators, pairs with a thousands
    # separator, Enter for failure_mode (default none), Enter to skip the model
    stdin = "1\npoetry\nstyle\nhuman\n2,000\n\n\n"
    proc = _run_cli(["advise"], stdin, tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "What signal tells you that a response is good?" in out
    assert "1) pairwise" in out  # accepted values listed
    assert "task: 'poetry' is not accepted; accepted: style, safety" in out
    assert out.count("What should the training improve?") == 2  # asked again after the bad answer
    assert "Have you seen a specific problem" in out and "Enter for none" in out
    assert "Recommendation: DPO (Direct Preference Optimization) [dpo]" in out
    assert "Collect 3,000-8,000 more preference pairs" in out
    assert "Which GPU?" not in out  # model skipped: no hardware questions


def test_interactive_back_and_eof(monkeypatch, capsys):
    lines = iter(["binary", "back", "verifiable", ""])
    monkeypatch.setattr(builtins, "input", lambda *a: next(lines))
    assert main(["advise"]) == 0
    out = capsys.readouterr().out
    assert "[dpo]" not in out and "Recommendation: GRPO" in out
    # input ends before the first answer: exit 2, one line naming the question
    monkeypatch.setattr(builtins, "input", lambda *a: (_ for _ in ()).throw(EOFError()))
    assert main(["advise"]) == 2
    err = capsys.readouterr().err
    assert "reward_signal" in err and "--answers" in err


def test_interactive_json_keeps_prompts_off_stdout(monkeypatch, capsys):
    lines = iter(["episode", ""])
    monkeypatch.setattr(builtins, "input", lambda *a: next(lines))
    assert main(["advise", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["method"] == "ppo"
    assert "What signal" in captured.err


def test_answers_file_json_output_parses(tmp_path, capsys):
    f = tmp_path / "answers.json"
    f.write_text(json.dumps({"reward_signal": "verifiable", "task": "code_math"}))
    assert main(["advise", "--answers", str(f), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["method"] == "grpo"
    for key in ("why", "data_guidance", "caveats", "alternatives", "next_steps", "preset"):
        assert d[key], key
    assert isinstance(d["why"], list) and all(isinstance(w, str) for w in d["why"])
    assert d["preset"]["method"] == "grpo" and d["memory"] is None


def test_answers_file_yaml_with_hardware_json_has_memory(tmp_path, capsys):
    pytest.importorskip("planner")
    f = tmp_path / "answers.yaml"
    f.write_text(yaml.safe_dump({"reward_signal": "pairwise", "task": "style", "annotators": "human",
                                 "pairs": 2000, "model": "meta-llama/Llama-3.1-8B", "gpu": "A100-80GB", "gpus": 1}))
    assert main(["advise", "--answers", str(f), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [e["method"] for e in d["memory"]["methods"]] == ["dpo", "ppo"]


def test_answers_file_without_json_prints_the_readable_form(tmp_path, capsys):
    f = tmp_path / "answers.yaml"
    f.write_text("reward_signal: binary\n")
    assert main(["advise", "--answers", str(f)]) == 0
    out = capsys.readouterr().out
    for heading in ("Recommendation: KTO", "Why", "Caveats", "Alternatives considered", "Next steps", "Runner preset"):
        assert heading in out
    assert "alignplan run --method kto" in out


def test_missing_answers_exit_2_listing_them(tmp_path, capsys):
    f = tmp_path / "answers.yaml"
    f.write_text("reward_signal: pairwise\ntask: style\n")
    assert main(["advise", "--answers", str(f), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "missing answers for this path: annotators" in captured.err
    assert "pairs" in captured.err


def test_missing_answers_in_a_subprocess_exit_2(tmp_path):
    f = tmp_path / "answers.json"
    f.write_text("{}")
    proc = _run_cli(["advise", "--answers", str(f), "--json"], "", tmp_path)
    assert proc.returncode == 2
    assert "reward_signal" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "content, field, accepted",
    [
        ("reward_signal: pairwise\ntask: poetry\n", "task", "style, safety, format"),
        ("reward_signal: maybe\n", "reward_signal", "pairwise, scalar, episode"),
        ("colour: blue\n", "colour", "reward_signal, task, annotators"),
        ("reward_signal: pairwise\ntask: qa\nannotators: human\npairs: lots\n", "pairs", "integer >= 0"),
    ],
)
def test_bad_values_name_the_field_and_what_is_accepted(tmp_path, capsys, content, field, accepted):
    f = tmp_path / "answers.yaml"
    f.write_text(content)
    assert main(["advise", "--answers", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("alignplan advise: error: ") and err.count("\n") == 1
    assert field in err and accepted in err


def test_answers_file_not_found_or_not_a_mapping(tmp_path, capsys):
    assert main(["advise", "--answers", str(tmp_path / "nope.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err
    f = tmp_path / "list.yaml"
    f.write_text("- pairwise\n")
    assert main(["advise", "--answers", str(f)]) == 2
    assert "mapping" in capsys.readouterr().err


def test_write_spec_writes_a_runspec_and_points_the_command_at_it(tmp_path, capsys):
    spec_mod = pytest.importorskip("runners.rundir.spec")
    answers = tmp_path / "answers.yaml"
    answers.write_text("reward_signal: verifiable\n")
    out = tmp_path / "my spec.yaml"
    assert main(["advise", "--answers", str(answers), "--json", "--write-spec", str(out)]) == 0
    d = json.loads(capsys.readouterr().out)
    spec = spec_mod.RunSpec.load(out)
    assert spec.method == "grpo" and spec.reward.function
    assert d["preset"]["command"] == f"alignplan run --spec '{out}'"
    assert any(d["preset"]["command"] in s for s in d["next_steps"])


@pytest.mark.slow  # builds the tiny model (shared session fixture)
def test_the_preset_command_prepares_a_runner_run_directory(tmp_path, monkeypatch, capsys, tiny_model_dir, demo_data):
    """Hand-over: the advisor's command, run as printed (with a real model and data), makes a run directory
    whose spec carries the preset (dry run: nothing is trained)."""
    import shlex

    spec_mod = pytest.importorskip("runners.rundir.spec")
    monkeypatch.setenv("ALIGNPLAN_RUNS_DIR", str(tmp_path / "runs"))
    f = tmp_path / "answers.yaml"
    f.write_text(yaml.safe_dump({"reward_signal": "pairwise", "task": "style", "annotators": "human", "pairs": 2000,
                                 "model": str(tiny_model_dir)}))
    assert main(["advise", "--answers", str(f), "--json"]) == 0
    preset = json.loads(capsys.readouterr().out)["preset"]
    argv = shlex.split(preset["command"].replace("pairs.jsonl", str(demo_data["preference"])))
    assert main(argv[1:] + ["--devices", "cpu", "--max-steps", "1", "--dry-run", "--json"]) == 0
    run_dir = Path(json.loads(capsys.readouterr().out)["run_dir"])
    spec = spec_mod.RunSpec.load(run_dir / "spec.yaml")
    assert spec.method == "dpo" and spec.model == str(tiny_model_dir)
    assert spec.hparams == {"beta": 0.1, "learning_rate": 1e-6}


def test_write_spec_refuses_a_method_without_a_runner_recipe(tmp_path, capsys, monkeypatch):
    """Every outcome's preset runs today; a runner without the preset's recipe (here: KTO taken away) gets no
    spec file, and one line saying why."""
    spec_mod = pytest.importorskip("runners.rundir.spec")
    monkeypatch.setattr(spec_mod, "RECIPE_METHODS", tuple(m for m in spec_mod.RECIPE_METHODS if m != "kto"))
    answers = tmp_path / "answers.yaml"
    answers.write_text("reward_signal: binary\n")  # -> KTO
    out = tmp_path / "spec.yaml"
    assert main(["advise", "--answers", str(answers), "--json", "--write-spec", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists()
    assert "'kto' has no runner recipe" in captured.err and len(captured.err.strip().splitlines()) == 1


@pytest.mark.slow  # builds the tiny model (shared session fixture); plans three stages
def test_write_spec_for_ppo_writes_an_rlhf_pipeline_that_run_dry_run_accepts(tmp_path, capsys, monkeypatch,
                                                                               tiny_model_dir, demo_data):
    """RLHF with PPO: `advise --write-spec` writes a PipelineSpec, and `alignplan run --spec FILE --dry-run`
    (the command the advice prints) prepares the pipeline: SFT, reward model and PPO, each planned."""
    import shlex

    pytest.importorskip("runners.pipelines.spec")
    monkeypatch.setenv("ALIGNPLAN_RUNS_DIR", str(tmp_path / "runs"))
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump({"reward_signal": "pairwise", "task": "multi_objective", "pairs": 5000,
                                       "model": str(tiny_model_dir)}))
    out = tmp_path / "rlhf.yaml"
    assert main(["advise", "--answers", str(answers), "--json", "--write-spec", str(out)]) == 0
    captured = capsys.readouterr()
    rec = json.loads(captured.out)
    assert rec["method"] == "ppo" and rec["preset"]["method"] == "rlhf"
    assert "rlhf pipeline preset" in captured.err
    written = yaml.safe_load(out.read_text())
    assert written["method"] == "rlhf" and written["model"] == str(tiny_model_dir)
    assert written["stages"] == {"ppo": {"hparams": rec["preset"]["hparams"]}}
    written["data"] = {"sft": {"path": str(demo_data["sft"])}, "preferences": {"path": str(demo_data["preference"])}}
    out.write_text(yaml.safe_dump(written))  # the user's files in place of sft.jsonl / pairs.jsonl
    argv = shlex.split(rec["preset"]["command"])
    assert argv == ["alignplan", "run", "--spec", str(out)]
    assert main(argv[1:] + ["--devices", "cpu", "--dry-run", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    plan = doc["pipeline_plan"]
    assert plan["pipeline"] == "rlhf" and [s["stage"] for s in plan["stages"]] == ["sft", "rm", "ppo"]
    assert all(s["predicted_peak_bytes"] > 0 for s in plan["stages"])
    stage_spec = yaml.safe_load((Path(doc["run_dir"]).parent / plan["stages"][2]["run_id"] / "spec.yaml").read_text())
    assert stage_spec["method"] == "ppo" and stage_spec["hparams"]["kl_coef"] == 0.05


@pytest.mark.slow  # builds the tiny model (shared session fixture); plans every stage
@pytest.mark.parametrize("outcome", ["rlaif", "cai"])
def test_write_spec_for_rlaif_and_cai_writes_their_pipelines_that_run_dry_run_accepts(
        outcome, tmp_path, capsys, monkeypatch, tiny_model_dir, demo_data):
    """RLAIF and CAI: `advise --write-spec` writes the rlaif / cai PipelineSpec (never plain DPO); with the
    user's prompts and, for RLAIF, a judge filled in where the placeholder is, `alignplan run --spec FILE
    --dry-run` plans every stage."""
    import shlex

    pytest.importorskip("runners.pipelines.spec")
    monkeypatch.setenv("ALIGNPLAN_RUNS_DIR", str(tmp_path / "runs"))
    answers = {"rlaif": {"reward_signal": "pairwise", "task": "factual", "annotators": "none"},
               "cai": {"reward_signal": "none", "task": "safety", "annotators": "none", "principles": True}}[outcome]
    path = tmp_path / "answers.yaml"
    path.write_text(yaml.safe_dump({**answers, "model": str(tiny_model_dir)}))
    out = tmp_path / f"{outcome}.yaml"
    assert main(["advise", "--answers", str(path), "--json", "--write-spec", str(out)]) == 0
    captured = capsys.readouterr()
    rec = json.loads(captured.out)
    assert rec["method"] == outcome and rec["preset"]["method"] == outcome
    assert f"{outcome} pipeline preset" in captured.err
    written = yaml.safe_load(out.read_text())
    assert written["method"] == outcome and written["model"] == str(tiny_model_dir)
    assert written["stages"]["dpo"] == {"hparams": {"beta": 0.1, "learning_rate": 1e-6}}
    if outcome == "rlaif":
        assert written["stages"]["label"]["judge"] == {"kind": "local", "model": "<judge-model>"}
        written["stages"]["label"]["judge"] = {"kind": "function",
                                               "function": "runners.judges.rules:prefer_safe_then_shorter"}
    written["data"] = {"prompts": {"path": str(demo_data["prompts"])}}
    out.write_text(yaml.safe_dump(written))
    argv = shlex.split(rec["preset"]["command"])
    assert argv == ["alignplan", "run", "--spec", str(out)]
    assert main(argv[1:] + ["--devices", "cpu", "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)["pipeline_plan"]
    expected = {"rlaif": ["generate", "label", "dpo"], "cai": ["critique", "sft", "generate", "label", "dpo"]}[outcome]
    assert plan["pipeline"] == outcome and [s["stage"] for s in plan["stages"]] == expected
