"""`alignplan runs export RUN --merged OUT`: a LoRA run's adapter merged into its base model is a
standalone model (AutoModelForCausalLM alone loads it) that answers as base + adapter does; a full
fine-tune is copied; runs without a final model, used output directories and an unreachable hub are
refused with one line and exit 2."""

from __future__ import annotations

import json

import pytest
from launch_helpers import run_cli

from tests.runners.tryit_helpers import trained_run

PROMPTS = ["Question: How do I boil an egg?\nAnswer:", "Question: What is a map for?\nAnswer:", "Hello"]


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    return tmp_path_factory.mktemp("export") / "runs"


@pytest.fixture(scope="module")
def lora_run(runs_root, tiny_model_dir, demo_data):
    import torch

    torch.set_num_threads(1)
    return trained_run(runs_root, tiny_model_dir, demo_data["preference"], name="lora-dpo", lora={"r": 4, "alpha": 8})


@pytest.fixture
def in_root(runs_root, monkeypatch):
    monkeypatch.setenv("ALIGNPLAN_RUNS_DIR", str(runs_root))
    return runs_root


def greedy(model, tokenizer, prompt, n=12):
    import torch

    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    return out[0, ids.shape[1]:].tolist()


def test_merged_lora_model_loads_alone_and_matches_base_plus_adapter(lora_run, in_root, tiny_model_dir, tmp_path,
                                                                      capsys):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "merged"
    capsys.readouterr()
    code, stdout, err = run_cli(capsys, "runs", "export", "lora-dpo", "--merged", str(out), "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["kind"] == "lora-merged" and doc["source_run"] == lora_run.id and doc["method"] == "dpo"
    assert doc["base_model"] == str(tiny_model_dir) and doc["dtype"] == "float32" and doc["adapter"]["r"] == 4
    assert json.loads((out / "ALIGNPLAN_EXPORT.json").read_text())["source_run"] == lora_run.id
    assert not (out / "adapter_config.json").exists()  # a whole model, not an adapter

    merged = AutoModelForCausalLM.from_pretrained(out).eval()  # no peft, no base model path
    tokenizer = AutoTokenizer.from_pretrained(out)
    adapter = lora_run.path / "checkpoints" / "final"
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    moved = 0
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            a, b, c = (m(input_ids=ids).logits for m in (merged, with_adapter, base))
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        moved = max(moved, (a - c).abs().max().item())
        assert greedy(merged, tokenizer, prompt) == greedy(with_adapter, tokenizer, prompt)
    assert moved > 1e-3  # the adapter was trained: the merged model is not the base model


def test_a_full_fine_tune_and_a_run_merged_at_its_end_are_copied(in_root, tiny_model_dir, demo_data, tmp_path,
                                                                       capsys):
    from transformers import AutoModelForCausalLM

    full = trained_run(in_root, tiny_model_dir, demo_data["preference"], name="full-dpo", steps=1)
    at_end = trained_run(in_root, tiny_model_dir, demo_data["preference"], name="merged-dpo", steps=1,
                         lora={"r": 2, "alpha": 4}, merge_lora=True)
    capsys.readouterr()  # the recipes' logs
    for run, kind in ((full, "full"), (at_end, "lora-merged-at-run-end")):
        out = tmp_path / run.spec().name
        code, stdout, err = run_cli(capsys, "runs", "export", run.spec().name, "--merged", str(out), "--json")
        assert code == 0, err
        doc = json.loads(stdout)
        assert doc["kind"] == kind
        assert (doc["adapter"] or {}).get("r") == (2 if kind != "full" else None)
        final = run.path / "checkpoints" / "final" / "model.safetensors"
        assert (out / "model.safetensors").read_bytes() == final.read_bytes()
        assert not (out / "adapter_config.json").exists()
        AutoModelForCausalLM.from_pretrained(out)


def test_refusals_are_one_line_and_exit_2(lora_run, in_root, tmp_path, capsys, monkeypatch):
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("x")
    code, out, err = run_cli(capsys, "runs", "export", "lora-dpo", "--merged", str(used))
    assert code == 2 and "exists and is not an empty directory" in err and len(err.strip().splitlines()) == 1
    assert out == ""  # nothing said before the refusal

    # a run that has not finished has no final model
    result = lora_run.result_path.read_text()
    lora_run.result_path.unlink()
    try:
        code, out, err = run_cli(capsys, "runs", "export", "lora-dpo", "--merged", str(tmp_path / "new"))
    finally:
        lora_run.result_path.write_text(result)
    assert code == 2 and "no final model" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists()

    # the hub switched off: refused before any work, nothing written
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    code, out, err = run_cli(capsys, "runs", "export", "lora-dpo", "--merged", str(tmp_path / "hub"),
                             "--push-to-hub", "me/tiny-dpo")
    assert code == 2 and "--push-to-hub me/tiny-dpo" in err and "not reachable" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "hub").exists()


def test_a_pipeline_exports_the_stage_that_made_its_final_model(lora_run, tmp_path):
    from runners.exports.merged import merge_run

    pipeline = tmp_path / "pipe"  # a pipeline's directory: pipeline.yaml, no spec.yaml, the last stage's model
    pipeline.mkdir()
    final = lora_run.path / "checkpoints" / "final"
    (pipeline / "result.json").write_text(json.dumps({"status": "succeeded", "final_model": str(final)}))
    doc = merge_run(pipeline, tmp_path / "out")
    assert doc["source_run"] == lora_run.id and doc["kind"] == "lora-merged"


def test_a_failed_upload_is_one_line_and_keeps_the_export(lora_run, in_root, tmp_path, capsys, monkeypatch):
    import huggingface_hub

    class NoHub:  # what HfApi does when the hub cannot be reached
        def create_repo(self, *a, **kw):
            raise ConnectionError("Failed to resolve 'huggingface.co'\nmore detail")

    monkeypatch.setattr(huggingface_hub, "HfApi", NoHub)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    capsys.readouterr()
    out = tmp_path / "kept"
    code, _, err = run_cli(capsys, "runs", "export", "lora-dpo", "--merged", str(out), "--push-to-hub", "me/tiny")
    errors = [line for line in err.splitlines() if "error:" in line]  # beside the loaders' progress bars
    assert code == 2 and len(errors) == 1 and "Traceback" not in err and "more detail" not in err
    assert "--push-to-hub me/tiny: not pushed (Failed to resolve 'huggingface.co')" in err and str(out) in err
    assert (out / "ALIGNPLAN_EXPORT.json").is_file() and (out / "model.safetensors").is_file()
