from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading

import pytest
import yaml
from launch_helpers import FAKE_RECIPE, GIB, cpu_devices, fake_gpus, no_estimate, spec

import planner
from runners.launch.launch import prepare_and_register
from runners.registry.store import Registry
from runners.rundir.decide import decide, decide_with_reference_fallback, gpu_ids_for_env, plan_request
from runners.rundir.prepare import prepare, write_command
from runners.rundir.reader import RunDir
from runners.rundir.spec import RunSpec, SpecError


def read_yaml(path):
    return yaml.safe_load(path.read_text())


def test_prepare_writes_the_four_files_for_cpu(tmp_path, tiny_model_dir):
    s = spec(model=str(tiny_model_dir), max_steps=3, hparams={"max_length": 64, "per_device_train_batch_size": 2})
    run = prepare_and_register(s, tmp_path, devices=cpu_devices())
    names = {p.name for p in run.path.iterdir()}
    assert {"spec.yaml", "accelerate.yaml", "command.sh", "command.json", "plan.json"} <= names
    assert RunSpec.load(run.spec_path) == s
    acc = read_yaml(run.accelerate_path)
    assert acc["distributed_type"] == "NO" and acc["use_cpu"] is True and acc["num_processes"] == 1
    plan = json.loads(run.plan_path.read_text())
    assert plan["decision"]["kind"] == "cpu" and plan["decision"]["precision"] == "fp32"
    # The plan is the planner's estimate for exactly this run.
    req = plan["request"]
    assert (req["method"], req["seq_len"], req["batch_size"], req["precision"]) == ("dpo", 64, 2, "fp32")
    expected = planner.estimate(
        planner.PlanRequest(model=planner.load_model(str(tiny_model_dir)), method="dpo", seq_len=64,
                            batch_size=2, precision="fp32", grad_ckpt=True)
    )
    assert plan["predicted_peak_bytes"] == expected.peak_bytes_per_gpu == plan["plan"]["peak_bytes_per_gpu"]
    assert plan["devices"]["gpus"] == []
    rec = Registry.for_runs_root(tmp_path).get(run.id)
    assert rec.status == "prepared" and rec.predicted_peak_bytes == expected.peak_bytes_per_gpu


