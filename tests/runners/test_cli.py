from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from launch_helpers import fake_run, processes_in_group, run_cli, stop_leftovers, wait_until

from runners.launch import launch
from runners.paths import REPO_ROOT, RUNS_DIR_ENV
from runners.registry.store import Registry
from runners.rundir.reader import RunDir


@pytest.fixture(autouse=True)
def _no_run_outlives_its_test(tmp_path):
    yield
    stop_leftovers(tmp_path)


def test_run_dry_run_json(capsys, runs_dir, tiny_model_dir, demo_data):
    code, out, _ = run_cli(
        capsys, "run", "--method", "dpo", "--model", str(tiny_model_dir), "--dataset", str(demo_data["preference"]),
        "--max-steps", "7", "--hparam", "learning_rate=5e-3", "--hparam", "loss_type=[sigmoid, hinge]",
        "--hparam", "max_length=64", "--devices", "cpu", "--dry-run", "--json",
    )
    assert code == 0
    doc = json.loads(out)  # stdout is exactly one JSON document
    assert doc["launched"] is False and doc["decision"]["kind"] == "cpu"
    assert doc["accelerate"]["distributed_type"] == "NO" and doc["accelerate"]["num_processes"] == 1
    assert doc["command"][doc["command"].index("-m", 3) + 1] == "runners.recipes.dpo"
    assert doc["plan"]["predicted_peak_bytes"] > 0 and doc["plan"]["components"]
    run = RunDir(Path(doc["run_dir"]))
    assert run.path.parent == runs_dir
    spec = run.spec()
    assert spec.max_steps == 7 and spec.devices == "cpu"
    assert spec.hparams == {"learning_rate": 5e-3, "loss_type": ["sigmoid", "hinge"], "max_length": 64}
    assert not run.stdout_log.exists()  # nothing launched
    assert Registry.for_runs_root(runs_dir).get(run.id).status == "prepared"


