"""Recipes: each method trains a few steps on the tiny model and logs its metrics; DPO learns the demo
preference; STOP saves a checkpoint and --resume continues; bad specs and data fail before the model loads.

Most runs are in-process (recipe main(argv)) to avoid re-importing torch/TRL per test; the STOP test and
the data-parallel test start real processes, as the launcher does.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

# Small, fast settings for every run: tiny batches and sequences, no gradient checkpointing.
FAST = {"per_device_train_batch_size": 4, "learning_rate": 1e-3, "max_length": 64}
ONLINE = {"per_device_train_batch_size": 4, "num_generations": 4, "max_completion_length": 8, "learning_rate": 1e-3}
MARKER_REWARD = {"function": "runners.recipes.rewards:marker_reward"}

CONTRACT_FIELDS = {
    "step", "max_steps", "epoch", "loss", "learning_rate", "tokens_per_second", "peak_memory_bytes", "memory_kind", "time",
}
METHOD_METRICS = {
    "sft": {"loss", "mean_token_accuracy"},
    "rm": {"accuracy", "margin"},
    "dpo": {"rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected"},
    "ipo": {"rewards/accuracies", "rewards/margins"},
    "kto": {"kl", "rewards/chosen", "rewards/rejected"},
    "orpo": {"rewards/accuracies", "rewards/margins", "log_odds_ratio", "nll_loss"},
    "simpo": {"rewards/accuracies", "rewards/margins"},
    "grpo": {"reward", "reward_std"},
    "rloo": {"reward", "reward_std"},
}
DATA_FOR = {"sft": "sft", "kto": "kto", "grpo": "prompts", "rloo": "prompts"}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def run_recipe(method: str, spec_path: Path, *extra: str) -> int:
    module = importlib.import_module(f"runners.recipes.{method}")
    return module.main(["--spec", str(spec_path), *extra])


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def read_result(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "result.json").read_text())


def spec_fields(method: str, tiny_model_dir: Path, demo_data: dict[str, Path], **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "method": method,
        "model": str(tiny_model_dir),
        "dataset": {"path": str(demo_data[DATA_FOR.get(method, "preference")])},
        "hparams": dict(ONLINE if method in ("grpo", "rloo") else FAST),
        "max_steps": 3,
        "save_steps": 50,
        "gradient_checkpointing": False,
        "devices": "cpu",
    }
    if method in ("grpo", "rloo"):
        fields["reward"] = MARKER_REWARD
    fields.update(overrides)
    return fields


# --- every method -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(METHOD_METRICS))
def test_recipe_trains_and_logs_its_method_metrics(method, tiny_model_dir, demo_data, make_run_dir) -> None:
    spec_path = make_run_dir(method, **spec_fields(method, tiny_model_dir, demo_data))
    run_dir = spec_path.parent

    assert run_recipe(method, spec_path) == 0

    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2, 3]
    for record in records:
        assert CONTRACT_FIELDS <= set(record)
        assert METHOD_METRICS[method] <= set(record), set(record)
        assert record["max_steps"] == 3
        assert record["memory_kind"] == "cpu_rss"
        assert record["peak_memory_bytes"] > 50 * 2**20  # a Python process with torch loaded
        assert record["loss"] is not None and record["learning_rate"] > 0
    result = read_result(run_dir)
    assert result["status"] == "succeeded"
    assert result["final"]["step"] == 3
    assert result["peak_memory_bytes"] >= records[-1]["peak_memory_bytes"]
    assert (Path(result["final_model"]) / "config.json").is_file()


@pytest.mark.parametrize("method", ["dpo", "orpo"])  # TRL counts DPO's tokens; ORPO's are counted by the recipe
def test_tokens_per_second_is_measured(method, tiny_model_dir, demo_data, make_run_dir) -> None:
    spec_path = make_run_dir(**spec_fields(method, tiny_model_dir, demo_data))
    assert run_recipe(method, spec_path) == 0
    records = read_metrics(spec_path.parent)
    rates = [r["tokens_per_second"] for r in records]
    assert all(rate is not None and 10 < rate < 10**8 for rate in rates)
    # a rate times the step's duration is about one batch: 4 pairs of 20-80 tokens each side
    seconds = records[2]["time"] - records[1]["time"]
    assert 4 * 2 * 15 < rates[2] * seconds < 4 * 2 * 100


# --- DPO learns the demo preference ----------------------------------------------------------------


def dpo_demo_run(make_run_dir, tiny_model_dir: Path, data_path: Path, name: str) -> tuple[list[dict], float]:
    from runners.demo.tiny import DEMO_HPARAMS, DEMO_MAX_STEPS

    spec_path = make_run_dir(
        name,
        method="dpo",
        model=str(tiny_model_dir),
        dataset={"path": str(data_path)},
        hparams=DEMO_HPARAMS,
        max_steps=DEMO_MAX_STEPS,
        save_steps=1000,
        gradient_checkpointing=False,
        devices="cpu",
    )
    started = time.perf_counter()
    assert run_recipe("dpo", spec_path) == 0
    return read_metrics(spec_path.parent), time.perf_counter() - started


def test_dpo_learns_the_demo_preference(tiny_model_dir, demo_data, make_run_dir) -> None:
    from runners.demo.tiny import DEMO_MAX_STEPS

    records, wall = dpo_demo_run(make_run_dir, tiny_model_dir, demo_data["preference"], "demo")
    accuracies = [r["rewards/accuracies"] for r in records]
    margins = [r["rewards/margins"] for r in records]
    print(f"demo DPO: {len(records)} steps in {wall:.1f}s, last-5 accuracy {sum(accuracies[-5:]) / 5:.2f}, "
          f"margin {margins[0]:.3f} -> {margins[-1]:.3f}")
    assert len(records) == DEMO_MAX_STEPS
    assert accuracies[0] == 0.0  # policy == reference at step 1: no pair is ranked yet
    assert sum(accuracies[-5:]) / 5 > 0.75
    assert margins[-1] > margins[0] + 1.0
    assert wall < 120


@pytest.mark.slow
def test_dpo_on_random_labels_stays_near_chance(tiny_model_dir, demo_data, make_run_dir, tmp_path) -> None:
    """Control for the test above: swap chosen/rejected in a random half of the pairs."""
    rng = random.Random(0)
    rows = [json.loads(line) for line in demo_data["preference"].read_text().splitlines()]
    for row in rows:
        if rng.random() < 0.5:
            row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_text("".join(json.dumps(r) + "\n" for r in rows))

    records, _ = dpo_demo_run(make_run_dir, tiny_model_dir, shuffled, "control")
    accuracies = [r["rewards/accuracies"] for r in records]
    assert sum(accuracies[-10:]) / 10 < 0.75


# --- STOP and resume -------------------------------------------------------------------------------


def test_stop_file_saves_a_checkpoint_and_resume_continues(tiny_model_dir, demo_data, make_run_dir) -> None:
    spec_path = make_run_dir(**spec_fields("dpo", tiny_model_dir, demo_data, max_steps=30, save_steps=1000))
    run_dir = spec_path.parent
    log = (run_dir / "stdout.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "runners.recipes.dpo", "--spec", str(spec_path)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            metrics = run_dir / "metrics.jsonl"
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
                (run_dir / "STOP").touch()
                break
            time.sleep(0.05)
        assert proc.wait(timeout=180) == 0, (run_dir / "stdout.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()

    result = read_result(run_dir)
    assert result["status"] == "stopped"
    stopped_at = result["step"]
    assert 2 <= stopped_at < 30
    assert result["checkpoint"].endswith(f"checkpoint-{stopped_at}")
    assert (Path(result["checkpoint"]) / "trainer_state.json").is_file()
    assert not (run_dir / "checkpoints" / "final").exists()

    assert run_recipe("dpo", spec_path, "--resume") == 0
    assert not (run_dir / "STOP").exists()
    steps = [r["step"] for r in read_metrics(run_dir)]
    assert steps == list(range(1, 31))  # the resumed run continues the count, appending
    result = read_result(run_dir)
    assert result["status"] == "succeeded" and result["final"]["step"] == 30


def test_resume_without_a_checkpoint_starts_from_step_one(tiny_model_dir, demo_data, make_run_dir) -> None:
    spec_path = make_run_dir(**spec_fields("dpo", tiny_model_dir, demo_data, max_steps=2))
    assert run_recipe("dpo", spec_path, "--resume") == 0
    assert [r["step"] for r in read_metrics(spec_path.parent)] == [1, 2]


# --- reference handling, LoRA, conversational data, precision ---------------------------------------


def test_lora_dpo_trains_only_the_adapter(tiny_model_dir, demo_data, make_run_dir, capsys) -> None:
    spec_path = make_run_dir(**spec_fields("dpo", tiny_model_dir, demo_data, lora={"r": 4, "alpha": 8},
                                           gradient_checkpointing=True))
    assert run_recipe("dpo", spec_path) == 0
    assert "reference: the base model with the LoRA adapter switched off" in capsys.readouterr().out
    final = Path(read_result(spec_path.parent)["final_model"])
    config = json.loads((final / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8
    assert not (final / "model.safetensors").exists()  # only the adapter is saved
    assert read_metrics(spec_path.parent)[-1]["rewards/accuracies"] is not None


@pytest.mark.parametrize("method", ["dpo", "kto"])  # the methods prepare() may switch to precomputing
def test_precomputed_reference_log_probs(method, tiny_model_dir, demo_data, make_run_dir, capsys) -> None:
    hparams = {**FAST, "precompute_ref_log_probs": True}
    spec_path = make_run_dir(**spec_fields(method, tiny_model_dir, demo_data, hparams=hparams))
    assert run_recipe(method, spec_path) == 0
    assert "reference: log-probs precomputed" in capsys.readouterr().out
    assert read_metrics(spec_path.parent)[-1]["rewards/margins"] is not None


def test_conversational_preference_data_uses_the_chat_template(tiny_model_dir, demo_data, make_run_dir, tmp_path):
    rows = []
    for line in demo_data["preference"].read_text().splitlines()[:24]:
        pair = json.loads(line)
        question = pair["prompt"].removeprefix("Question: ").removesuffix("\nAnswer:")
        rows.append({
            "prompt": [{"role": "user", "content": question}],
            "chosen": [{"role": "assistant", "content": pair["chosen"].strip()}],
            "rejected": [{"role": "assistant", "content": pair["rejected"].strip()}],
        })
    path = tmp_path / "conv.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec_path = make_run_dir(**spec_fields("dpo", tiny_model_dir, demo_data, dataset={"path": str(path)}))
    assert run_recipe("dpo", spec_path) == 0
    assert read_result(spec_path.parent)["data_format"] == "preference-conversational"


def test_eval_fraction_logs_eval_metrics(tiny_model_dir, demo_data, make_run_dir) -> None:
    dataset = {"path": str(demo_data["preference"]), "eval_fraction": 0.1}
    spec_path = make_run_dir(**spec_fields("dpo", tiny_model_dir, demo_data, dataset=dataset, save_steps=2, max_steps=2))
    assert run_recipe("dpo", spec_path) == 0
    records = read_metrics(spec_path.parent)
    assert any("eval_loss" in r for r in records)


def test_grpo_with_a_reward_model_from_the_rm_recipe(tiny_model_dir, demo_data, make_run_dir) -> None:
    rm_spec = make_run_dir("rm", **spec_fields("rm", tiny_model_dir, demo_data, max_steps=2))
    assert run_recipe("rm", rm_spec) == 0
    reward_model = read_result(rm_spec.parent)["final_model"]
    spec_path = make_run_dir("grpo", **spec_fields("grpo", tiny_model_dir, demo_data, reward={"model": reward_model},
                                                   max_steps=2))
    assert run_recipe("grpo", spec_path) == 0
    assert all(r["reward"] is not None for r in read_metrics(spec_path.parent))


def test_precision_policy() -> None:
    from runners.recipes.common import precision_args, resolve_precision

    assert resolve_precision(None, cuda=False) == "fp32"
    assert resolve_precision("amp-bf16", cuda=False) == "amp-bf16"
    assert precision_args("bf16", cuda=True) == {"bf16": False, "fp16": False}  # weights bf16, no autocast
    assert precision_args("amp-bf16", cuda=True) == {"bf16": True, "fp16": False}  # fp32 weights + autocast
    assert precision_args("fp32", cuda=False) == {"bf16": False, "fp16": False, "use_cpu": True}
    # DeepSpeed's bf16 mode is on in accelerate.yaml for a bf16 run; TrainingArguments must agree
    assert precision_args("bf16", cuda=True, deepspeed=True) == {"bf16": True, "fp16": False}
    assert precision_args("bf16-kahan", cuda=True) == {"bf16": False, "fp16": False}
    assert precision_args("bf16-kahan", cuda=True, deepspeed=True) == {"bf16": True, "fp16": False}


def test_bf16_precision_loads_bf16_weights(tiny_model_dir, demo_data, make_run_dir) -> None:
    import torch

    from runners.recipes import common

    spec_path = make_run_dir(**spec_fields("sft", tiny_model_dir, demo_data, precision="bf16"))
    run = common.start("sft", ["--spec", str(spec_path)])
    assert common.load_model(run).dtype == torch.bfloat16
    run = common.start("sft", ["--spec", str(make_run_dir("b", **spec_fields("sft", tiny_model_dir, demo_data)))])
    assert run.precision == "fp32" and common.load_model(run).dtype == torch.float32


@pytest.mark.parametrize("precision", ["bf16-kahan", "bf16", "amp-bf16"])
def test_bf16_precisions_train_on_cpu(precision, tiny_model_dir, demo_data, make_run_dir, capsys) -> None:
    spec_path = make_run_dir(**spec_fields("dpo", tiny_model_dir, demo_data, precision=precision, max_steps=2))
    assert run_recipe("dpo", spec_path) == 0
    result = read_result(spec_path.parent)
    assert (result["status"], result["precision"]) == ("succeeded", precision)
    assert result["final"]["rewards/margins"] > 0
    # bf16-kahan trains with torch-optimi's Kahan AdamW; the others with torch's
    assert ("torch-optimi AdamW with Kahan summation" in capsys.readouterr().out) == (precision == "bf16-kahan")


def test_build_config_layers_defaults_hparams_and_spec(tiny_model_dir, demo_data, make_run_dir) -> None:
    from trl import DPOConfig

    from runners.recipes import common

    hparams = {"beta": 0.3, "learning_rate": 2e-5}
    spec_path = make_run_dir(**spec_fields("dpo", tiny_model_dir, demo_data, hparams=hparams, max_steps=7, seed=3))
    run = common.start("dpo", ["--spec", str(spec_path)])
    config = common.build_config(run, DPOConfig, defaults={"beta": 0.9, "warmup_steps": 2})
    assert (config.beta, config.learning_rate, config.warmup_steps) == (0.3, 2e-5, 2)
    assert (config.max_steps, config.seed, config.bf16, config.use_cpu) == (7, 3, False, True)
    assert config.output_dir == str(spec_path.parent / "checkpoints")
    assert config.report_to in ("none", [], ["none"])
    assert config.gradient_checkpointing is False


# --- errors: one line, exit 2, before the model loads ----------------------------------------------


def failing_run(method: str, spec_path: Path, capsys) -> str:
    assert run_recipe(method, spec_path) == 2
    captured = capsys.readouterr()
    assert "parameters, dtype" not in captured.out  # the model was never loaded
    result = read_result(spec_path.parent)
    assert result["status"] == "failed"
    assert captured.err.strip().count("\n") == 0  # one line
    return result["error"]


def test_unknown_hparam_is_named_with_accepted_keys(tiny_model_dir, demo_data, make_run_dir, capsys) -> None:
    spec_path = make_run_dir(**spec_fields("dpo", tiny_model_dir, demo_data, hparams={"betta": 0.1}))
    error = failing_run("dpo", spec_path, capsys)
    assert "hparams.betta" in error and "DPOConfig" in error and "beta" in error and "learning_rate" in error


def test_hparam_owned_by_the_spec_points_to_the_spec_field(tiny_model_dir, demo_data, make_run_dir, capsys) -> None:
    spec_path = make_run_dir(**spec_fields("dpo", tiny_model_dir, demo_data, hparams={"bf16": True}))
    assert "'precision'" in failing_run("dpo", spec_path, capsys)


def test_ipo_rejects_another_loss_type(tiny_model_dir, demo_data, make_run_dir, capsys) -> None:
    spec_path = make_run_dir(**spec_fields("ipo", tiny_model_dir, demo_data, hparams={"loss_type": ["sigmoid"]}))
    assert "loss_type" in failing_run("ipo", spec_path, capsys)


def test_qlora_without_a_gpu_is_a_clear_error(tiny_model_dir, demo_data, make_run_dir, capsys) -> None:
    spec_path = make_run_dir(**spec_fields("dpo", tiny_model_dir, demo_data, lora={"quant": "nf4"}))
    error = failing_run("dpo", spec_path, capsys)
    assert "lora.quant" in error and "GPU" in error


def test_bad_data_fails_before_the_model_loads(tiny_model_dir, demo_data, make_run_dir, capsys) -> None:
    spec_path = make_run_dir(**spec_fields("dpo", tiny_model_dir, demo_data, dataset={"path": str(demo_data["prompts"])}))
    error = failing_run("dpo", spec_path, capsys)
    assert "prompt-only" in error and str(demo_data["prompts"]) in error


def test_spec_for_another_method(tiny_model_dir, demo_data, make_run_dir, capsys) -> None:
    spec_path = make_run_dir(**spec_fields("kto", tiny_model_dir, demo_data))
    assert "'kto'" in failing_run("dpo", spec_path, capsys)


def test_unimportable_reward_function(tiny_model_dir, demo_data, make_run_dir, capsys) -> None:
    reward = {"function": "runners.recipes.rewards:no_such_reward"}
    spec_path = make_run_dir(**spec_fields("grpo", tiny_model_dir, demo_data, reward=reward))
    assert "no_such_reward" in failing_run("grpo", spec_path, capsys)


def test_reward_functions_score_markers() -> None:
    from runners.recipes.rewards import length_reward, marker_reward

    polite, rude = marker_reward(completions=["Sure! Hope this helps.", "Ugh, whatever."])
    assert polite > 1.5 and rude < -1.5
    assert marker_reward(completions=[[{"role": "assistant", "content": "Certainly!"}]])[0] > 1.0
    assert length_reward(completions=["a " * 12, "a"]) == [1.0, pytest.approx(1 / 12)]


# --- data-parallel on CPU ---------------------------------------------------------------------------

# accelerate's MULTI_CPU type starts one process unless an MPI hostfile is given; MULTI_GPU goes through
# torch.distributed.run, and with no GPU each process falls back to CPU and joins over gloo.
ACCELERATE_CPU_CONFIG = """\
compute_environment: LOCAL_MACHINE
distributed_type: MULTI_GPU
num_processes: 2
num_machines: 1
machine_rank: 0
main_process_ip: 127.0.0.1
main_process_port: {port}
mixed_precision: 'no'
use_cpu: false
"""


def launch_two_processes(run_dir: Path, spec_path: Path, *extra: str, stop_after: int | None = None) -> str:
    """accelerate launch with 2 processes; touch STOP once stop_after metrics lines exist. Returns the log."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(run_dir / "accelerate.yaml"),
        "-m", "runners.recipes.dpo", "--spec", str(spec_path), *extra,
    ]
    log_path = run_dir / "stdout.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
        try:
            deadline = time.time() + 300
            while stop_after and time.time() < deadline and proc.poll() is None:
                metrics = run_dir / "metrics.jsonl"
                if metrics.exists() and len(metrics.read_text().splitlines()) >= stop_after:
                    (run_dir / "STOP").touch()
                    break
                time.sleep(0.05)
            returncode = proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    output = log_path.read_text()
    assert returncode == 0, output[-3000:]
    return output