def test_command_sh_and_command_json_say_the_same_thing(tmp_path):
    run = prepare(spec(num_processes=2, devices="cpu"), tmp_path, devices=cpu_devices(), estimate=no_estimate)
    argv = json.loads(run.command_json.read_text())["argv"]
    exec_line = [ln for ln in run.command_sh.read_text().splitlines() if ln.startswith("exec ")][0]
    assert shlex.split(exec_line)[1:] == argv + ["$@"]
    assert argv[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert argv[argv.index("--config_file") + 1] == str(run.accelerate_path)
    assert argv[argv.index("--num_processes") + 1] == "2"
    assert argv[argv.index("-m", 3) + 1] == "runners.recipes.dpo"
    assert argv[-2:] == ["--spec", str(run.spec_path)]
    # accelerate's MULTI_CPU would start one process: N CPU processes go through torch.distributed.run.
    acc = read_yaml(run.accelerate_path)
    assert (acc["distributed_type"], acc["use_cpu"], acc["num_processes"]) == ("MULTI_GPU", False, 2)
    assert 1024 <= acc["main_process_port"] < 65536 and "gpu_ids" not in acc
    assert json.loads(run.command_json.read_text())["env"]["CUDA_VISIBLE_DEVICES"] == ""
    assert "export CUDA_VISIBLE_DEVICES=''" in run.command_sh.read_text()
    assert subprocess.run(["bash", "-n", str(run.command_sh)]).returncode == 0


def test_command_quotes_paths_with_spaces(tmp_path):
    root = tmp_path / "my runs; $(x)"
    run = prepare(spec(), root, devices=cpu_devices(), estimate=no_estimate)
    exec_line = [ln for ln in run.command_sh.read_text().splitlines() if ln.startswith("exec ")][0]
    assert str(run.spec_path) in shlex.split(exec_line)


def test_one_fake_gpu_gives_single_process(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    run = prepare(spec(model="Qwen/Qwen2.5-0.5B"), tmp_path, devices=fake_gpus(1, 80))
    acc = read_yaml(run.accelerate_path)
    assert (acc["distributed_type"], acc["num_processes"], acc["use_cpu"], acc["gpu_ids"]) == ("NO", 1, False, "0")
    decision = json.loads(run.plan_path.read_text())["decision"]
    assert decision["kind"] == "single-gpu" and decision["fits"] is True and decision["precision"] == "bf16-kahan"
    # indices come from NVML (PCI bus order): CUDA must count the same way
    assert json.loads(run.command_json.read_text())["env"]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


def test_four_gpus_where_a_replica_fits_give_ddp(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    run = prepare(spec(model="Qwen/Qwen2.5-0.5B"), tmp_path, devices=fake_gpus(4, 80))
    acc = read_yaml(run.accelerate_path)
    assert (acc["distributed_type"], acc["num_processes"], acc["gpu_ids"]) == ("MULTI_GPU", 4, "all")
    plan = json.loads(run.plan_path.read_text())
    assert [t["zero"] for t in plan["decision"]["tried"]] == [0]
    assert plan["request"]["gpus"] == 4 and plan["request"]["gpu"] == "A100-80GB"
    assert "--num_processes" in run.command_sh.read_text() and " 4 " in run.command_sh.read_text()


def test_gpus_where_no_replica_fits_give_deepspeed_zero3(tmp_path):
    # Llama-3.1-8B full DPO, seq 1024, batch 1: the planner puts ZeRO-0/2 above 40 GiB, ZeRO-3 below.
    s = spec(hparams={"per_device_train_batch_size": 1}, sharding="deepspeed")
    run = prepare(s, tmp_path, devices=fake_gpus(4, 40, name="NVIDIA A100-SXM4-40GB"))
    acc = read_yaml(run.accelerate_path)
    assert acc["distributed_type"] == "DEEPSPEED" and acc["num_processes"] == 4
    assert acc["deepspeed_config"]["zero_stage"] == 3 and acc["deepspeed_config"]["zero3_init_flag"] is True
    tried = json.loads(run.plan_path.read_text())["decision"]["tried"]
    assert [(t["zero"], t["fits"]) for t in tried] == [(0, False), (2, False), (3, True)]
    for t in tried:  # each try is the planner's own number
        p = planner.estimate(planner.PlanRequest(model="meta-llama/Llama-3.1-8B", method="dpo", batch_size=1,
                                                 zero=t["zero"], gpus=4, gpu="A100-40GB"))
        assert t["peak_bytes_per_gpu"] == p.peak_bytes_per_gpu


def test_zero2_when_it_is_enough(tmp_path):
    s = spec(hparams={"per_device_train_batch_size": 1}, sharding="deepspeed")
    decision, _ = decide(s, fake_gpus(4, 80, name="NVIDIA H100 80GB HBM3"))
    assert (decision.kind, decision.zero, decision.fits) == ("deepspeed-zero2", 2, True)


def test_nothing_fits_falls_back_to_zero3_and_says_so(tmp_path):
    s = spec(model="meta-llama/Llama-3.1-70B", hparams={"per_device_train_batch_size": 1}, sharding="deepspeed")
    decision, _ = decide(s, fake_gpus(2, 24, name="NVIDIA A10G"))
    assert (decision.kind, decision.fits) == ("deepspeed-zero3", False)
    assert any("does not fit" in n for n in decision.notes)


def test_free_memory_not_total_decides(tmp_path):
    s = spec(model="Qwen/Qwen2.5-0.5B")
    busy = fake_gpus(2, 80, free_gib=1)
    decision, _ = decide(s, busy)
    assert decision.kind != "ddp" and decision.usable_bytes == 1 * GIB


def test_devices_cpu_overrides_gpus_and_selection_errors(tmp_path):
    decision, _ = decide(spec(devices="cpu"), fake_gpus(2, 80), estimate=no_estimate)
    assert decision.kind == "cpu" and decision.distributed_type == "NO"
    decision, _ = decide(spec(devices=[1]), fake_gpus(2, 80), estimate=no_estimate)
    assert decision.kind == "single-gpu" and decision.gpu_ids == [1]
    with pytest.raises(SpecError, match="devices: GPU index 5"):
        decide(spec(devices=[5]), fake_gpus(2, 80), estimate=no_estimate)
    with pytest.raises(SpecError, match="num_processes"):
        decide(spec(num_processes=3), fake_gpus(2, 80), estimate=no_estimate)


def test_no_estimate_still_gives_a_setup_and_says_why(tmp_path):
    decision, planned = decide(spec(model="nobody/unknown-model"), fake_gpus(2, 80))
    assert decision.kind == "ddp" and decision.fits is None and decision.predicted_peak_bytes is None
    assert any("no memory estimate" in n for n in decision.notes)
    assert planned["plan"] is None and planned["request"]["method"] == "dpo"


def test_gpu_ids_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu_ids_for_env([0, 1, 2]) == "all"
    assert gpu_ids_for_env([1, 3]) == "1,3"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")
    assert gpu_ids_for_env([1]) == "5"


def test_concurrent_prepares_get_distinct_dirs_and_rows(tmp_path):
    runs, errors = [], []

    def one():
        try:
            runs.append(prepare_and_register(spec(), tmp_path, devices=cpu_devices(), estimate=no_estimate))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({r.path for r in runs}) == 12
    assert {r.id for r in Registry.for_runs_root(tmp_path).list()} == {r.id for r in runs}


def test_command_sh_runs_by_hand_through_accelerate(tmp_path):
    """accelerate launch with our CPU accelerate.yaml, running the fake recipe as the script."""
    run = prepare(spec(max_steps=3), tmp_path, devices=cpu_devices(), estimate=no_estimate)
    argv = json.loads(run.command_json.read_text())["argv"]
    i = argv.index("-m", 3)
    write_command(run, argv[:i] + [str(FAKE_RECIPE)] + argv[i + 2 :])
    proc = subprocess.run(["bash", str(run.command_sh)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(run.result_path.read_text())["status"] == "succeeded"
    assert [m["step"] for m in run.metrics()] == [1, 2, 3]


def test_local_paths_become_absolute_hub_ids_stay(tmp_path, monkeypatch):
    (tmp_path / "models" / "m").mkdir(parents=True)
    (tmp_path / "prefs.jsonl").write_text("{}\n")
    monkeypatch.chdir(tmp_path)
    run = prepare(spec(model="models/m", dataset={"path": "prefs.jsonl"}), tmp_path / "runs",
                         devices=cpu_devices(), estimate=no_estimate)
    saved = run.spec()
    assert saved.model == str(tmp_path / "models" / "m") and saved.dataset.path == str(tmp_path / "prefs.jsonl")
    run = prepare(spec(dataset={"path": "org/hub-dataset"}), tmp_path / "runs", devices=cpu_devices(),
                         estimate=no_estimate)
    assert run.spec().model == "meta-llama/Llama-3.1-8B" and run.spec().dataset.path == "org/hub-dataset"


def test_default_precision_follows_bf16_support(tmp_path):
    decision, planned = decide(spec(model="Qwen/Qwen2.5-0.5B"), fake_gpus(1, 15, name="Tesla T4"))
    assert decision.precision == "fp32" and planned["request"]["precision"] == "fp32"
    decision, _ = decide(spec(model="Qwen/Qwen2.5-0.5B"), fake_gpus(1, 80))
    assert decision.precision == "bf16-kahan"
    decision, _ = decide(spec(model="Qwen/Qwen2.5-0.5B", precision="amp-bf16"), fake_gpus(1, 15, name="Tesla T4"))
    assert decision.precision == "amp-bf16"


def test_catalogue_alias_becomes_the_hub_id(tmp_path):
    run = prepare(spec(model="llama-3.1-8b"), tmp_path, devices=cpu_devices(), estimate=no_estimate)
    assert run.spec().model == planner.load_model("llama-3.1-8b").id == "meta-llama/Llama-3.1-8B"


def test_plan_request_carries_the_spec_setup():
    s = spec(lora={"r": 8, "quant": "nf4"}, gradient_checkpointing=False,
             hparams={"max_length": 512, "per_device_train_batch_size": 2})
    req = plan_request(s, precision="bf16", zero=2, gpus=4, gpu="A10G-24GB")
    assert req == {"model": "meta-llama/Llama-3.1-8B", "method": "dpo", "seq_len": 512, "batch_size": 2,
                   "precision": "bf16", "lora_rank": 8, "quant": "nf4", "grad_ckpt": False, "zero": 2,
                   "engine": "deepspeed", "gpus": 4,
                   "nodes": 1, "gpu": "A10G-24GB", "optimizer": "adamw", "precompute_ref": False,
                   "lora_dropout": 0.05}
    # TRL's defaults when hparams leave them out
    req = plan_request(spec(), precision="fp32", zero=0, gpus=1, gpu=None)
    assert (req["seq_len"], req["batch_size"], req["lora_rank"], "gpu" in req) == (1024, 8, None, False)
    # and the planner accepts it as is
    planned = planner.estimate(planner.PlanRequest(**plan_request(s, precision="bf16", zero=2, gpus=4,
                                                                         gpu="A10G-24GB")))
    assert planned.trainable_params < planned.params_total  # LoRA: adapters only


@pytest.mark.parametrize(
    ("devices", "over", "dist", "n"),
    [
        (cpu_devices, {}, "NO", 1),
        (cpu_devices, {"num_processes": 2}, "MULTI_GPU", 2),
        (lambda: fake_gpus(1, 80), {"model": "Qwen/Qwen2.5-0.5B"}, "NO", 1),
        (lambda: fake_gpus(4, 80), {"model": "Qwen/Qwen2.5-0.5B"}, "MULTI_GPU", 4),
        (lambda: fake_gpus(4, 80, name="NVIDIA H100 80GB HBM3"),
         {"hparams": {"per_device_train_batch_size": 1}, "sharding": "deepspeed"}, "DEEPSPEED", 4),
        (lambda: fake_gpus(4, 40, name="NVIDIA A100-SXM4-40GB"),
         {"hparams": {"per_device_train_batch_size": 1}, "sharding": "deepspeed"}, "DEEPSPEED", 4),
        (lambda: fake_gpus(4, 40, name="NVIDIA A100-SXM4-40GB"),
         {"hparams": {"per_device_train_batch_size": 1}, "sharding": "fsdp"}, "FSDP", 4),
        (lambda: fake_gpus(2, 80), {"model": "Qwen/Qwen2.5-0.5B", "sharding": "fsdp", "zero_stage": 2}, "FSDP", 2),
    ],
)
def test_accelerate_reads_every_generated_config(tmp_path, devices, over, dist, n):
    """accelerate rejects unknown keys: each setup's accelerate.yaml must load as a valid config."""
    from accelerate.commands.config.config_args import load_config_from_file

    run = prepare(spec(**over), tmp_path, devices=devices())
    cfg = load_config_from_file(str(run.accelerate_path))
    assert (str(cfg.distributed_type).split(".")[-1], cfg.num_processes) == (dist, n)


def test_lora_dropout_on_a_moe_model_is_refused_before_a_run_exists(tmp_path):
    import json

    import planner
    from runners.rundir.prepare import prepare
    from runners.rundir.spec import RunSpec, SpecError

    model_dir = tmp_path / "mixtral"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(planner.load_model("mistralai/Mixtral-8x7B-v0.1").config))
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n')
    spec = RunSpec.parse({"method": "dpo", "model": str(model_dir), "dataset": {"path": str(data)},
                          "lora": {"r": 8, "dropout": 0.05}})
    runs = tmp_path / "runs"
    with pytest.raises(SpecError, match="lora.dropout"):
        prepare(spec, runs)
    assert not runs.exists() or not any(p.is_dir() for p in runs.iterdir())


def test_plan_request_carries_what_changes_the_copies_and_states():
    """Every spec knob the recipe reads that changes memory reaches the planner."""
    s = spec(method="grpo", reward={"function": "runners.recipes.rewards:marker_reward"},
             hparams={"beta": 0.04, "num_generations": 4, "max_completion_length": 64, "optim": "adamw_8bit"})
    req = plan_request(s, precision="bf16", zero=0, gpus=1, gpu=None)
    assert (req["optimizer"], req["beta"], req["num_generations"], req["completion_len"], req["reward_model"]) == (
        "adamw-8bit", 0.04, 4, 64, "rule")
    roles = [c["role"] for c in planner.estimate(planner.PlanRequest(**req), with_min_gpus=False).copies]
    assert roles == ["policy", "reference"]  # beta > 0 keeps the reference, a reward function needs no model
    dpo = plan_request(spec(hparams={"precompute_ref_log_probs": True}), precision="bf16", zero=0, gpus=1,
                              gpu=None)
    assert [c["role"] for c in planner.estimate(planner.PlanRequest(**dpo), with_min_gpus=False).copies] == ["policy"]


@pytest.mark.parametrize(
    ("hparams", "message"),
    [
        ({"max_length": [1, 2]}, "hparams.max_length: expected an integer"),
        ({"max_length": "abc"}, "hparams.max_length: expected an integer"),
        ({"max_length": 0}, "hparams.max_length: expected an integer >= 1"),
        ({"per_device_train_batch_size": 0}, "hparams.per_device_train_batch_size: expected an integer >= 1"),
        ({"per_device_train_batch_size": -4}, "hparams.per_device_train_batch_size"),
        ({"per_device_train_batch_size": 2.5}, "hparams.per_device_train_batch_size"),
        ({"precompute_ref_log_probs": "maybe"}, "hparams.precompute_ref_log_probs: expected true or false"),
    ],
)
def test_plan_request_rejects_malformed_hparams_naming_the_key(hparams, message):
    with pytest.raises(SpecError, match=message.replace("[", r"\[")):
        plan_request(spec(hparams=hparams), precision="bf16", zero=0, gpus=1, gpu=None)


def test_plan_request_reads_valid_hparams_strictly():
    req = plan_request(spec(hparams={"max_length": "256", "per_device_train_batch_size": 3,
                                            "precompute_ref_log_probs": "false"}),
                              precision="bf16", zero=0, gpus=1, gpu=None)
    assert (req["seq_len"], req["batch_size"], req["precompute_ref"]) == (256, 3, False)
    with pytest.raises(SpecError, match="hparams.num_generations"):
        plan_request(spec(method="grpo", reward={"function": "runners.recipes.rewards:marker_reward"},
                                 hparams={"num_generations": 0}), precision="bf16", zero=0, gpus=1,
                            gpu=None)


def test_prepare_with_a_bad_hparam_is_a_spec_error_and_creates_nothing(tmp_path):
    with pytest.raises(SpecError, match="hparams.max_length"):
        prepare(spec(hparams={"max_length": [1, 2]}), tmp_path / "runs", devices=cpu_devices())
    assert not (tmp_path / "runs").exists() or not any(p.is_dir() for p in (tmp_path / "runs").iterdir())


def test_tilde_paths_are_expanded(tmp_path, monkeypatch):
    (tmp_path / "models" / "m").mkdir(parents=True)
    (tmp_path / "prefs.jsonl").write_text("{}\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    run = prepare(spec(model="~/models/m", dataset={"path": "~/prefs.jsonl"}), tmp_path / "runs",
                         devices=cpu_devices(), estimate=no_estimate)
    saved = run.spec()
    assert saved.model == str(tmp_path / "models" / "m") and saved.dataset.path == str(tmp_path / "prefs.jsonl")


def test_lora_alpha_defaults_to_twice_the_rank_and_survives_the_spec_file(tmp_path):
    s = spec(lora={"r": 8})
    assert s.lora.alpha == 16
    assert spec(lora={"r": 8, "alpha": 4}).lora.alpha == 4
    s.dump(tmp_path / "spec.yaml")
    assert RunSpec.load(tmp_path / "spec.yaml").lora.alpha == 16
    with pytest.raises(SpecError):
        spec(lora={"r": 8, "alpha": 0})


# --- sharding: DeepSpeed ZeRO or FSDP2 ----------------------------------------------------------------


@pytest.mark.parametrize(("installed", "engine", "kind"),
                         [(True, "deepspeed", "deepspeed-zero3"), (False, "fsdp", "fsdp-shard-grad-op")])
def test_auto_sharding_uses_deepspeed_only_where_it_is_installed(monkeypatch, installed, engine, kind):
    # Llama-3.1-8B SFT, batch 1, 4 x 40 GiB: DeepSpeed's fp32 master weights need ZeRO-3 (33.2 GiB),
    # FSDP2's bf16 states (+ bf16-kahan's buffer) fit at stage 2 (32.1 GiB)
    monkeypatch.setattr("runners.rundir.decide.deepspeed_installed", lambda: installed)
    s = spec(method="sft", hparams={"per_device_train_batch_size": 1})
    decision, _ = decide(s, fake_gpus(4, 40, name="NVIDIA A100-SXM4-40GB"))
    assert (decision.engine, decision.kind, decision.fits) == (engine, kind, True)
    # the figures docs/runners.md quotes
    assert round(decision.predicted_peak_bytes / GIB, 1) == {"deepspeed": 33.2, "fsdp": 32.1}[engine]
    assert decision.distributed_type == {"deepspeed": "DEEPSPEED", "fsdp": "FSDP"}[engine]
    assert not any("needs DeepSpeed" in n for n in decision.notes)  # installed, or not asked for


def test_explicit_deepspeed_without_deepspeed_installed_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr("runners.rundir.decide.deepspeed_installed", lambda: False)
    s = spec(hparams={"per_device_train_batch_size": 1}, sharding="deepspeed")
    decision, _ = decide(s, fake_gpus(4, 40, name="NVIDIA A100-SXM4-40GB"))
    assert decision.kind.startswith("deepspeed-zero")
    assert any("pip install 'alignplan[deepspeed]'" in n and "sharding: fsdp" in n for n in decision.notes)


def test_fsdp_plans_without_deepspeeds_fp32_master_weights(tmp_path):
    """FSDP2 keeps bf16 weights and bf16 AdamW states; DeepSpeed's bf16 mode adds fp32 master weights
    and moments. The tries are the planner's own numbers with the matching engine."""
    s = spec(method="sft", hparams={"per_device_train_batch_size": 1}, sharding="fsdp")
    run = prepare(s, tmp_path, devices=fake_gpus(4, 40, name="NVIDIA A100-SXM4-40GB"))
    doc = json.loads(run.plan_path.read_text())
    decision, tried = doc["decision"], doc["decision"]["tried"]
    assert doc["request"]["engine"] == "fsdp" and decision["engine"] == "fsdp"
    for t in tried:
        engine = "fsdp" if t["zero"] else "deepspeed"
        p = planner.estimate(planner.PlanRequest(model="meta-llama/Llama-3.1-8B", method="sft", batch_size=1,
                                                 zero=t["zero"], gpus=4, gpu="A100-40GB", engine=engine))
        assert t["peak_bytes_per_gpu"] == p.peak_bytes_per_gpu
    ds = planner.estimate(planner.PlanRequest(model="meta-llama/Llama-3.1-8B", method="sft", batch_size=1,
                                              zero=2, gpus=4, gpu="A100-40GB"))
    assert (decision["kind"], decision["zero"], decision["fits"]) == ("fsdp-shard-grad-op", 2, True)
    assert decision["predicted_peak_bytes"] < 40 * GIB < ds.peak_bytes_per_gpu


def test_when_nothing_fits_the_smallest_peak_is_chosen(tmp_path):
    """FSDP2 DPO: TRL's one-unit reference makes stage 3 gather it whole (twice for a moment), so
    stage 2 has the smaller peak; nothing fits 4 x 40 GiB, and the smaller one is flagged."""
    s = spec(hparams={"per_device_train_batch_size": 1}, sharding="fsdp")
    decision, planned = decide(s, fake_gpus(4, 40, name="NVIDIA A100-SXM4-40GB"))
    peaks = {t["zero"]: t["peak_bytes_per_gpu"] for t in decision.tried}
    assert peaks[3] > peaks[2] > 40 * GIB
    assert (round(peaks[2] / GIB, 1), round(peaks[3] / GIB, 1)) == (48.0, 52.6)  # as docs/runners.md says
    assert (decision.kind, decision.zero, decision.fits) == ("fsdp-shard-grad-op", 2, False)
    assert decision.predicted_peak_bytes == peaks[2] == planned["plan"]["peak_bytes_per_gpu"]
    assert planned["request"]["zero"] == 2


def test_fsdp2_accelerate_config_is_what_accelerate_hands_the_recipe(tmp_path, monkeypatch):
    """accelerate's launcher turns accelerate.yaml into FSDP_* variables, and its FSDP plugin reads them:
    check the plugin that the recipe's Trainer will get."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    s = spec(hparams={"per_device_train_batch_size": 1}, sharding="fsdp", zero_stage=3)
    run = prepare(s, tmp_path, devices=fake_gpus(4, 80, name="NVIDIA H100 80GB HBM3"))
    assert "zero_stage 3 asks" in json.loads(run.plan_path.read_text())["decision"]["reason"]
    argv = json.loads(run.command_json.read_text())["argv"]
    launch_args = argv[argv.index("accelerate.commands.launch") + 1:]
    args = launch_command_parser().parse_args(launch_args)
    args, *_ = _validate_launch_command(args)
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    for key in [k for k in os.environ if k.startswith(("FSDP_", "ACCELERATE_"))]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith(("FSDP_", "ACCELERATE_USE_FSDP")):
            monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.activation_checkpointing is True  # the spec's gradient_checkpointing, given to FSDP
    assert "SHARDED_STATE_DICT" in str(plugin.state_dict_type)
    assert plugin.cpu_ram_efficient_loading is False  # DPO loads a reference model too
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"  # one shard group per decoder layer


def test_forced_stage_skips_the_search_and_single_model_methods_load_once(tmp_path):
    s = spec(model="Qwen/Qwen2.5-0.5B", method="sft", sharding="fsdp", zero_stage=2)
    run = prepare(s, tmp_path, devices=fake_gpus(2, 80))
    doc = json.loads(run.plan_path.read_text())
    assert [t["zero"] for t in doc["decision"]["tried"]] == [2]  # DDP would fit; the spec asked for 2
    acc = read_yaml(run.accelerate_path)
    fsdp = acc["fsdp_config"]
    assert (fsdp["fsdp_version"], fsdp["fsdp_reshard_after_forward"], fsdp["fsdp_cpu_ram_efficient_loading"]) == (
        2, False, True)


@pytest.mark.parametrize(
    ("over", "devices", "message"),
    [
        ({"zero_stage": 3}, cpu_devices, "zero_stage: 3 shards over GPUs, and this run is on the CPU"),
        ({"zero_stage": 2, "num_processes": 2, "devices": "cpu"}, cpu_devices, "zero_stage: 2 shards over GPUs"),
        ({"zero_stage": 3}, lambda: fake_gpus(1, 80), "zero_stage: 3 shards the model over processes"),
        ({"zero_stage": 3, "sharding": "fsdp", "lora": {"r": 8, "quant": "nf4"}}, lambda: fake_gpus(2, 80),
         "lora.quant: a nf4 base model cannot be sharded with FSDP2 stage 3"),
        ({"zero_stage": 3, "sharding": "deepspeed", "lora": {"r": 8, "quant": "nf4"}}, lambda: fake_gpus(2, 80),
         "lora.quant: a nf4 base model cannot be sharded with ZeRO-3"),
    ],
)
def test_sharding_requests_that_cannot_run_are_refused_before_a_run_exists(tmp_path, over, devices, message):
    runs = tmp_path / "runs"
    with pytest.raises(SpecError, match=message):
        prepare(spec(**over), runs, devices=devices())
    assert not runs.exists() or not any(p.is_dir() for p in runs.iterdir())


def test_quantized_lora_with_zero2_deepspeed_is_accepted():
    s = spec(zero_stage=2, sharding="deepspeed", lora={"r": 8, "quant": "nf4"})
    decision, _ = decide(s, fake_gpus(2, 80))
    assert (decision.kind, decision.zero) == ("deepspeed-zero2", 2)


def test_sharding_fields_are_validated():
    with pytest.raises(SpecError, match="sharding"):
        spec(sharding="megatron")
    with pytest.raises(SpecError, match="zero_stage"):
        spec(zero_stage=1)


@pytest.mark.parametrize(("sharding", "stages"), [("fsdp", [0]), ("deepspeed", [0, 2])])
def test_quantized_lora_searches_only_the_stages_that_keep_weights_whole(sharding, stages):
    # QLoRA Llama-3.1-8B DPO does not fit 2 x 4 GiB at any stage: the search ends at the last stage
    # that keeps the 4-bit weights whole, flagged, instead of refusing the run.
    s = spec(lora={"r": 8, "quant": "nf4"}, sharding=sharding)
    decision, _ = decide(s, fake_gpus(2, 4))
    assert [t["zero"] for t in decision.tried] == stages
    assert (decision.zero, decision.fits) == (stages[-1], False)


@pytest.mark.parametrize("held", [
    {"total": 10}, {"total": "10", "this_process": 5}, {"total": None, "this_process": 5},
    {"total": 0, "this_process": 0}, {"total": 10, "this_process": True}, "10 of 20", None,
])
def test_malformed_run_files_read_as_absent(tmp_path, held):
    run = RunDir(tmp_path)
    (tmp_path / "result.json").write_text(json.dumps({"status": "succeeded", "parameters_held": held}))
    (tmp_path / "plan.json").write_text(json.dumps({"decision": "ddp"}))
    assert run.parameters_held() is None and run.decision() == {}
    (tmp_path / "result.json").write_text(json.dumps(
        {"parameters_held": {"this_process": 5, "total": 10, "sharded": 1}}))
    assert run.parameters_held() == {"this_process": 5, "total": 10, "sharded": True}


@pytest.mark.parametrize(("devices", "why"), [(cpu_devices, "the run is on the CPU"),
                                              (lambda: fake_gpus(1, 80), "the run has one GPU")])
def test_a_sharding_choice_that_cannot_apply_is_noted(devices, why):
    decision, _ = decide(spec(sharding="fsdp"), devices(), estimate=no_estimate)
    assert f"sharding: fsdp is not used, since {why}: it shards over 2 or more GPUs" in decision.notes
    decision, _ = decide(spec(), devices(), estimate=no_estimate)  # auto: nothing to say
    assert not any(n.startswith("sharding:") for n in decision.notes)


# --- the reference when memory is tight ------------------------------------------------------------


def h100() -> object:
    return fake_gpus(1, 80, name="NVIDIA H100 80GB HBM3")


def test_a_reference_that_does_not_fit_is_precomputed(tmp_path):
    # Llama-3.1-8B full DPO on one H100 in pure bf16: 82.5 GiB with the reference in memory, 66.8 GiB
    # without it (under the default bf16-kahan, 98.2 and 81.8: neither fits)
    run = prepare(spec(precision="bf16"), tmp_path, devices=h100())
    written = RunSpec.load(run.spec_path)
    assert written.hparams == {"precompute_ref_log_probs": True}
    doc = json.loads(run.plan_path.read_text())
    assert doc["request"]["precompute_ref"] is True and doc["decision"]["fits"] is True
    assert [c["role"] for c in doc["plan"]["copies"]] == ["policy"]
    note = next(n for n in doc["decision"]["notes"] if "precompute_ref_log_probs set to true" in n)
    assert "82.5 GiB" in note and "66.8 GiB" in note and "false in hparams" in note
    with_ref = planner.estimate(planner.PlanRequest(model="meta-llama/Llama-3.1-8B", method="dpo", gpu="H100-80GB",
                                                    precision="bf16"))
    assert round(with_ref.peak_bytes_per_gpu / GIB, 1) == 82.5


@pytest.mark.parametrize("over", [
    {"hparams": {"precompute_ref_log_probs": False}},  # the user's choice stands
    {"lora": {"r": 16}},  # no reference copy to drop
    {"method": "sft"},  # no reference at all
])
def test_the_reference_is_left_alone_where_it_should_be(over):
    s = spec(**over)
    out, decision, _ = decide_with_reference_fallback(s, h100())
    assert out == s and not any("precompute_ref_log_probs" in n for n in decision.notes)


def test_precomputing_is_not_taken_when_it_does_not_make_the_run_fit():
    s = spec()
    out, decision, _ = decide_with_reference_fallback(s, fake_gpus(1, 16, name="NVIDIA T4"))
    assert out == s and decision.fits is False  # 66.8 GiB would not fit 16 GiB either: keep the plain run
