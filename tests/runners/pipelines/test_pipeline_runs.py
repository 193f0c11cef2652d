"""RLHF pipelines on the tiny model: prepared, run, stopped, resumed and failed as one run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from alignplan.cli import main
from runners.launch import launch
from runners.registry.store import Registry
from runners.rundir.reader import RunDir
from tests.runners.launch_helpers import stop_leftovers, wait_until


@pytest.fixture(autouse=True)
def _no_run_outlives_its_test(tmp_path):
    yield
    stop_leftovers(tmp_path)


def rlhf_argv(tiny_model_dir, demo_data, *extra: str) -> list[str]:
    return ["run", "--method", "rlhf", "--model", str(tiny_model_dir), "--sft-dataset", str(demo_data["sft"]),
            "--dataset", str(demo_data["preference"]), "--devices", "cpu", "--max-steps", "3", *extra]


def records(root: Path) -> dict[str, object]:
    return {r.id: r for r in Registry.for_runs_root(root, reconcile=False).list()}


def test_dry_run_prepares_the_pipeline_and_its_three_stages(capsys, runs_dir, tiny_model_dir, demo_data):
    code = main(rlhf_argv(tiny_model_dir, demo_data, "--dry-run", "--json", "--stage", "ppo.max_steps=5"))
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["launched"] is False
    pid = doc["run_id"]
    plan = doc["pipeline_plan"]
    assert [s["stage"] for s in plan["stages"]] == ["sft", "rm", "ppo"]
    assert plan["predicted_peak_bytes"] == max(s["predicted_peak_bytes"] for s in plan["stages"])
    assert all(s["planned_with"] == str(tiny_model_dir) for s in plan["stages"])  # the SFT output's architecture
    recs = records(runs_dir)
    assert recs[pid].method == "rlhf" and recs[pid].status == "prepared"
    assert {r.id: r.pipeline_id for r in recs.values() if r.pipeline_id} == {
        f"{pid}.sft": pid, f"{pid}.rm": pid, f"{pid}.ppo": pid}
    ppo = RunDir(runs_dir / f"{pid}.ppo").spec()
    assert ppo.max_steps == 5 and ppo.model == str(runs_dir / f"{pid}.sft" / "checkpoints" / "final")
    assert ppo.reward.model == str(runs_dir / f"{pid}.rm" / "checkpoints" / "final")


def test_a_pipeline_flag_on_a_single_run_and_a_bad_stage_name_are_one_line(capsys, runs_dir, tiny_model_dir, demo_data):
    code = main(["run", "--method", "dpo", "--model", str(tiny_model_dir), "--dataset", str(demo_data["preference"]),
                 "--sft-model", "x", "--dry-run"])
    assert code == 2 and "--sft-model: only for a pipeline" in capsys.readouterr().err
    code = main(rlhf_argv(tiny_model_dir, demo_data, "--dry-run", "--stage", "dpo.max_steps=3"))
    err = capsys.readouterr().err
    assert code == 2 and "unknown stage 'dpo'; stages: sft, rm, ppo" in err
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


@pytest.mark.slow
def test_rlhf_runs_sft_rm_ppo_and_hands_each_stage_its_inputs(capsys, runs_dir, tiny_model_dir, demo_data):
    code = main(rlhf_argv(tiny_model_dir, demo_data, "--json"))
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["status"] == "succeeded"
    pid = doc["run_id"]
    assert [s["status"] for s in doc["stages"]] == ["succeeded"] * 3
    rows = RunDir(runs_dir / pid).metrics()
    assert [(r["stage"], r["step"]) for r in rows if "step" in r and not any(k.startswith("eval_") for k in r)] == [
        (stage, step) for stage in ("sft", "rm", "ppo") for step in (1, 2, 3)]
    assert {"score", "kl", "policy_loss", "value_loss"} <= set(rows[-1])
    ppo_result = RunDir(runs_dir / f"{pid}.ppo").result()
    assert doc["result"]["final_model"] == ppo_result["final_model"]
    assert Path(ppo_result["final_model"], "config.json").is_file()
    # the RM stage started from the SFT stage's final model and saved a one-output classifier
    rm_config = json.loads((runs_dir / f"{pid}.rm" / "checkpoints" / "final" / "config.json").read_text())
    assert rm_config["architectures"] == ["LlamaForSequenceClassification"]
    assert len(rm_config.get("id2label", {0: "LABEL_0"})) == 1


@pytest.mark.slow
def test_stop_and_resume_act_on_the_pipeline_and_never_rerun_a_finished_stage(capsys, runs_dir, tiny_model_dir,
                                                                               demo_data):
    # many PPO steps, so that the stop lands inside the PPO stage
    code = main(rlhf_argv(tiny_model_dir, demo_data, "--detach", "--json", "--stage", "ppo.max_steps=400",
                          "--stage", "ppo.save_steps=2"))
    pid = json.loads(capsys.readouterr().out)["run_id"]
    assert code == 0
    reg = Registry.for_runs_root(runs_dir, reconcile=False)
    assert wait_until(lambda: len(RunDir(runs_dir / f"{pid}.ppo").metrics()) >= 3, timeout=240)
    stopped = launch.stop(pid, grace=60)
    assert stopped.status == "stopped"
    stages = {s: reg.get(f"{pid}.{s}") for s in ("sft", "rm", "ppo")}
    assert [stages[s].status for s in ("sft", "rm", "ppo")] == ["succeeded", "succeeded", "stopped"]
    result = RunDir(runs_dir / pid).result()
    assert result["status"] == "stopped" and result["stage"] == "ppo"
    done_steps = max(r["step"] for r in RunDir(runs_dir / f"{pid}.ppo").metrics())

    launch.resume(pid)
    assert wait_until(lambda: reg.get(f"{pid}.ppo").launches == 2 and
                      max(r["step"] for r in RunDir(runs_dir / f"{pid}.ppo").metrics()) > done_steps + 1, timeout=120)
    launch.stop(pid, grace=60)
    assert reg.get(f"{pid}.sft").launches == 1 and reg.get(f"{pid}.rm").launches == 1  # never run again
    ppo_steps = [r["step"] for r in RunDir(runs_dir / f"{pid}.ppo").metrics()]
    assert ppo_steps == sorted(ppo_steps) and ppo_steps[0] == 1  # resumed from its checkpoint, counting on


@pytest.mark.slow
def test_a_failed_stage_fails_the_pipeline_by_name_and_a_retry_after_the_fix_continues(capsys, runs_dir, tmp_path,
                                                                                     tiny_model_dir, demo_data):
    # an "SFT model" with config and tokenizer but no weights passes the checks and fails in the RM stage
    broken = tmp_path / "sft-without-weights"
    shutil.copytree(tiny_model_dir, broken, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    code = main(rlhf_argv(tiny_model_dir, demo_data, "--sft-model", str(broken), "--json"))
    doc = json.loads(capsys.readouterr().out)
    pid = doc["run_id"]
    assert code == 1 and doc["status"] == "failed"
    assert [s["stage"] for s in doc["stages"]] == ["rm", "ppo"]
    assert doc["result"]["error"].startswith(f"stage 1/2 (rm, run {pid}.rm) failed")
    for weights in Path(tiny_model_dir).glob("*.safetensors"):
        shutil.copy(weights, broken)
    launch.resume(pid)
    rec = launch.wait(pid, timeout=300)
    assert rec.status == "succeeded"
    assert [r.status for r in records(runs_dir).values() if r.pipeline_id == pid] == ["succeeded", "succeeded"]


def test_deleting_a_stage_alone_is_refused_and_deleting_the_pipeline_removes_its_stages(capsys, runs_dir,
                                                                                       tiny_model_dir, demo_data):
    main(rlhf_argv(tiny_model_dir, demo_data, "--dry-run", "--json"))
    pid = json.loads(capsys.readouterr().out)["run_id"]
    code = main(["runs", "delete", f"{pid}.rm"])
    assert code == 2 and f"a stage of pipeline {pid}" in capsys.readouterr().err
    assert main(["runs", "delete", pid]) == 0
    assert records(runs_dir) == {} and not any(runs_dir.glob(f"{pid}*"))


@pytest.mark.slow
def test_demo_ppo_runs_the_rlhf_pipeline_and_the_score_rises(capsys, runs_dir, tiny_model_dir, monkeypatch):
    from runners.demo.tiny import TINY_MODEL_DIR_ENV

    monkeypatch.setenv(TINY_MODEL_DIR_ENV, str(tiny_model_dir))
    code = main(["demo", "--method", "ppo", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["status"] == "succeeded"
    stages = [r for r in records(runs_dir).values() if r.pipeline_id == doc["run_id"]]
    assert [(r.method, r.status) for r in stages] == [("sft", "succeeded"), ("rm", "succeeded"), ("ppo", "succeeded")]
    # the reward model's score of the policy's answers: measured -1.47 -> -0.94 and -1.40 -> -0.72 here
    assert doc["score_last5"] - doc["score_first5"] > 0.25


@pytest.mark.slow
def test_demo_rlaif_generates_judges_in_both_orders_and_trains_dpo(capsys, runs_dir, tiny_model_dir, monkeypatch):
    from runners.demo.tiny import TINY_MODEL_DIR_ENV

    monkeypatch.setenv(TINY_MODEL_DIR_ENV, str(tiny_model_dir))
    code = main(["demo", "--method", "rlaif", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["status"] == "succeeded"
    report = doc["labelling"]
    # the rule judge is order-blind, so every pair gets the same verdict both ways (measured 60 of 60)
    assert report["pairs_judged"] == 60 and report["position_consistency"] == 1.0
    assert report["pairs_written"] + report["ties"] + report["dropped"] == 60 and report["pairs_written"] >= 40
    pairs = [json.loads(line) for line in (runs_dir / f"{doc['run_id']}.label" / "output" / "data.jsonl").open()]
    assert len(pairs) == report["pairs_written"] and all(p["chosen"] != p["rejected"] for p in pairs)
    dpo = RunDir(runs_dir / f"{doc['run_id']}.dpo")
    assert dpo.spec().dataset.path.endswith(f"{doc['run_id']}.label/output/data.jsonl")
    assert doc["dpo_reward_accuracy_last"] >= 0.75  # DPO separates the judged pairs (1.0 measured)


@pytest.mark.slow
def test_demo_cai_revises_fine_tunes_judges_against_principles_and_trains_dpo(capsys, runs_dir, tiny_model_dir,
                                                                            monkeypatch):
    from runners.demo.tiny import TINY_MODEL_DIR_ENV

    monkeypatch.setenv(TINY_MODEL_DIR_ENV, str(tiny_model_dir))
    code = main(["demo", "--method", "cai", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["status"] == "succeeded"
    pid = doc["run_id"]
    stages = [(r.method, r.status) for r in records(runs_dir).values() if r.pipeline_id == pid]
    assert stages == [("cai-generate", "succeeded"), ("sft", "succeeded"), ("generate", "succeeded"),
                      ("rlaif-label", "succeeded"), ("dpo", "succeeded")]
    critique = doc["critique"]
    assert critique["prompts"] == 60 and 0 < critique["share_differing"] <= 1  # 60 of 60 measured (random model)
    # SL-CAI fine-tuned on the revisions; the judged answers came from the SL-CAI model
    assert RunDir(runs_dir / f"{pid}.sft").spec().dataset.path.endswith(f"{pid}.critique/output/data.jsonl")
    assert RunDir(runs_dir / f"{pid}.generate").spec().model.endswith(f"{pid}.sft/checkpoints/final")
    labels = [json.loads(line) for line in (runs_dir / f"{pid}.label" / "labels.jsonl").open()]
    from runners.judges.constitution import load_constitution

    principles = {p.name for p in load_constitution().principles}
    assert labels and all(row.get("principle") in principles for row in labels)
    assert doc["labelling"]["position_consistency"] == 1.0


@pytest.mark.slow
def test_review_pauses_after_labelling_and_resuming_approves_and_trains(capsys, runs_dir, tiny_model_dir, demo_data):
    code = main(["run", "--method", "rlaif", "--model", str(tiny_model_dir), "--dataset", str(demo_data["prompts"]),
                 "--judge-function", "runners.judges.rules:prefer_safe_then_shorter", "--devices", "cpu",
                 "--max-steps", "4", "--review", "--json"])
    doc = json.loads(capsys.readouterr().out)
    pid = doc["run_id"]
    assert code == 0 and doc["status"] == "stopped"
    assert [s["status"] for s in doc["stages"]] == ["succeeded", "succeeded", "prepared"]
    assert (runs_dir / pid / "REVIEW_PENDING").is_file() and "paused for review" in doc["result"]["message"]
    launch.resume(pid)
    rec = launch.wait(pid, timeout=300)
    assert rec.status == "succeeded"
    assert (runs_dir / pid / "REVIEW_APPROVED").is_file() and not (runs_dir / pid / "REVIEW_PENDING").exists()
    reg = Registry.for_runs_root(runs_dir, reconcile=False)
    assert reg.get(f"{pid}.label").launches == 1 and reg.get(f"{pid}.dpo").status == "succeeded"
