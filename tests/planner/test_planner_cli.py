"""`alignplan plan|models|gpus`: tables, JSON schema, one-line errors with exit 2."""

import json
import subprocess
import sys

import pytest

from alignplan.cli import main


def run(*argv):
    return subprocess.run([sys.executable, "-m", "alignplan", *argv], capture_output=True, text=True)


def test_plan_json_schema(capsys):
    assert main(["plan", "--model", "llama-3.1-8b", "--method", "dpo", "--gpu", "H100-80GB", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["params_total"] == 8_030_261_248
    assert isinstance(d["peak_bytes_per_gpu"], int) and d["peak_bytes_per_gpu"] > 0
    assert set(d["components"]) == {"weights", "gradients", "optimizer_states", "activations", "logits", "kv_cache", "overhead"}
    assert sum(d["components"].values()) == d["peak_bytes_per_gpu"]
    assert [c["role"] for c in d["copies"]] == ["policy", "reference"]
    assert {p["name"] for p in d["phases"]} == {"scoring", "forward_backward", "optimizer_step"}
    assert isinstance(d["fits"], bool)
    assert d["min_gpus"]["H100-80GB"] >= 1 and "A100-40GB" in d["min_gpus"]


def test_plan_compare_json(capsys):
    assert main(["plan", "--model", "qwen2.5-0.5b", "--compare", "dpo,ppo,orpo", "--lora-rank", "8", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert list(d["plans"]) == ["dpo", "ppo", "orpo"]


def test_plan_table_mentions_verdict_and_copies(capsys):
    assert main(["plan", "--model", "llama-3.1-8b", "--method", "ppo", "--gpu", "H100-80GB"]) == 0
    out = capsys.readouterr().out
    for word in ("policy", "value", "reference", "reward", "does NOT fit", "forward_backward *", "fewest GPUs"):
        assert word in out


@pytest.mark.parametrize("argv, field", [
    (["--model", "nope"], "model"),
    (["--model", "gpt2", "--seq-len", "-1"], "seq_len"),
    (["--model", "gpt2", "--lora-rank", "100000"], "lora_rank"),
    (["--model", "gpt2", "--zero", "4"], "zero"),
    (["--model", "gpt2", "--gpu", "V100"], "gpu"),
    (["--model", "gpt2", "--method", "reinforce"], "method"),
])
def test_bad_input_is_one_line_exit_2(argv, field):
    r = run("plan", *argv)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert f"error: {field}:" in lines[0]


def test_models_and_gpus_lists(capsys):
    assert main(["models", "--json"]) == 0
    models = json.loads(capsys.readouterr().out)
    assert len(models) >= 25
    ids = {m["id"] for m in models}
    for want in ("meta-llama/Llama-3.1-405B", "mistralai/Mixtral-8x7B-v0.1", "Qwen/Qwen3-30B-A3B", "facebook/opt-13b",
                 "HuggingFaceTB/SmolLM2-1.7B", "Qwen/Qwen2.5-72B"):
        assert want in ids
    assert main(["gpus", "--json"]) == 0
    gpus = {g["id"] for g in json.loads(capsys.readouterr().out)}
    assert {"T4-16GB", "A10G-24GB", "L4-24GB", "RTX4090-24GB", "L40S-48GB", "A100-40GB", "A100-80GB", "H100-80GB",
            "H200-141GB", "B200-192GB", "MI300X-192GB"} <= gpus


@pytest.mark.parametrize("stage", ["rlaif-label", "cai-generate"])
def test_stage_ids_print_a_table(stage, capsys):
    assert main(["plan", "--model", "gpt2", "--method", stage]) == 0
    assert "peak per GPU" in capsys.readouterr().out


@pytest.mark.parametrize("change, message", [
    ({"hidden_size": "abc"}, "'hidden_size' must be a positive integer"),
    ({"num_attention_heads": 0}, "'num_attention_heads' must be a positive integer"),
    ({"hidden_size": 0}, "'hidden_size' must be a positive integer"),
    ({"num_hidden_layers": -2}, "'num_hidden_layers' must be a positive integer"),
    ({"vocab_size": 1.5}, "'vocab_size' must be a positive integer"),
    ({"num_key_value_heads": 3}, "not divisible by 3 key/value heads"),
])
def test_malformed_config_values_are_one_line_errors(tmp_path, change, message):
    import planner

    cfg = dict(planner.load_model("meta-llama/Llama-3.2-1B").config, **change)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    r = run("plan", "--model", str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