def test_dry_run_with_fake_gpus_picks_ddp(capsys, runs_dir, monkeypatch):
    monkeypatch.setenv("ALIGNPLAN_FAKE_GPUS", "A100-80GB,A100-80GB,A100-80GB,A100-80GB")
    code, out, _ = run_cli(capsys, "run", "--method", "dpo", "--model", "Qwen/Qwen2.5-0.5B", "--dataset", "x.jsonl",
                           "--dry-run", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["accelerate"]["distributed_type"] == "MULTI_GPU" and doc["accelerate"]["num_processes"] == 4
    assert "--num_processes" in doc["command"] and doc["command"][doc["command"].index("--num_processes") + 1] == "4"


def test_dry_run_text_shows_plan_and_command(capsys, runs_dir):
    code, out, _ = run_cli(capsys, "run", "--method", "dpo", "--model", "meta-llama/Llama-3.1-8B",
                           "--dataset", "x.jsonl", "--lora-rank", "16", "--dry-run")
    assert code == 0
    assert "setup: cpu" in out and "predicted peak per device" in out and "command: bash " in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--method", "nope", "--model", "m", "--dataset", "d"], "method: unknown method 'nope'"),
        (["--method", "dpo", "--dataset", "d"], "--model: required"),
        (["--method", "dpo", "--model", "m", "--dataset", "d", "--hparam", "oops"], "expected KEY=VALUE"),
        (["--method", "dpo", "--model", "m", "--dataset", "d", "--devices", "gpu0"], "--devices 'gpu0'"),
        (["--method", "dpo", "--model", "m", "--dataset", "d", "--devices", "3"], "devices: GPU indices"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, runs_dir, argv, message):
    code, out, err = run_cli(capsys, "run", *argv, "--dry-run")
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


def test_missing_local_inputs_fail_before_launch(capsys, runs_dir, tiny_model_dir, tmp_path):
    code, _, err = run_cli(capsys, "run", "--method", "dpo", "--model", str(tiny_model_dir),
                           "--dataset", str(tmp_path / "nope.jsonl"), "--devices", "cpu")
    assert code == 2 and "nope.jsonl: file not found" in err
    code, _, err = run_cli(capsys, "run", "--method", "dpo", "--model", str(tmp_path / "no-model"),
                           "--dataset", "org/hub-data")
    assert code == 2 and "no-model: directory not found" in err
    assert Registry.for_runs_root(runs_dir).list() == []  # nothing prepared


def test_runs_list_show_logs_stop_resume_delete(capsys, runs_dir):
    done = fake_run(runs_dir, steps=3)
    launch.launch(done.path)
    assert launch.wait(done.id, timeout=60).status == "succeeded"
    live = fake_run(runs_dir, steps=10_000, fake_step_seconds=0.05, save_steps=5)
    launch.launch(live.path)
    assert wait_until(lambda: len(live.metrics()) >= 6)

    code, out, _ = run_cli(capsys, "runs", "list", "--json")
    listed = {r["id"]: r for r in json.loads(out)}
    assert code == 0 and set(listed) == {done.id, live.id}
    assert listed[done.id]["status"] == "succeeded" and listed[done.id]["last_metrics"]["step"] == 3
    assert listed[live.id]["status"] == "running"

    code, out, _ = run_cli(capsys, "runs", "list")
    assert done.id in out and "succeeded" in out and "running" in out

    code, out, _ = run_cli(capsys, "runs", "show", done.id[-6:], "--json")  # a unique id suffix
    doc = json.loads(out)
    assert doc["run_id"] == done.id and doc["status"] == "succeeded"
    assert doc["result"]["status"] == "succeeded" and doc["record"]["exit_code"] == 0
    result = json.loads(done.result_path.read_text())
    done.result_path.write_text(json.dumps({**result, "parameters_held": {"this_process": 5, "total": 10,
                                                                           "sharded": True}}))
    code, out, _ = run_cli(capsys, "runs", "show", done.id)
    assert code == 0 and "parameters held per process: 5 of 10 (sharded)" in out

    code, out, _ = run_cli(capsys, "runs", "logs", done.id, "-n", "5")
    assert "run succeeded" in out

    code, out, _ = run_cli(capsys, "runs", "stop", live.id, "--grace", "20", "--json")
    stopped = json.loads(out)
    assert code == 0 and stopped["status"] == "stopped"
    assert processes_in_group(stopped["pgid"]) == []

    code, out, _ = run_cli(capsys, "runs", "resume", live.id, "--detach", "--json")
    assert code == 0 and json.loads(out)["status"] == "running"
    code, out, _ = run_cli(capsys, "runs", "delete", live.id)
    assert code == 2  # still running
    launch.stop(live.id, grace=20)
    code, out, _ = run_cli(capsys, "runs", "delete", live.id, "--json")
    assert code == 0 and json.loads(out) == {"deleted": live.id}
    assert not live.path.exists()
    code, out, err = run_cli(capsys, "runs", "show", live.id)
    assert code == 2 and "no run" in err


def test_tiny_model_command(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "tiny-model", str(tmp_path / "tiny"), "--json")
    path = Path(json.loads(out)["path"])
    assert code == 0 and (path / "config.json").exists() and (path / "tokenizer_config.json").exists()


@pytest.mark.slow
def test_run_follows_progress_and_ctrl_c_stops_then_resume_continues(tmp_path, tiny_model_dir, demo_data):
    env = {**os.environ, RUNS_DIR_ENV: str(tmp_path / "runs"), "PYTHONPATH": str(REPO_ROOT)}
    env.pop("ALIGNPLAN_FAKE_GPUS", None)
    argv = [sys.executable, "-m", "alignplan", "run", "--method", "dpo", "--model", str(tiny_model_dir),
            "--dataset", str(demo_data["preference"]), "--devices", "cpu", "--max-steps", "200",
            "--hparam", "learning_rate=5e-3", "--hparam", "max_length=128", "--hparam", "per_device_train_batch_size=8"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=REPO_ROOT, start_new_session=True)
    lines = []
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("step 2/200") or time.monotonic() > deadline:
            break
    assert any(line.startswith("step 1/200  loss") for line in lines), "".join(lines)[-3000:]
    proc.send_signal(signal.SIGINT)  # what Ctrl-C in a terminal sends
    rest, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, rest[-3000:]
    assert "stopping run" in rest and ": stopped" in rest
    reg = Registry.for_runs_root(tmp_path / "runs")
    (rec,) = reg.list()
    assert rec.status == "stopped" and processes_in_group(rec.pgid) == []
    k = RunDir(Path(rec.run_dir)).metrics()[-1]["step"]
    assert 2 <= k < 200
    # Resume, following to the end with a smaller budget: the spec's max_steps stays 200, so stop
    # again after a few more steps and check the count continued.
    out = subprocess.run([sys.executable, "-m", "alignplan", "runs", "resume", rec.id, "--detach", "--json"],
                         env=env, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr
    run = RunDir(Path(rec.run_dir))
    assert wait_until(lambda: len(run.metrics()) >= k + 2, timeout=300)
    rec = launch.stop(rec.id, grace=120, runs=tmp_path / "runs")
    steps = [m["step"] for m in run.metrics()]
    assert steps[: k + 1] == list(range(1, k + 2)) and rec.status == "stopped" and rec.launches == 2


@pytest.mark.slow
def test_demo_reaches_reward_accuracy_above_half(capsys, runs_dir, tiny_model_dir, monkeypatch):
    from runners.demo.tiny import TINY_MODEL_DIR_ENV

    monkeypatch.setenv(TINY_MODEL_DIR_ENV, str(tiny_model_dir))
    t0 = time.monotonic()
    code, out, err = run_cli(capsys, "demo", "--json")
    wall = time.monotonic() - t0
    doc = json.loads(out)
    assert code == 0 and doc["status"] == "succeeded", err[-3000:]
    assert doc["reward_accuracy"] > 0.5
    assert doc["eval_reward_accuracy"] is not None  # held-out pairs, not the training batch
    assert "step 30/30" in err
    # evaluated before training too: the same held-out pairs, before and after
    before, after = doc["held_out_before"], doc["held_out_after"]
    assert (before["step"], after["step"]) == (0, 30)
    assert after["eval_loss"] < before["eval_loss"] and after["eval_rewards/margins"] > before["eval_rewards/margins"]
    assert after["eval_rewards/accuracies"] == doc["eval_reward_accuracy"]
    print(f"demo wall time {wall:.1f}s, reward accuracy {doc['reward_accuracy']}, held out before {before}, "
          f"after {after}", file=sys.stderr)


def _bad_data(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n')
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": \n')
    folder = tmp_path / "folder"
    folder.mkdir()
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    sft = tmp_path / "sft.jsonl"
    sft.write_text('{"text": "just text"}\n')
    return {
        "empty": (empty, "the file is empty"),
        "latin": (latin, "not valid UTF-8"),
        "broken": (broken, "line 2 is not valid JSON"),
        "folder": (folder, "is a directory"),
        "txt": (text, "unsupported file type '.txt'"),
        "format": (sft, "does not suit method 'dpo'"),
    }


@pytest.mark.parametrize("case", ["empty", "latin", "broken", "folder", "txt", "format"])
def test_bad_data_fails_before_any_run_exists(capsys, runs_dir, tiny_model_dir, tmp_path, case):
    path, message = _bad_data(tmp_path)[case]
    code, out, err = run_cli(capsys, "run", "--method", "dpo", "--model", str(tiny_model_dir),
                             "--dataset", str(path), "--devices", "cpu")
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1
    assert not runs_dir.exists() or not any(p.is_dir() for p in runs_dir.iterdir())
    assert Registry.for_runs_root(runs_dir).list() == []


def test_model_folder_without_config_or_tokenizer_is_refused(capsys, runs_dir, tiny_model_dir, demo_data, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "model.safetensors").write_bytes(b"x")
    code, _, err = run_cli(capsys, "run", "--method", "dpo", "--model", str(bare),
                           "--dataset", str(demo_data["preference"]), "--devices", "cpu")
    assert code == 2 and "no config.json" in err and len(err.strip().splitlines()) == 1
    (bare / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    code, _, err = run_cli(capsys, "run", "--method", "dpo", "--model", str(bare),
                           "--dataset", str(demo_data["preference"]), "--devices", "cpu")
    assert code == 2 and "no tokenizer files" in err
    assert Registry.for_runs_root(runs_dir).list() == []


def test_hub_model_offline_fails_fast_with_local_hint(capsys, runs_dir, demo_data, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    code, _, err = run_cli(capsys, "run", "--method", "dpo", "--model", "someone/not-cached-model",
                           "--dataset", str(demo_data["preference"]), "--devices", "cpu")
    assert code == 2 and "cannot be reached" in err and "local path" in err
    assert time.time() - t0 < 10
    assert Registry.for_runs_root(runs_dir).list() == []


def test_unknown_hparam_is_refused_before_launch(capsys, runs_dir, tiny_model_dir, demo_data):
    code, _, err = run_cli(capsys, "run", "--method", "dpo", "--model", str(tiny_model_dir),
                           "--dataset", str(demo_data["preference"]), "--devices", "cpu",
                           "--hparam", "learning_rat=1e-3")
    assert code == 2 and "hparams.learning_rat: not a DPOConfig field" in err and "learning_rate" in err
    assert len(err.strip().splitlines()) == 1
    assert Registry.for_runs_root(runs_dir).list() == []


def test_failed_run_prints_the_recipes_one_line_error(capsys, runs_dir):
    from runners.cli import print_outcome

    run = fake_run(runs_dir, steps=3)
    (run.path / "stdout.log").write_text("Traceback (most recent call last):\n  File x\nBoom: deep\n")
    (run.path / "result.json").write_text(json.dumps({"status": "failed", "error": "hparams.beta: must be > 0"}))
    rec = Registry.for_runs_root(runs_dir).get(run.id)
    rec.status, rec.exit_code = "failed", 2
    rec.error = "hparams.beta: must be > 0\n--- log tail ---\nTraceback (most recent call last)"
    print_outcome(rec)
    _, err = capsys.readouterr()
    assert "error: hparams.beta: must be > 0" in err and "Traceback" not in err


def test_tilde_paths_pass_the_local_input_checks(tmp_path, monkeypatch, tiny_model_dir, demo_data):
    from runners.launch.preflight import check_run_inputs
    from runners.rundir.prepare import with_absolute_paths
    from runners.rundir.spec import RunSpec

    def check_local_inputs(fields):  # what `alignplan run` does: paths made absolute, then checked
        check_run_inputs(with_absolute_paths(RunSpec.parse(fields)))

    (tmp_path / "tiny").symlink_to(tiny_model_dir)
    (tmp_path / "prefs.jsonl").write_text(demo_data["preference"].read_text())
    monkeypatch.setenv("HOME", str(tmp_path))
    check_local_inputs({"method": "dpo", "model": "~/tiny", "dataset": {"path": "~/prefs.jsonl"}})
    with pytest.raises(ValueError, match="nope.jsonl: file not found"):
        check_local_inputs({"method": "dpo", "model": "~/tiny", "dataset": {"path": "~/nope.jsonl"}})


def test_a_prepared_run_can_be_started_and_only_a_prepared_one(capsys, runs_dir, monkeypatch):
    prepared = fake_run(runs_dir, steps=3)
    assert Registry.for_runs_root(runs_dir).get(prepared.id).status == "prepared"
    with pytest.raises(launch.LaunchError, match="runs start"):
        launch.resume(prepared.id)
    code, _, err = run_cli(capsys, "runs", "start", prepared.id)  # the fake spec's hub model: offline here
    assert code == 2 and "cannot be reached" in err
    assert Registry.for_runs_root(runs_dir).get(prepared.id).status == "prepared"
    monkeypatch.setattr("runners.launch.preflight.check_run_inputs", lambda spec: None)  # the fake recipe needs no model
    code, out, err = run_cli(capsys, "runs", "start", prepared.id, "--detach", "--json")
    assert code == 0, err
    assert json.loads(out)["status"] == "running"
    assert launch.wait(prepared.id, timeout=60).status == "succeeded"
    assert len(prepared.metrics()) >= 3
    code, _, err = run_cli(capsys, "runs", "start", prepared.id)
    assert code == 2 and "only a prepared run can be started" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["runs", "list", "--status", "bogus"], "status 'bogus': not a run status; accepted: prepared, running"),
        (["runs", "logs", "RUN", "-n", "0"], "-n/--lines 0: expected a number of lines >= 1"),
        (["runs", "logs", "RUN", "-n", "-5"], "-n/--lines -5"),
        (["runs", "logs", "RUN", "-f"], "no log yet (status prepared); start it with alignplan runs start"),
        (["runs", "show", ""], "run '': give a run id"),
        (["runs", "show", "  "], "run '': give a run id"),
        (["demo", "--steps", "0"], "--steps 0: expected a number of optimizer steps >= 1"),
        (["demo", "--steps", "-3"], "--steps -3"),
        (["run", "--method", "dpo", "--model", "m", "--dataset", "d", "--devices", "", "--dry-run"], "--devices ''"),
        (["run", "--method", "dpo", "--model", "m", "--dataset", "d", "--devices", ",", "--dry-run"], "--devices ','"),
    ],
)
def test_bad_runs_arguments_are_one_line_errors(capsys, runs_dir, argv, message):
    run = fake_run(runs_dir, steps=3)
    argv = [run.id if a == "RUN" else a for a in argv]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1
    assert [r.id for r in Registry.for_runs_root(runs_dir).list()] == [run.id]  # nothing made, nothing started


def test_tiny_model_command_refuses_a_folder_it_did_not_build(capsys, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.csv").write_text("keep")
    code, out, err = run_cli(capsys, "tiny-model", str(mine))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "exists and is not a tiny-model build; choose an empty or new folder" in err
    assert (mine / "data.csv").read_text() == "keep"


def test_dry_run_prepares_without_local_inputs_but_says_what_is_missing(capsys, runs_dir, tiny_model_dir):
    code, out, _ = run_cli(capsys, "run", "--method", "dpo", "--model", str(tiny_model_dir), "--dataset",
                           "nosuch.jsonl", "--dry-run", "--json")
    assert code == 0
    doc = json.loads(out)
    assert [w.split(" (a dry run")[0] for w in doc["warnings"]] == ["nosuch.jsonl: file not found"]
    assert Registry.for_runs_root(runs_dir).get(doc["run_id"]).status == "prepared"
    code, out, _ = run_cli(capsys, "run", "--method", "dpo", "--model", str(tiny_model_dir), "--dataset",
                           "nosuch.jsonl", "--dry-run")
    assert code == 0 and "warning: nosuch.jsonl: file not found" in out
    # A misspelt hyper-parameter is wrong on every machine: refused, nothing prepared.
    before = len(Registry.for_runs_root(runs_dir).list())
    code, _, err = run_cli(capsys, "run", "--method", "dpo", "--model", str(tiny_model_dir), "--dataset",
                           "nosuch.jsonl", "--dry-run", "--hparam", "betta=0.1")
    assert code == 2 and "hparams.betta" in err and "did you mean beta" in err
    assert len(Registry.for_runs_root(runs_dir).list()) == before
