"""planner.timecost: time and cost of a method on a GPU setup (issue 14)."""

from __future__ import annotations

import json

import pytest

import planner
from planner import timecost
from planner.cli import add_subcommands

LLAMA = "meta-llama/Llama-3.1-8B"


def _req(method, gpu="H100-80GB", gpus=8, zero=3, **kw):
    return planner.PlanRequest(model=LLAMA, method=method, gpu=gpu, gpus=gpus, zero=zero, **kw)


def test_dpo_time_is_its_flops_over_the_gpus():
    work = timecost.Work(examples=1000, seq_len=1024)
    t = timecost.estimate_time(_req("dpo"), work, mfu=0.5)
    (stage,) = t["stages"]
    fb = next(p for p in stage["phases"] if p["name"] == "forward_backward")
    assert fb["seconds"] == pytest.approx(fb["flops"] / (8 * 989e12 * 0.5), rel=1e-6)
    assert stage["optimizer_steps"] == 1000 // 64 + 1
    assert t["gpu_hours"] == pytest.approx(t["wall_hours"] * 8)
    assert t["cost"] == pytest.approx(t["gpu_hours"] * timecost.load_prices().get("H100-80GB"))


def test_ppo_costs_more_than_dpo_and_vllm_saves_generation_time():
    work = timecost.Work(examples=5000, seq_len=1024)
    dpo = timecost.estimate_time(_req("dpo"), work)
    ppo = timecost.estimate_time(_req("ppo"), work)
    assert ppo["gpu_hours"] > 2 * dpo["gpu_hours"]
    names = [p["name"] for p in ppo["stages"][0]["phases"]]
    assert names == ["generation", "scoring", "forward_backward", "optimizer_step"]
    assert ppo["stages"][0]["update_epochs"] == 4  # the profile's ppo_epochs
    assert ppo["by_engine"]["vllm"]["wall_seconds"] < ppo["by_engine"]["transformers"]["wall_seconds"]
    assert dpo["by_engine"] == {}  # no generation, nothing to switch


def test_pipelines_time_every_stage():
    t = timecost.estimate_time(_req("cai"), timecost.Work(examples=100, seq_len=512))
    assert [s["stage"] for s in t["stages"]] == ["cai-generate", "sft", "dpo"]
    assert t["wall_seconds"] == pytest.approx(sum(s["seconds"] for s in t["stages"]))


def test_lora_reference_still_computes_and_beta0_does_not():
    with_lora = timecost.flop_copies(_req("dpo", lora_rank=16))
    assert [c.role for c, _ in with_lora] == ["policy", "reference"]  # the adapter-off policy scores
    pre = timecost.flop_copies(_req("dpo", precompute_ref=True))
    assert [w for c, w in pre if c.role == "reference"] == ["once"]
    grpo = timecost.flop_copies(_req("grpo"))  # beta 0 by default: no reference at all
    assert "reference" not in [c.role for c, _ in grpo]


def test_cheapest_setup_respects_the_deadline():
    work = timecost.Work(examples=20_000, seq_len=1024)
    loose = timecost.cheapest_setup(_req("dpo"), work, None)
    tight = timecost.cheapest_setup(_req("dpo"), work, 1.0)
    assert loose["cheapest"] and tight["cheapest"]
    assert tight["cheapest"]["wall_hours"] <= 1.0
    assert loose["cheapest"]["cost"] <= tight["cheapest"]["cost"]
    assert all(c["fits"] for c in tight["candidates"])
    assert timecost.cheapest_setup(_req("dpo"), work, 1e-6)["cheapest"] is None


def test_price_file_overrides(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("currency: EUR\nas_of: '2030-01'\nprices:\n  H100: 1.0\n  A100-80GB: {per_gpu_hour: 0.5}\n")
    table = timecost.load_prices(f)
    assert table.get("H100-80GB") == 1.0 and table.get("A100-80GB") == 0.5 and table.currency == "EUR"
    bad = tmp_path / "bad.yaml"
    bad.write_text("prices:\n  H100: cheap\n")
    with pytest.raises(planner.PlannerError, match="price_file"):
        timecost.load_prices(bad)


def test_default_prices_are_dated_and_cover_the_catalogue():
    table = timecost.load_prices()
    assert table.as_of and table.source
    assert set(table.prices) == set(planner.GPUS)


def test_every_gpu_has_speeds():
    for g in planner.GPUS.values():
        assert g.bf16_tflops > 0 and g.hbm_gbps > 0 and g.interconnect_gbps > 0 and g.network_gbps > 0, g.id


def _cli(argv, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    add_subcommands(parser.add_subparsers())
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    return capsys.readouterr().out


def test_cli_time_block(capsys, tmp_path):
    out = _cli(["plan", "--model", LLAMA, "--method", "dpo", "--gpu", "H100", "--gpus", "8", "--zero", "3",
                "--examples", "1000", "--epochs", "2", "--within-hours", "5", "--json"], capsys)
    t = json.loads(out)["time"]
    for key in ("stages", "wall_hours", "gpu_hours", "cost", "by_gpu_type", "cheapest", "prices", "assumptions"):
        assert key in t
    assert t["work"]["epochs"] == 2
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"prompt": "Hi", "chosen": " Hello there", "rejected": " no"}\n' * 10)
    out = _cli(["plan", "--model", LLAMA, "--method", "dpo", "--gpu", "H100", "--dataset", str(data), "--json"], capsys)
    w = json.loads(out)["time"]["work"]
    assert w["examples"] == 10 and "rows" in w["source"]
    text = _cli(["plan", "--model", LLAMA, "--method", "ppo", "--gpu", "H100", "--tokens", "1000000"], capsys)
    assert "GPU-hours" in text and "with vllm generation" in text
