"""`alignplan runs try RUN [--prompt TEXT] [--compare] [--json]`: the trained model's greedy answers on
the run's held-out prompts (or the user's), beside its reference's (the base with the LoRA adapter off)."""

from __future__ import annotations

import json

import pytest
from launch_helpers import run_cli

from tests.runners.tryit_helpers import trained_run


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    return tmp_path_factory.mktemp("tryit") / "runs"


@pytest.fixture(scope="module")
def lora_run(runs_root, tiny_model_dir, demo_data):
    import torch

    torch.set_num_threads(1)
    return trained_run(runs_root, tiny_model_dir, demo_data["preference"], name="lora-dpo", lora={"r": 4, "alpha": 8})


@pytest.fixture
def in_root(runs_root, monkeypatch, capsys):
    monkeypatch.setenv("ALIGNPLAN_RUNS_DIR", str(runs_root))
    capsys.readouterr()  # the recipe's logs
    return runs_root


def greedy(model, tokenizer, ids, n):
    import torch

    ids = torch.tensor([ids])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def test_compare_answers_the_held_out_prompts_with_both_models(lora_run, in_root, tiny_model_dir, demo_data, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from runners.data.load import split_by_prompt

    code, out, err = run_cli(capsys, "runs", "try", "lora-dpo", "--compare", "--json", "-k", "3",
                             "--max-new-tokens", "10")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["prompts_from"] == "held-out split" and "adapter switched off" in doc["reference"]
    rows = [json.loads(line) for line in demo_data["preference"].read_text().splitlines() if line.strip()]
    _, held_out = split_by_prompt(rows, 0.2, lora_run.spec().seed)
    expected = list(dict.fromkeys(r["prompt"] for r in held_out))[:3]
    assert [a["prompt"] for a in doc["answers"]] == expected

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    trained = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                        lora_run.path / "checkpoints" / "final").eval()
    for answer in doc["answers"]:
        ids = tokenizer(answer["prompt"])["input_ids"]
        assert answer["trained"] == greedy(trained, tokenizer, ids, 10)
        assert answer["reference"] == greedy(base, tokenizer, ids, 10)
    assert any(a["trained"] != a["reference"] for a in doc["answers"])  # training changed what it says


def test_a_full_fine_tune_is_compared_with_the_specs_model(in_root, tiny_model_dir, demo_data, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    full = trained_run(in_root, tiny_model_dir, demo_data["preference"], name="full-dpo", steps=2, eval_fraction=0)
    capsys.readouterr()
    code, out, err = run_cli(capsys, "runs", "try", "full-dpo", "--compare", "--json", "-k", "2",
                             "--max-new-tokens", "6")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["prompts_from"] == "first prompts of the data" and doc["reference"] == str(tiny_model_dir)
    rows = [json.loads(line) for line in demo_data["preference"].read_text().splitlines() if line.strip()]
    assert [a["prompt"] for a in doc["answers"]] == list(dict.fromkeys(r["prompt"] for r in rows))[:2]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    trained = AutoModelForCausalLM.from_pretrained(full.path / "checkpoints" / "final").eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    for answer in doc["answers"]:
        ids = tokenizer(answer["prompt"])["input_ids"]
        assert (answer["trained"], answer["reference"]) == (greedy(trained, tokenizer, ids, 6),
                                                            greedy(base, tokenizer, ids, 6))


def test_conversation_prompts_go_through_the_chat_template(in_root, tiny_model_dir, demo_data, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from runners.data.load import split_by_prompt

    sft = trained_run(in_root, tiny_model_dir, demo_data["sft"], name="sft", steps=2, method="sft")
    capsys.readouterr()
    code, out, err = run_cli(capsys, "runs", "try", "sft", "--json", "-k", "2", "--max-new-tokens", "6")
    assert code == 0, err
    doc = json.loads(out)
    rows = [json.loads(line) for line in demo_data["sft"].read_text().splitlines() if line.strip()]
    _, held_out = split_by_prompt(rows, 0.2, sft.spec().seed)
    asked = [r["messages"][:1] for r in held_out[:2]]  # the user turn before the assistant's answer
    assert [a["prompt"] for a in doc["answers"]] == [f"user: {m[0]['content']}" for m in asked]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    trained = AutoModelForCausalLM.from_pretrained(sft.path / "checkpoints" / "final").eval()
    for answer, messages in zip(doc["answers"], asked, strict=True):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert answer["trained"] == greedy(trained, tokenizer, tokenizer(text, add_special_tokens=False)["input_ids"], 6)


def test_a_typed_prompt_goes_through_the_chat_template(lora_run, in_root, tiny_model_dir, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    code, out, err = run_cli(capsys, "runs", "try", "lora-dpo", "--prompt", "How do I read a map?",
                             "--max-new-tokens", "8")
    assert code == 0, err
    assert "1 prompts from --prompt" in out and "reference:" not in out
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tokenizer.chat_template
    text = tokenizer.apply_chat_template([{"role": "user", "content": "How do I read a map?"}], tokenize=False,
                                         add_generation_prompt=True)
    trained = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                        lora_run.path / "checkpoints" / "final").eval()
    expected = greedy(trained, tokenizer, tokenizer(text, add_special_tokens=False)["input_ids"], 8)
    assert f"trained:   {json.dumps(expected)}" in out


def test_a_run_without_a_final_model_and_bad_numbers_are_refused(lora_run, in_root, capsys):
    result = lora_run.result_path.read_text()
    lora_run.result_path.unlink()
    try:
        code, out, err = run_cli(capsys, "runs", "try", "lora-dpo")
    finally:
        lora_run.result_path.write_text(result)
    assert code == 2 and "no final model" in err and len(err.strip().splitlines()) == 1
    code, out, err = run_cli(capsys, "runs", "try", "lora-dpo", "--max-new-tokens", "0")
    assert code == 2 and "--max-new-tokens" in err and len(err.strip().splitlines()) == 1