@pytest.mark.slow
def test_two_process_data_parallel_dpo_on_cpu_stops_and_resumes(tiny_model_dir, demo_data, make_run_dir) -> None:
    spec_path = make_run_dir(**spec_fields("dpo", tiny_model_dir, demo_data, max_steps=12, save_steps=1000))
    run_dir = spec_path.parent
    (run_dir / "accelerate.yaml").write_text(ACCELERATE_CPU_CONFIG.format(port=29500 + os.getpid() % 1000))

    output = launch_two_processes(run_dir, spec_path, stop_after=2)
    assert output.count("[dpo] spec") == 1  # only the main process logs
    result = read_result(run_dir)
    # every process saw the same STOP decision (one all-reduce per step), or the run would hang here
    assert result["status"] == "stopped"
    stopped_at = result["step"]
    assert 2 <= stopped_at < 12 and Path(result["checkpoint"]).name == f"checkpoint-{stopped_at}"

    launch_two_processes(run_dir, spec_path, "--resume")
    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == list(range(1, 13))  # one writer, no duplicated lines
    # two processes x 4 pairs per step: 12 steps cover 96 of the 240 pairs (one process would cover 48)
    assert records[-1]["epoch"] == pytest.approx(12 * 2 * 4 / 240, rel=0.01)
    result = read_result(run_dir)
    assert result["status"] == "succeeded"
    # data parallel: each process holds the whole model (205,120 parameters in the tiny Llama)
    assert result["parameters_held"] == {"this_process": 205_120, "total": 205_120, "sharded": False}


