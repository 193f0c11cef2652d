"""runners.demo.tiny: the locally built tiny model, its tokenizer, the demo data and demo hyper-parameters."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from runners.demo import tiny


def test_build_writes_a_loadable_llama_with_the_declared_size(tiny_model_dir: Path) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_model_dir)
    assert config.model_type == "llama"
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size"):
        assert getattr(config, key) == tiny.ARCHITECTURE[key]
    marker = json.loads((tiny_model_dir / tiny.MARKER_FILE).read_text())
    assert marker["version"] == tiny.TINY_VERSION


def test_build_is_idempotent(tiny_model_dir: Path) -> None:
    weights = tiny_model_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert tiny.build_tiny_model(tiny_model_dir) == tiny_model_dir
    assert weights.stat().st_mtime_ns == before


def test_stale_version_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "m"
    out.mkdir()
    (out / tiny.MARKER_FILE).write_text(json.dumps({"version": "old"}))
    (out / "leftover.txt").write_text("x")
    tiny.build_tiny_model(out)
    assert tiny.is_built(out)
    assert not (out / "leftover.txt").exists()


def test_env_variable_sets_the_default_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tiny.TINY_MODEL_DIR_ENV, str(tmp_path / "here"))
    assert tiny.default_tiny_model_dir() == tmp_path / "here"
    monkeypatch.delenv(tiny.TINY_MODEL_DIR_ENV)
    monkeypatch.setenv("ALIGNPLAN_RUNS_DIR", str(tmp_path / "runs"))
    # one copy for the demo, the app and `make app`: under the runs root
    assert tiny.default_tiny_model_dir() == (tmp_path / "runs" / "tiny-model").resolve()


def test_tokenizer_round_trips_and_has_special_tokens(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "Question: How do I boil pasta?\nAnswer: Sure! Hope this helps. Ünïcode ✓"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    assert len(tok) == tiny.VOCAB_SIZE
    assert {tok.bos_token, tok.eos_token, tok.pad_token} == {tiny.BOS, tiny.EOS, tiny.PAD}
    assert len({tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}) == 3
    # trained on the demo text: a demo sentence takes far fewer tokens than bytes
    demo = "Question: How do I boil pasta?\nAnswer: Sure! Hope this helps."
    assert len(tok(demo)["input_ids"]) < len(demo) / 2.5


def test_chat_template_prompt_is_a_prefix_of_the_full_conversation(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = [{"role": "user", "content": "How do I cook rice?"}]
    full = prompt + [{"role": "assistant", "content": "Rinse it first."}]
    prompt_ids = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    full_ids = tok.apply_chat_template(full, tokenize=True, return_dict=True)["input_ids"]
    assert full_ids[: len(prompt_ids)] == prompt_ids
    assert tok.eos_token_id in full_ids[len(prompt_ids) :]
    rendered = tok.apply_chat_template(full, tokenize=False)
    assert "<|user|>" in rendered and "<|assistant|>" in rendered


def test_model_runs_a_forward_pass(tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([[1, 10, 20, 30]])
    out = model(input_ids=ids, labels=ids)
    assert out.logits.shape == (1, 4, tiny.VOCAB_SIZE)
    # random init over 1024 tokens: the loss is near ln(1024) ~ 6.93
    assert 6.0 < out.loss.item() < 8.0


def test_demo_dataset_has_enough_pairs_with_a_consistent_preference() -> None:
    rows = [json.loads(line) for line in tiny.demo_dataset_path().read_text().splitlines()]
    assert len(rows) >= 200
    # the preference is style (a polite opening, never a rude one), not length (tests/runners/test_demo_data.py)
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_demo_data", tiny.DATA_DIR / "make_demo_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert all(r["chosen"].lstrip().startswith(tuple(module.POLITE_OPENINGS)) for r in rows)
    assert not any(r["rejected"].lstrip().startswith(tuple(module.POLITE_OPENINGS)) for r in rows)
    assert len({r["prompt"] for r in rows}) == len(rows)


def test_make_demo_data_reproduces_the_committed_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_demo_data", tiny.DATA_DIR / "make_demo_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    for name in ("demo_preferences.jsonl", "demo_kto.jsonl", "demo_prompts.jsonl", "demo_sft.jsonl", "corpus.txt"):
        assert (tmp_path / name).read_text() == (tiny.DATA_DIR / name).read_text(), name


def test_demo_hparams_are_dpo_config_fields() -> None:
    from trl import DPOConfig

    fields = {f.name for f in dataclasses.fields(DPOConfig)}
    assert set(tiny.DEMO_HPARAMS) <= fields
    assert 20 <= tiny.DEMO_MAX_STEPS <= 40


def test_a_folder_with_other_contents_is_refused_and_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(tiny.TinyModelDirError, match="exists and is not a tiny-model build"):
        tiny.build_tiny_model(out)
    assert (out / "thesis.tex").read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # no staging folder left behind


def test_a_file_as_target_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("keep")
    with pytest.raises(ValueError, match="notes.txt: exists and is a file"):
        tiny.build_tiny_model(target)
    assert target.read_text() == "keep"


def test_an_empty_folder_is_built_into(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    assert tiny.build_tiny_model(out) == out
    assert tiny.is_built(out)


def test_every_recipe_method_has_demo_data_of_a_shape_it_accepts() -> None:
    from runners.data.load import load_and_normalize
    from runners.recipes.common import import_function
    from runners.rundir.spec import RECIPE_METHODS

    assert set(tiny.DEMO_DATA_KIND) == set(RECIPE_METHODS)
    for method, kind in tiny.DEMO_DATA_KIND.items():
        _, fmt = load_and_normalize(tiny.demo_data_paths()[kind], method)
        assert fmt.rows > 0, method
    reward = import_function(tiny.DEMO_REWARD)
    assert len(reward(["a", "b"], prompts=["p", "q"])) == 2
