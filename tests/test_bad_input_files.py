"""No input file may hang or exhaust memory (issue 11): answers (advise --answers), a spec (run --spec),
data (run --dataset) and a model's config.json (plan --model) that are a FIFO, /dev/zero, a symlink
loop or deeply nested YAML/JSON, and config.json files with absurd values, are each one line naming
the field and the file, exit 2, promptly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from alignplan.cli import main

KINDS = ("fifo", "dev-zero", "symlink-loop", "deep-json", "deep-yaml", "aliases")


def bad_file(tmp_path: Path, kind: str, suffix: str) -> str:
    path = tmp_path / f"bad{suffix}"
    if kind == "fifo":
        os.mkfifo(path)  # opening it for reading would block until a writer comes
    elif kind == "dev-zero":
        return "/dev/zero"  # endless: read whole, it exhausts memory
    elif kind == "symlink-loop":
        os.symlink(tmp_path / f"other{suffix}", path)
        os.symlink(path, tmp_path / f"other{suffix}")
    elif kind == "deep-json":
        path.write_text("[" * 200_000 + "]" * 200_000)
    elif kind == "deep-yaml":
        path.write_text("a: " + "{b: " * 50_000 + "1" + "}" * 50_000 + "\n")
    elif kind == "aliases":  # a few hundred bytes that expand to 9^9 values
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
        path.write_text("\n".join(lines) + "\n")
    return str(path)



def one_line_error(capsys, argv: list[str], *expected: str) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    for text in expected:
        assert text in err, err
    return err


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", KINDS)
def test_bad_answers_file(capsys, tmp_path, kind):
    path = bad_file(tmp_path, kind, ".yaml")
    one_line_error(capsys, ["advise", "--answers", path], "--answers", path)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", KINDS)
def test_bad_spec_file(capsys, tmp_path, runs_dir, kind):
    path = bad_file(tmp_path, kind, ".yaml")
    one_line_error(capsys, ["run", "--spec", path, "--dry-run"], "spec", path)
    assert not runs_dir.exists() or not any(p.is_dir() for p in runs_dir.iterdir())


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", KINDS)
def test_bad_model_config_file(capsys, tmp_path, kind):
    path = bad_file(tmp_path, kind, ".json")
    one_line_error(capsys, ["plan", "--model", path], "model", path)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", ("fifo", "dev-zero", "symlink-loop", "deep-json"))
def test_bad_data_file(capsys, tmp_path, runs_dir, tiny_model_dir, kind):
    path = bad_file(tmp_path, kind, ".jsonl")
    one_line_error(capsys, ["run", "--method", "dpo", "--model", str(tiny_model_dir), "--dataset", path],
                   path)
    assert not runs_dir.exists() or not any(p.is_dir() for p in runs_dir.iterdir())


LLAMA = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 1000}


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("change", "field"), [
    ({"hidden_size": 10**200}, "'hidden_size' must be a positive integer up to"),
    ({"vocab_size": 2**63}, "'vocab_size' must be a positive integer up to"),
    ({"model_type": ["llama"]}, "model_type ['llama'] is not supported"),
    ({"model_type": {"a": 1}}, "is not supported"),
    ({"model_type": "mixtral", "num_local_experts": 4, "num_experts_per_tok": 8}, "routes each token to 8 experts of 4"),
])
def test_absurd_config_values(capsys, tmp_path, change, field):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**LLAMA, **change}))
    one_line_error(capsys, ["plan", "--model", str(path)], field)