@pytest.mark.slow
def test_parameters_held_counts_an_fsdp2_shard(tmp_path: Path) -> None:
    """Under FSDP2 each process reports its own shard: 64*32 + 32 + 32*10 = 2,400 parameters, each
    tensor split along dim 0 over 2 processes (16 of 32 rows, 16 of 32 biases, 5 of 10 rows): 1,200 each."""
    from runners.rundir.decide import free_port

    script, port = Path(__file__).with_name("fsdp2_shard_count.py"), str(free_port())
    procs = [subprocess.Popen([sys.executable, str(script), str(rank), "2", port, str(tmp_path)], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
             for rank in (0, 1)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    held = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in (0, 1)]
    assert all(h["sharded"] and h["total"] == 2_400 for h in held)
    assert [h["this_process"] for h in held] == [1_200, 1_200]


@pytest.mark.parametrize(("key", "field"), [("activation_checkpointing", "gradient_checkpointing"),
                                            ("gradient_checkpointing", "gradient_checkpointing"),
                                            ("max_steps", "max_steps"), ("bf16", "precision")])
def test_hparams_the_spec_owns_are_refused(key, field) -> None:
    """transformers 5's activation_checkpointing overrides gradient_checkpointing: through hparams it
    would bypass the spec and the plan."""
    from trl import DPOConfig

    from runners.recipes import common
    from runners.rundir.spec import SpecError

    with pytest.raises(SpecError, match=rf"hparams\.{key}: set it with the spec field '{field}'"):
        common.check_hparams({key: True}, DPOConfig, {})


def test_build_config_gives_recomputation_to_fsdp(tiny_model_dir, demo_data, make_run_dir, monkeypatch) -> None:
    """transformers refuses gradient_checkpointing together with FSDP's own activation checkpointing."""
    from trl import DPOConfig

    from runners.recipes import common
    from runners.rundir.spec import SpecError

    spec_path = make_run_dir(**spec_fields("dpo", tiny_model_dir, demo_data, gradient_checkpointing=True))
    run = common.start("dpo", ["--spec", str(spec_path)])
    assert common.build_config(run, DPOConfig).gradient_checkpointing is True
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_ACTIVATION_CHECKPOINTING", "false")
    assert common.fsdp_recomputes() is False
    monkeypatch.setenv("FSDP_ACTIVATION_CHECKPOINTING", "true")
    assert common.fsdp_recomputes() is True
    config = common.build_config(run, DPOConfig)
    assert config.gradient_checkpointing is False
    # TRL would load the reference with device_map="auto" under FSDP (it only clears it for DDP/DeepSpeed)
    assert config.model_init_kwargs == {"device_map": None}
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    assert common.build_config(run, DPOConfig).model_init_kwargs is None
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    run.spec.hparams["model_init_kwargs"] = "bf16"
    with pytest.raises(SpecError, match="hparams.model_init_kwargs: expected a mapping"):
        common.build_config(run, DPOConfig)
    run.spec.hparams["model_init_kwargs"] = {"attn_implementation": "sdpa"}
    assert common.build_config(run, DPOConfig).model_init_kwargs == {"attn_implementation": "sdpa",
                                                                     "device_map": None}
    del run.spec.hparams["model_init_kwargs"]
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    assert common.fsdp_recomputes() is False


# --- GPU (skipped without one) ---------------------------------------------------------------------


@pytest.mark.gpu
def test_dpo_on_gpu_defaults_to_bf16_and_reports_cuda_memory(tiny_model_dir, demo_data, make_run_dir) -> None:
    spec_path = make_run_dir(**spec_fields("dpo", tiny_model_dir, demo_data, devices="auto"))
    assert run_recipe("dpo", spec_path) == 0
    result = read_result(spec_path.parent)
    assert (result["device"], result["precision"], result["memory_kind"]) == ("cuda", "bf16", "cuda_max_allocated")
    assert result["peak_memory_bytes"] > 0


@pytest.mark.gpu
def test_qlora_dpo_on_gpu(tiny_model_dir, demo_data, make_run_dir) -> None:
    pytest.importorskip("bitsandbytes")
    spec_path = make_run_dir(**spec_fields("dpo", tiny_model_dir, demo_data, devices="auto",
                                           lora={"r": 4, "quant": "nf4"}))
    assert run_recipe("dpo", spec_path) == 0
    assert (Path(read_result(spec_path.parent)["final_model"]) / "adapter_config.json").is_file()


# --- callbacks and policy units (no training) -------------------------------------------------------


def fake_state(step: int = 3, world_zero: bool = True) -> Any:
    from transformers import TrainerState

    state = TrainerState()
    state.global_step, state.max_steps, state.epoch = step, 10, 0.3
    state.is_world_process_zero = world_zero
    return state


def test_monitor_writes_contract_fields_and_trl_metrics(tmp_path: Path) -> None:
    from transformers import TrainerControl

    from runners.recipes.callbacks import PeakMemory, RunMonitor

    monitor = RunMonitor(tmp_path, PeakMemory(cuda=False))
    control = TrainerControl()
    monitor.on_train_begin(None, fake_state(0), control)
    monitor.on_log(None, fake_state(1), control, logs={"loss": 0.7, "learning_rate": 1e-3, "num_tokens": 100.0,
                                                       "rewards/accuracies": 0.5, "epoch": 0.1})
    time.sleep(0.05)
    monitor.on_log(None, fake_state(2), control, logs={"loss": 0.5, "learning_rate": 1e-3, "num_tokens": 300.0})
    monitor.on_log(None, fake_state(2), control, logs={"train_runtime": 1.0, "train_loss": 0.6})
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2]  # the end-of-training summary is not a step
    assert CONTRACT_FIELDS <= set(records[0])
    assert records[0]["rewards/accuracies"] == 0.5 and records[0]["epoch"] == 0.3
    seconds = records[1]["time"] - records[0]["time"]
    assert records[1]["tokens_per_second"] == pytest.approx(200 / seconds, rel=0.05)
    assert monitor.summary == {"train_runtime": 1.0, "train_loss": 0.6}


