"""The bundled demo data teaches a preference, not a length: chosen is the longer answer in about half
the pairs, rejected answers are varied, and a held-out split by prompt holds out unseen answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runners.data import make_demo_data
from runners.data.load import split_by_prompt
from runners.demo.tiny import demo_data_paths


def _rows(kind: str) -> list[dict]:
    return [json.loads(line) for line in demo_data_paths()[kind].read_text(encoding="utf-8").splitlines()]


def test_length_does_not_predict_the_label() -> None:
    rows = _rows("preference")
    longer = sum(len(r["chosen"]) > len(r["rejected"]) for r in rows) / len(rows)
    words = sum(len(r["chosen"].split()) > len(r["rejected"].split()) for r in rows) / len(rows)
    assert 0.4 <= longer <= 0.6 and 0.4 <= words <= 0.6


def test_answers_are_varied() -> None:
    rows = _rows("preference")
    assert len({r["rejected"] for r in rows}) == len(rows)
    assert len({r["chosen"] for r in rows}) == len(rows)
    assert len({r["prompt"] for r in rows}) == len(rows)


@pytest.mark.parametrize("seed", [42, 0])
def test_held_out_answers_are_never_seen_in_training(seed: int) -> None:
    rows = _rows("preference")
    train, held_out = split_by_prompt(rows, 0.1, seed)  # the demo's eval_fraction; the spec's seed
    seen = {r[k] for r in train for k in ("chosen", "rejected")}
    assert held_out and not {r[k] for r in held_out for k in ("chosen", "rejected")} & seen
    kto = _rows("kto")
    train, held_out = split_by_prompt(kto, 0.1, seed)
    assert not {r["completion"] for r in held_out} & {r["completion"] for r in train}


def test_the_bundled_files_are_what_the_generator_writes(tmp_path: Path) -> None:
    make_demo_data.main(tmp_path)
    for kind, path in demo_data_paths().items():
        assert (tmp_path / path.name).read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), kind
    assert (tmp_path / "corpus.txt").read_text(encoding="utf-8") == (path.parent / "corpus.txt").read_text(encoding="utf-8")
