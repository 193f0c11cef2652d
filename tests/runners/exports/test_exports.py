"""The exports: each file passes the engine's own loader/parser/validation, run here on the CPU.
accelerate's config loader, shellcheck, Hydra + verl 0.9.1's config tree and validate_config,
verl's RLHFDataset, OpenRLHF 0.11.2's own __main__ parser; a slow test runs two accelerate
"nodes" on 127.0.0.1 through a DPO step."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runners.exports import to_openrlhf
from runners.exports.export import write_export
from runners.rundir.spec import RunSpec

REPO = Path(__file__).resolve().parents[3]


def make_spec(tiny_model_dir, demo_data, method, **extra):
    data = demo_data["prompts"] if method in ("ppo", "grpo", "rloo") else demo_data["preference"]
    return RunSpec.parse({"method": method, "model": str(tiny_model_dir), "dataset": {"path": str(data)},
                          "hparams": {"max_length": 256, "per_device_train_batch_size": 2}, **extra})


def statuses(result):
    return {k: v["status"] for k, v in result.checks.items()}


# --- accelerate --------------------------------------------------------------------------------------


def test_accelerate_export_loads_in_accelerate_and_passes_shellcheck(tmp_path, tiny_model_dir, demo_data):
    spec = make_spec(tiny_model_dir, demo_data, "dpo")
    spec.dump(tmp_path / "spec.yaml")
    r = write_export(tmp_path, spec, "accelerate", nodes=2, gpus_per_node=8)
    assert statuses(r)["accelerate_config_loader"] == "passed", r.checks
    assert statuses(r)["shellcheck"] == "passed", r.checks
    cfg = yaml.safe_load((r.folder / "accelerate.yaml").read_text())
    assert cfg["num_machines"] == 2 and cfg["num_processes"] == 16 and cfg["rdzv_backend"] == "static"
    script = (r.folder / "launch_node.sh").read_text()
    assert '--machine_rank "$rank"' in script and 'rank="${SLURM_NODEID:-' in script
    sbatch = (r.folder / "job.sbatch").read_text()
    assert "srun --nodes=2 --ntasks-per-node=1 bash" in sbatch and "#SBATCH --nodes=2" in sbatch
    assert json.loads((r.folder / "checks.json").read_text())["shellcheck"]["status"] == "passed"


def test_accelerate_loader_rejects_a_misspelt_key(tmp_path, tiny_model_dir, demo_data):
    from runners.exports.to_accelerate import check_yaml_loads

    spec = make_spec(tiny_model_dir, demo_data, "sft")
    r = write_export(tmp_path, spec, "accelerate", nodes=2, gpus_per_node=8)
    cfg = yaml.safe_load((r.folder / "accelerate.yaml").read_text())
    cfg["num_machine"] = cfg.pop("num_machines")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises((ValueError, TypeError)):
        check_yaml_loads(bad)


def test_shellcheck_catches_an_unquoted_rank(tmp_path):
    from runners.exports.to_accelerate import check_shellcheck

    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is needed here: apt-get install -y shellcheck")
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nx=$1\nls $x\n")
    with pytest.raises(ValueError, match="SC2086"):
        check_shellcheck(bad)


@pytest.mark.slow
def test_two_nodes_on_localhost_run_a_dpo_step(tmp_path, tiny_model_dir, demo_data):
    """Two launch_node.sh runs (SLURM_NODEID 0 and 1) on 127.0.0.1, CPU + gloo, one DPO step together.
    The exported YAML is kept but switched to CPU processes (MULTI_GPU launcher, CUDA hidden)."""
    from runners.rundir.prepare import prepare

    spec = RunSpec.parse({"method": "dpo", "model": str(tiny_model_dir),
                          "dataset": {"path": str(demo_data["preference"])}, "devices": "cpu", "max_steps": 1,
                          "hparams": {"max_length": 64, "per_device_train_batch_size": 1}})
    run = prepare(spec, tmp_path / "runs")
    r = write_export(run.path, spec, "accelerate", nodes=2, gpus_per_node=1, run_checks=False)
    cfg = yaml.safe_load((r.folder / "accelerate.yaml").read_text())
    cfg.update(distributed_type="MULTI_GPU", mixed_precision="no", num_processes=2)
    cfg.pop("deepspeed_config", None)
    cfg.pop("fsdp_config", None)
    cpu_cfg = tmp_path / "cpu.yaml"
    cpu_cfg.write_text(yaml.safe_dump(cfg))
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ALIGNPLAN_ACCELERATE_CONFIG": str(cpu_cfg), "MAIN_PROCESS_IP": "127.0.0.1",
           "MAIN_PROCESS_PORT": str(port), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    procs = [subprocess.Popen(["bash", str(r.folder / "launch_node.sh")], env={**env, "SLURM_NODEID": str(k)},
                              stdout=open(tmp_path / f"node{k}.log", "w"), stderr=subprocess.STDOUT)
             for k in (0, 1)]
    codes = [p.wait(timeout=600) for p in procs]
    logs = [(tmp_path / f"node{k}.log").read_text()[-3000:] for k in (0, 1)]
    assert codes == [0, 0], logs
    result = json.loads((run.path / "result.json").read_text())
    assert result["status"] == "succeeded"
    rows = [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines() if x.strip()]
    assert any(row.get("step") == 1 for row in rows)


# --- verl --------------------------------------------------------------------------------------------


def test_verl_export_composes_with_verls_config_tree(tmp_path, tiny_model_dir, demo_data):
    spec = make_spec(tiny_model_dir, demo_data, "ppo", reward={"model": str(tiny_model_dir)})
    r = write_export(tmp_path, spec, "verl", nodes=2, gpus_per_node=8)
    from runners.exports.to_verl import compose

    cfg = compose(r.folder)
    assert cfg.trainer.nnodes == 2 and cfg.trainer.n_gpus_per_node == 8
    assert cfg.algorithm.adv_estimator == "gae" and cfg.algorithm.use_kl_in_reward
    assert cfg.reward.reward_model.enable and cfg.reward.reward_model.model_path == str(tiny_model_dir)
    assert cfg.actor_rollout_ref.rollout.tensor_model_parallel_size == r.placement["roles"][1]["tensor_parallel"]
    raw = yaml.safe_load((r.folder / "alignplan_ppo.yaml").read_text())
    assert "reward_model" not in raw and "custom_reward_function" not in raw  # verl 0.9 ignores those
    n = cfg.actor_rollout_ref.rollout.n
    assert (cfg.data.train_batch_size * n) % 16 == 0
    assert statuses(r)["hydra_compose_with_verl_config"] == "passed"
    assert statuses(r)["shellcheck"] == "passed", r.checks


def test_verl_export_passes_verls_validate_config_and_dataset(tmp_path, tiny_model_dir, demo_data):
    pytest.importorskip("ray", reason="verl imports ray at package import: pip install ray (dev extras)")
    for method, extra in (("ppo", {"reward": {"model": str(tiny_model_dir)}}),
                          ("grpo", {"reward": {"function": "builtin:length"}})):
        spec = make_spec(tiny_model_dir, demo_data, method, **extra)
        r = write_export(tmp_path / method, spec, "verl", nodes=2, gpus_per_node=8)
        assert statuses(r)["verl_validate_config"] == "passed", r.checks["verl_validate_config"]
        assert statuses(r)["verl_rlhf_dataset_loads_parquet"] == "passed", r.checks


def test_verl_validate_config_rejects_batch_sizes_we_would_not_write(tmp_path, tiny_model_dir, demo_data):
    pytest.importorskip("ray", reason="verl imports ray at package import")
    from runners.exports.to_verl import check_validate

    spec = make_spec(tiny_model_dir, demo_data, "grpo", reward={"function": "builtin:length"})
    r = write_export(tmp_path, spec, "verl", nodes=2, gpus_per_node=8, run_checks=False)
    path = r.folder / "alignplan_ppo.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["data"]["train_batch_size"] = 3
    cfg["actor_rollout_ref"]["rollout"]["n"] = 1
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises((AssertionError, ValueError)):
        check_validate(r.folder)


# --- OpenRLHF ----------------------------------------------------------------------------------------


def test_openrlhf_ppo_args_parse_with_openrlhfs_own_parser(tmp_path, tiny_model_dir, demo_data):
    spec = make_spec(tiny_model_dir, demo_data, "ppo", reward={"model": str(tiny_model_dir)})
    r = write_export(tmp_path, spec, "openrlhf", nodes=2, gpus_per_node=8)
    assert statuses(r)["openrlhf_parser_and_placement"] == "passed", r.checks
    assert statuses(r)["shellcheck"] == "passed", r.checks
    argv = json.loads((r.folder / "args.json").read_text())["argv"]
    assert all(not a.startswith("--") or "." in a for a in argv)  # dotted flags only (>= 0.10.2)
    ns = to_openrlhf.parse_with_openrlhf("openrlhf.cli.train_ppo_ray", argv)
    rollout = r.placement["roles"][1]
    assert ns.vllm.num_engines * ns.vllm.tensor_parallel_size == 16 == rollout["gpus"]
    assert ns.train.colocate_all and ns.critic.model_name_or_path == str(tiny_model_dir)


def test_openrlhf_dpo_args_parse(tmp_path, tiny_model_dir, demo_data):
    spec = make_spec(tiny_model_dir, demo_data, "dpo")
    r = write_export(tmp_path, spec, "openrlhf", nodes=2, gpus_per_node=8)
    assert statuses(r) == {"openrlhf_parser_and_placement": "passed", "shellcheck": "passed"}, r.checks


def test_openrlhfs_parser_rejects_an_old_flag():
    with pytest.raises(ValueError, match="rejected"):
        to_openrlhf.parse_with_openrlhf("openrlhf.cli.train_ppo_ray", ["--pretrain", "x"])


def test_our_placement_checks_reject_what_openrlhf_train_rejects(tmp_path, tiny_model_dir, demo_data):
    spec = make_spec(tiny_model_dir, demo_data, "ppo", reward={"model": str(tiny_model_dir)})
    r = write_export(tmp_path, spec, "openrlhf", nodes=2, gpus_per_node=8, run_checks=False)
    argv = json.loads((r.folder / "args.json").read_text())["argv"]

    def with_(flag, value):
        out = list(argv)
        out[out.index(flag) + 1] = value
        return out

    bad_engines = to_openrlhf.parse_with_openrlhf("openrlhf.cli.train_ppo_ray", with_("--vllm.num_engines", "3"))
    assert any("vllm.num_engines" in e for e in to_openrlhf.placement_errors(bad_engines))
    bad_ref = to_openrlhf.parse_with_openrlhf("openrlhf.cli.train_ppo_ray", with_("--ref.num_gpus_per_node", "4"))
    assert any("actor and reference" in e for e in to_openrlhf.placement_errors(bad_ref))
    ok = to_openrlhf.parse_with_openrlhf("openrlhf.cli.train_ppo_ray", argv)
    assert to_openrlhf.placement_errors(ok) == []


def test_a_cli_without_its_main_block_fails_loudly(monkeypatch, tmp_path):
    fake = tmp_path / "fake_cli.py"
    fake.write_text("def train(args):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RuntimeError, match="CLI changed"):
        to_openrlhf.parse_with_openrlhf("fake_cli", [])


# --- reward functions handed to the engines; verl's reward engine; host RAM --------------------------


def _answer_data(tmp_path):
    path = tmp_path / "math.jsonl"
    rows = [{"prompt": f"What is {i} + {i}?", "solution": str(2 * i)} for i in range(1, 9)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _import_file(path, name):
    import importlib.util

    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_openrlhf_gets_the_reward_function_as_its_remote_url_file(tmp_path, tiny_model_dir):
    reward = {"function": "builtin:exact_match", "params": {"column": "solution"}}
    spec = RunSpec.parse({"method": "grpo", "model": str(tiny_model_dir), "dataset": {"path": str(_answer_data(tmp_path))},
                          "hparams": {"max_length": 256, "per_device_train_batch_size": 2}, "reward": reward})
    result = write_export(tmp_path / "run", spec, "openrlhf", nodes=1, gpus_per_node=8)
    assert statuses(result)["openrlhf_parser_and_placement"] == "passed", result.checks
    argv = json.loads((result.folder / "args.json").read_text())["argv"]
    assert argv[argv.index("--reward.remote_url") + 1] == "reward_fn.py"
    assert argv[argv.index("--data.label_key") + 1] == "label"
    rows = [json.loads(line) for line in (result.folder / "prompts.jsonl").read_text().splitlines()]
    assert rows[0]["label"] == "2" and len(rows) == 8
    settings = json.loads((result.folder / "reward.json").read_text())
    assert settings["label_column"] == "solution" and "<|eos|>" in settings["strip_tokens"]
    fn = _import_file(result.folder / "reward_fn.py", "openrlhf_reward_fn").reward_func
    prompt = "What is 3 + 3?"
    # a query is the decoded prompt + response with its end-of-turn token, one query per call
    assert fn([prompt + " 6<|eos|>"], [prompt], ["6"]) == {"rewards": 1.0, "scores": 1.0, "extra_logs": {}}
    assert fn([prompt + " 7<|eos|>"], [prompt], ["6"])["rewards"] == 0.0


def test_verl_reward_function_adapter_passes_params_and_the_answer_column(tmp_path, tiny_model_dir):
    reward = {"function": "builtin:exact_match", "params": {"column": "solution"}}
    spec = RunSpec.parse({"method": "grpo", "model": str(tiny_model_dir), "dataset": {"path": str(_answer_data(tmp_path))},
                          "hparams": {"max_length": 256, "per_device_train_batch_size": 2}, "reward": reward})
    result = write_export(tmp_path / "run", spec, "verl", nodes=1, gpus_per_node=8, run_checks=False)
    import pyarrow.parquet as pq

    table = pq.read_table(result.folder / "train.parquet").to_pylist()
    assert table[1]["reward_model"]["ground_truth"] == "4"  # the column the reward's params name
    cfg = yaml.safe_load((result.folder / "alignplan_ppo.yaml").read_text())
    assert cfg["reward"]["custom_reward_function"]["path"].endswith("reward_fn.py")
    fn = _import_file(result.folder / "reward_fn.py", "verl_reward_fn").compute_score
    assert fn("alignplan", " 4", "4", {"prompt_text": "What is 2 + 2?"}) == 1.0
    assert fn("alignplan", " 5", "4", {"prompt_text": "What is 2 + 2?"}) == 0.0


def test_verl_reward_model_engine_takes_the_placements_share_and_tp(tmp_path, tiny_model_dir, demo_data):
    spec = make_spec(tiny_model_dir, demo_data, "ppo", reward={"model": str(tiny_model_dir)})
    result = write_export(tmp_path / "run", spec, "verl", nodes=1, gpus_per_node=8, run_checks=False)
    role = next(r for r in result.placement["roles"] if r["role"] == "reward")
    cfg = yaml.safe_load((result.folder / "alignplan_ppo.yaml").read_text())
    engine = cfg["reward"]["reward_model"]["rollout"]
    assert engine["gpu_memory_utilization"] == role["detail"]["gpu_memory_utilization"] <= 0.5
    assert engine["tensor_model_parallel_size"] == role["tensor_parallel"]
    assert "reward_scoring" in result.placement["phases"]


def test_export_checks_host_ram_per_node(tmp_path, capsys, runs_dir, demo_data):
    from tests.runners.launch_helpers import run_cli

    args = ("run", "--method", "dpo", "--model", "meta-llama/Llama-3.1-70B", "--data", str(demo_data["preference"]),
            "--hparam", "max_length=2048", "--hparam", "per_device_train_batch_size=1",
            "--export", "accelerate", "--nodes", "2", "--gpus", "8", "--json")
    code, out, _ = run_cli(capsys, *args)
    assert code == 0, out
    folder = Path(json.loads(out)["folder"])
    roomy = json.loads((folder / "placement.json").read_text())
    assert roomy["fits"] and roomy["offload"] == "optimizer" and roomy["host_fits"] is True
    need = roomy["host_bytes_per_node"] / 2**30
    code, out, _ = run_cli(capsys, *args, "--host-ram-gib", f"{need - 1:.0f}")
    tight = json.loads((Path(json.loads(out)["folder"]) / "placement.json").read_text())
    assert not tight["fits"] and not tight["host_fits"]
    assert any("host RAM" in n for n in json.loads(out)["notes"])