def test_only_the_main_process_writes_metrics(tmp_path: Path) -> None:
    from transformers import TrainerControl

    from runners.recipes.callbacks import PeakMemory, RunMonitor

    monitor = RunMonitor(tmp_path, PeakMemory(cuda=False))
    monitor.on_log(None, fake_state(1, world_zero=False), TrainerControl(), logs={"loss": 1.0})
    assert not (tmp_path / "metrics.jsonl").exists()
    assert monitor.last_metrics["loss"] == 1.0  # every process keeps its view for result.json


def test_stop_file_asks_the_trainer_to_save_and_stop(tmp_path: Path) -> None:
    from transformers import TrainerControl

    from runners.recipes.callbacks import PeakMemory, RunMonitor

    monitor = RunMonitor(tmp_path, PeakMemory(cuda=False))
    control = monitor.on_step_end(None, fake_state(1), TrainerControl())
    assert not (control.should_save or control.should_training_stop or monitor.stopped)
    (tmp_path / "STOP").touch()
    control = monitor.on_step_end(None, fake_state(2), TrainerControl())
    assert control.should_save and control.should_training_stop and monitor.stopped


def test_peak_memory_uses_cuda_max_allocated_on_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from runners.recipes.callbacks import PeakMemory

    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a, **k: 123456789)
    memory = PeakMemory(cuda=True)
    assert (memory.kind, memory.sample()) == ("cuda_max_allocated", 123456789)
    cpu = PeakMemory(cuda=False)
    assert cpu.kind == "cpu_rss" and cpu.sample() > 10 * 2**20


def test_precision_default_follows_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from runners.recipes.common import resolve_precision

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision(None, cuda=True) == "bf16-kahan"  # bf16 weights + Kahan AdamW
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # e.g. a T4
    assert resolve_precision(None, cuda=True) == "fp32"
