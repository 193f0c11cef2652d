"""`alignplan run` calls the reward on two samples of the data before anything is prepared: every
failure is one line naming reward.function (or reward.params / reward.model), exit 2, no run made.
A file reward is copied into the run directory; the advisor's GRPO preset passes the check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from alignplan.cli import main
from runners.registry.store import Registry
from runners.rundir.reader import RunDir


@pytest.fixture
def qa_data(tmp_path) -> Path:
    path = tmp_path / "qa.jsonl"
    rows = [{"prompt": "Question: 2+2?\nAnswer:", "answer": "4"}, {"prompt": "Question: 3+3?\nAnswer:", "answer": "6"},
            {"prompt": "Question: 1+1?\nAnswer:", "answer": "2"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def reward_file(tmp_path: Path, body: str, name: str = "my_rewards.py") -> Path:
    path = tmp_path / "rewards" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(body)
    return path


CASES = {
    # name: (file body or None, reward.function (FILE = the file), extra argv, message)
    "module": (None, "no_such_pkg.rewards:score", [], "reward.function: cannot import module 'no_such_pkg.rewards'"),
    "no file": (None, "missing/my_rewards.py:score", [], "my_rewards.py: file not found"),
    "syntax": ("def score(completions:\n", "FILE:score", [], "cannot load"),
    "import": ("import not_installed_pkg\n", "FILE:score", [], "ModuleNotFoundError"),
    "no function": ("def other(completions, **kw):\n    return [1.0] * len(completions)\n", "FILE:score", [],
                    "has no function 'score'"),
    "signature": ("def score(text):\n    return [1.0]\n", "FILE:score", [],
                  "takes (text) but is called as f(prompts=..., completions=..., **columns)"),
    "strings": ("def score(completions, **kw):\n    return ['good' for _ in completions]\n", "FILE:score", [],
                "returned str 'good' for completion 1; return a number per completion"),
    "length": ("def score(completions, **kw):\n    return [1.0]\n", "FILE:score", [],
               "returned 1 values for 2 completions"),
    "scalar": ("def score(completions, **kw):\n    return 1.0\n", "FILE:score", [], "returned float 1.0"),
    "nan": ("def score(completions, **kw):\n    return [float('nan')] * len(completions)\n", "FILE:score", [],
            "returned nan for completion 1; return finite numbers"),
    "raises": ("def score(completions, **kw):\n    return [1 / 0 for _ in completions]\n", "FILE:score", [],
               "raised ZeroDivisionError: division by zero when called on the first 2 prompts of qa.jsonl"),
    "column": ("def score(completions, solution, **kw):\n    return [0.0] * len(completions)\n", "FILE:score", [],
               "needs the data column 'solution', which qa.jsonl does not have (columns: prompt, answer)"),
    "builtin column": (None, "builtin:exact_match", ["--reward-param", "column=gold"],
                       "reward.function: builtin:exact_match needs the data column 'gold'"),
    "builtin param": (None, "builtin:regex", [], "reward.params.pattern: required by builtin:regex"),
    "file param": ("def score(completions, answer):\n    return [0.0] * len(completions)\n", "FILE:score",
                   ["--reward-param", "bonus=1"], "reward.params.bonus: FILE:score has no parameter 'bonus'"),
}


@pytest.mark.parametrize("method", ["grpo"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_broken_reward_is_one_line_before_anything_is_made(capsys, runs_dir, tiny_model_dir, qa_data, tmp_path,
                                                              case, method):
    body, function, extra, message = CASES[case]
    if body is not None:
        path = reward_file(tmp_path, body)
        function = function.replace("FILE", str(path))
        message = message.replace("FILE", str(path))
    elif function.startswith("missing/"):
        function = str(tmp_path / function)
    code = main(["run", "--method", method, "--model", str(tiny_model_dir), "--dataset", str(qa_data),
                 "--devices", "cpu", "--reward-function", function, *extra])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("alignplan run: error: reward."), err
    assert message in err, err
    assert Registry.for_runs_root(runs_dir).list() == []


@pytest.mark.parametrize("method", ["ppo", "rloo"])
def test_ppo_and_rloo_get_the_same_check(capsys, runs_dir, tiny_model_dir, demo_data, method):
    code = main(["run", "--method", method, "--model", str(tiny_model_dir), "--dataset", str(demo_data["prompts"]),
                 "--devices", "cpu", "--reward-function", "builtin:exact_match"])
    err = capsys.readouterr().err
    assert code == 2 and "builtin:exact_match needs the data column 'answer'" in err
    assert len(err.strip().splitlines()) == 1


def test_a_missing_reward_model_folder_is_refused(capsys, runs_dir, tiny_model_dir, demo_data, tmp_path):
    code = main(["run", "--method", "grpo", "--model", str(tiny_model_dir), "--dataset", str(demo_data["prompts"]),
                 "--devices", "cpu", "--reward-model", str(tmp_path / "no-rm")])
    err = capsys.readouterr().err
    assert code == 2 and "reward.model:" in err and "no-rm: directory not found" in err


def test_a_file_reward_passes_and_the_run_keeps_a_copy(capsys, runs_dir, tiny_model_dir, qa_data, tmp_path,
                                                       monkeypatch):
    from runners.launch import preflight
    from runners.rundir.prepare import with_absolute_paths
    from runners.rundir.spec import RunSpec

    path = reward_file(tmp_path, "def score(completions, answer):\n"
                                 "    return [float(a in c) for c, a in zip(completions, answer)]\n")
    monkeypatch.chdir(tmp_path)  # a relative path works from where the command runs
    spec = with_absolute_paths(RunSpec.parse({
        "method": "grpo", "model": str(tiny_model_dir), "dataset": {"path": str(qa_data)},
        "reward": {"function": "rewards/my_rewards.py:score"}}))
    assert spec.reward.function == f"{path}:score"
    preflight.check_run_inputs(spec)  # no error
    code = main(["run", "--method", "grpo", "--model", str(tiny_model_dir), "--dataset", str(qa_data),
                 "--devices", "cpu", "--reward-function", "rewards/my_rewards.py:score", "--dry-run", "--json"])
    assert code == 0
    run = RunDir(Path(json.loads(capsys.readouterr().out)["run_dir"]))
    copy = run.path / "reward" / "my_rewards.py"
    assert copy.read_text() == path.read_text()
    assert run.spec().reward.function == f"{copy}:score"


def test_the_advisors_grpo_preset_passes_preflight_on_the_demo_data(tiny_model_dir, demo_data, runs_dir):
    import advisor
    from runners.launch import preflight
    from runners.rundir.prepare import prepare
    from runners.rundir.spec import RunSpec

    rec = advisor.advise({"reward_signal": "verifiable"})
    assert rec.method == "grpo"
    run_spec = {**rec.preset["run_spec"], "model": str(tiny_model_dir), "dataset": {"path": str(demo_data["prompts"])},
                "max_steps": 1}
    spec = RunSpec.parse(run_spec)
    assert spec.reward.function.startswith("builtin:")
    preflight.check_run_inputs(spec)  # the reward is imported and called on two demo prompts
    run = prepare(spec, runs_dir)
    assert yaml.safe_load(run.spec_path.read_text())["reward"]["function"] == spec.reward.function
