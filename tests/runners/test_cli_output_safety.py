"""What `alignplan runs ...` prints about runs (issue 11): names, models and paths from users and files
are shown escaped, never as raw terminal escape sequences or extra lines; `runs delete` needs an exact
id or name (a unique prefix is shown back and needs --yes); `runs list` reads progress from the run's
own files when the supervisor is gone."""

from __future__ import annotations

import json

import pytest
from launch_helpers import cpu_devices, no_estimate, run_cli, spec, stop_leftovers

from runners.cli import progress_line
from runners.launch.launch import prepare_and_register
from runners.registry.store import Registry

HOSTILE = "\x1b[31mred\nline"



@pytest.fixture(autouse=True)
def _no_run_outlives_its_test(tmp_path):
    yield
    stop_leftovers(tmp_path)


def test_control_characters_in_names_models_and_metrics_are_printed_escaped(capsys, runs_dir):
    run = prepare_and_register(spec(name=HOSTILE, model=f"/models/{HOSTILE}"), runs_dir, devices=cpu_devices(),
                               estimate=no_estimate)
    reg = Registry.for_runs_root(runs_dir)
    reg.update(run.id, last_metrics={"step": 1, "max_steps": 2, "stage": HOSTILE, "stage_index": 1, "stages": 2,
                                     "loss": 0.5})
    code, out, _ = run_cli(capsys, "runs", "list")
    assert code == 0
    assert "\x1b" not in out and "\\x1b[31mred\\nline" in out
    assert len(out.splitlines()) == 2  # the header and one line for the run
    code, out, err = run_cli(capsys, "runs", "show", run.id)
    assert code == 0 and "\x1b" not in out + err
    line = progress_line({"step": 3, "max_steps": 9, "stage": HOSTILE, "stage_index": 1, "stages": 2, "loss": 1.0})
    assert "\x1b" not in line and "\n" not in line and "\\x1b[31mred\\nline" in line
    # an error naming a hostile path is one escaped line too
    code, _, err = run_cli(capsys, "runs", "show", "\x1b[2Jnone\nsuch")
    assert code == 2 and "\x1b" not in err and len(err.strip().splitlines()) == 1


def test_delete_needs_an_exact_id_or_name_and_a_prefix_needs_yes(capsys, runs_dir, monkeypatch):
    first = prepare_and_register(spec(name="keep-me"), runs_dir, devices=cpu_devices(), estimate=no_estimate)
    second = prepare_and_register(spec(name="other"), runs_dir, devices=cpu_devices(), estimate=no_estimate)
    reg = Registry.for_runs_root(runs_dir)
    # a suffix never deletes (issue 11: `runs delete f` removed the only run ending in "f")
    code, _, err = run_cli(capsys, "runs", "delete", first.id[-4:])
    assert code == 2 and first.path.is_dir() and reg.get(first.id)
    assert len(err.strip().splitlines()) == 1
    # a unique prefix is shown back and refused without --yes (no terminal to ask on)
    prefix = first.id[:-2]
    assert not second.id.startswith(prefix)
    code, _, err = run_cli(capsys, "runs", "delete", prefix)
    assert code == 2 and first.id in err and "--yes" in err and first.path.is_dir()
    # at a terminal the user is asked; anything but y keeps the run
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt="": "n")
    code, out, err = run_cli(capsys, "runs", "delete", prefix)
    assert code == 1 and first.id in err and first.path.is_dir()
    monkeypatch.setattr("builtins.input", lambda prompt="": "y")
    code, out, _ = run_cli(capsys, "runs", "delete", prefix)
    assert code == 0 and not first.path.exists()
    # --yes confirms a prefix; the exact name needs nothing
    third = prepare_and_register(spec(name="third"), runs_dir, devices=cpu_devices(), estimate=no_estimate)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    code, _, _ = run_cli(capsys, "runs", "delete", third.id[:-2], "--yes", "--json")
    assert code == 0 and not third.path.exists()
    code, out, _ = run_cli(capsys, "runs", "delete", "other")
    assert code == 0 and not second.path.exists() and f"deleted run {second.id}" in out


def test_runs_list_reads_progress_from_the_runs_files_not_a_stale_registry_copy(capsys, runs_dir):
    run = prepare_and_register(spec(max_steps=10), runs_dir, devices=cpu_devices(), estimate=no_estimate)
    reg = Registry.for_runs_root(runs_dir)
    reg.update(run.id, last_metrics={"step": 2, "max_steps": 10, "loss": 0.9})  # the supervisor's last update
    # ...then the supervisor went away while the recipe kept writing
    rows = [{"step": s, "max_steps": 10, "loss": 1.0 / s} for s in range(1, 8)]
    rows.insert(5, {"step": 5, "eval_loss": 0.4})
    run.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 8, "lo')  # half a line
    code, out, _ = run_cli(capsys, "runs", "list")
    assert code == 0 and "7/10" in out and "2/10" not in out
    code, out, _ = run_cli(capsys, "runs", "list", "--json")
    last = json.loads(out)[0]["last_metrics"]
    assert last["step"] == 7 and last["eval_loss"] == 0.4
    code, out, _ = run_cli(capsys, "runs", "show", run.id)
    assert code == 0 and "at step 7" in out
    # result.json's final metrics win once the run has ended
    run.result_path.write_text(json.dumps({"status": "succeeded", "final": {"step": 10, "loss": 0.1}}))
    code, out, _ = run_cli(capsys, "runs", "list")
    assert "10/10" in out
