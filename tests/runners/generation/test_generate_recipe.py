"""The generate recipe end to end on the tiny model: a run directory made by the real prepare path, run
as `python -m runners.recipes.generate --spec ...`; K responses per prompt, metrics rows, STOP and
--resume giving the same file as an uninterrupted run; per-sequence seeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def run_recipe(module: str, spec_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", f"runners.recipes.{module}", "--spec", str(spec_path), *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def prepared_run(tmp_path: Path, tiny_model_dir: Path, demo_data, name: str = "runs", **over):
    from runners.rundir.prepare import prepare
    from runners.rundir.spec import RunSpec
    from tests.runners.launch_helpers import cpu_devices, no_estimate

    fields = {
        "method": "generate", "model": str(tiny_model_dir), "dataset": {"path": str(demo_data["prompts"])},
        "hparams": {"num_responses": 3, "max_new_tokens": 8, "batch_size": 2, "top_p": 0.95},
        "max_steps": 6, "devices": "cpu", "seed": 7, **over,
    }
    return Path(prepare(RunSpec.parse(fields), tmp_path / name, devices=cpu_devices(), estimate=no_estimate).path)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_generate_writes_k_responses_stops_and_resumes_to_the_same_file(tmp_path, tiny_model_dir, demo_data):
    from runners.pipelines.spec import output_data_path

    whole = prepared_run(tmp_path, tiny_model_dir, demo_data, name="whole")
    out = run_recipe("generate", whole / "spec.yaml")
    assert out.returncode == 0, out.stderr[-2000:]
    data = output_data_path(whole)
    rows = read_jsonl(data)
    prompts = [json.loads(line)["prompt"] for line in Path(demo_data["prompts"]).read_text().splitlines()][:6]
    assert [r["prompt"] for r in rows] == prompts
    assert all(len(r["responses"]) == 3 and all(isinstance(x, str) for x in r["responses"]) for r in rows)
    assert len({x for r in rows for x in r["responses"]}) > 6  # sampled, not one answer repeated
    metrics = read_jsonl(whole / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [2, 4, 6] and {m["max_steps"] for m in metrics} == {6}
    for m in metrics:
        assert 0 < m["response_length"] <= 8 and 0 <= m["eos_fraction"] <= 1
        assert m["tokens_per_second"] > 0 and m["peak_memory_bytes"] > 0
    result = json.loads((whole / "result.json").read_text())
    assert result["status"] == "succeeded" and result["output_data"] == str(data)
    assert result["prompts_done"] == 6 and result["num_responses"] == 3

    # The same run stopped after its first batch (STOP written as the batch's rows land), then resumed.
    parts = prepared_run(tmp_path, tiny_model_dir, demo_data, name="parts")
    hook = tmp_path / "stop_after_first_batch.py"
    hook.write_text(
        "import runners.recipes.generate as g, sys\n"
        "orig = g.append_rows\n"
        "def append_then_stop(path, rows):\n"
        "    orig(path, rows)\n"
        "    (path.parent.parent / 'STOP').write_text('')\n"
        "g.append_rows = append_then_stop\n"
        "sys.exit(g.main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    first = subprocess.run([sys.executable, str(hook), "--spec", str(parts / "spec.yaml")], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    stopped = json.loads((parts / "result.json").read_text())
    assert stopped["status"] == "stopped" and stopped["prompts_done"] == 2
    assert len(read_jsonl(output_data_path(parts))) == 2
    second = run_recipe("generate", parts / "spec.yaml", "--resume")
    assert second.returncode == 0, second.stderr[-2000:]
    assert output_data_path(parts).read_text() == data.read_text()
    assert [m["step"] for m in read_jsonl(parts / "metrics.jsonl")] == [2, 4, 6]
    assert json.loads((parts / "result.json").read_text())["status"] == "succeeded"


@pytest.mark.slow
def test_bad_hparams_are_named_before_any_model_loads(tmp_path, tiny_model_dir, demo_data):
    run = prepared_run(tmp_path, tiny_model_dir, demo_data)
    spec_path = run / "spec.yaml"
    spec_path.write_text(spec_path.read_text().replace("num_responses: 3", "num_response: 3"))
    out = run_recipe("generate", spec_path)
    assert out.returncode == 2 and "hparams.num_response" in out.stderr and "num_responses" in out.stderr
    spec_path.write_text(spec_path.read_text().replace("num_response: 3", "num_responses: 0"))
    out = run_recipe("generate", spec_path)
    assert out.returncode == 2 and "hparams.num_responses: a whole number >= 1" in out.stderr


def test_config_fields_have_help_and_preflight_checks_them():
    from dataclasses import fields

    from runners.launch.preflight import check_hparams
    from runners.recipes.configs import config_for
    from runners.recipes.generate import GenerateConfig
    from runners.rundir.spec import RunSpec, SpecError

    assert config_for("generate") == (GenerateConfig, {})
    assert {f.name for f in fields(GenerateConfig)} >= {"num_responses", "max_new_tokens", "temperature", "top_p",
                                                       "batch_size"}
    assert all(f.metadata.get("help") for f in fields(GenerateConfig))
    assert GenerateConfig().num_responses == 2
    spec = RunSpec.parse({"method": "generate", "model": "m", "dataset": {"path": "p.jsonl"},
                          "hparams": {"temprature": 0.7}})
    with pytest.raises(SpecError, match="hparams.temprature.*temperature"):
        check_hparams(spec)
    with pytest.raises(ValueError, match="top_p"):
        GenerateConfig(top_p=0)


def test_row_seeds_make_a_response_independent_of_its_batch(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from runners.recipes.generate import GenerateConfig, Sampler, row_seed

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    sampler = Sampler(model, tok, "cpu", GenerateConfig(max_new_tokens=6, batch_size=4))
    texts = ["Question: a long question about bread and ovens?\nAnswer:", "Question: hi\nAnswer:", "Question: x\nAnswer:"]
    seeds = [row_seed(1, i, 0) for i in range(3)]
    together = [s["text"] for s in sampler.sample(texts, seeds)]
    alone = [sampler.sample([t], [s])[0]["text"] for t, s in zip(texts, seeds, strict=True)]
    assert together == alone
    assert row_seed(1, 0, 0) != row_seed(1, 0, 1) != row_seed(1, 1, 0)


def test_output_path_is_the_pipelines_one(tmp_path):
    from runners.pipelines.spec import output_data_path as pipelines_path
    from runners.recipes.generate import output_data_path

    assert output_data_path(tmp_path) == pipelines_path(tmp_path)
