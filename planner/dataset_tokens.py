"""Counting a data set's tokens for `alignplan plan --dataset FILE` (the CLI layer; issue 14).

Rows of JSON Lines, a JSON list, or CSV with a header. A row's sequences are what the trainers build:
prompt + chosen and prompt + rejected (preference pairs), prompt + completion, messages (a chat), text,
or a prompt alone (RL: the completion is generated, the caller adds its length). Tokens are counted
with the model's tokenizer when transformers and the tokenizer files are on this machine (no download),
else estimated as UTF-8 bytes / 4 (English text under BPE vocabularies of 32-150k entries runs about 4
bytes per token; code and other languages differ): the result says which.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.errors import PlannerError

MAX_BYTES = 2 * 2**30
BYTES_PER_TOKEN = 4.0


@dataclass(frozen=True)
class DatasetTokens:
    rows: int
    sequences: int
    tokens: int  # over all sequences
    prompt_only: bool  # rows carry prompts only (RL): the sequences are prompts
    counted_with: str  # "tokenizer <id>" or "bytes/4 estimate"

    @property
    def mean_seq_len(self) -> float:
        return self.tokens / max(self.sequences, 1)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # a chat: [{"role":..., "content":...}, ...]
        return "\n".join(_text(v.get("content") if isinstance(v, dict) else v) for v in value)
    if isinstance(value, dict):
        return _text(value.get("content", ""))
    return str(value)


def row_sequences(row: dict) -> tuple[list[str], bool]:
    """The texts one row puts through the model, and whether the row is a prompt alone."""
    prompt = _text(row.get("prompt", row.get("question", "")))
    if "chosen" in row and "rejected" in row:
        return [prompt + _text(row["chosen"]), prompt + _text(row["rejected"])], False
    for key in ("completion", "response", "answer", "output"):
        if key in row and prompt:
            return [prompt + _text(row[key])], False
    for key in ("messages", "conversations", "text"):
        if key in row:
            return [_text(row[key])], False
    if prompt:
        return [prompt], True
    return [" ".join(_text(v) for v in row.values())], False


def _rows(path: Path):
    data = path.read_bytes()
    text = data.decode("utf-8", errors="replace")
    if path.suffix == ".csv":
        yield from csv.DictReader(io.StringIO(text))
        return
    stripped = text.lstrip()
    if stripped.startswith("["):
        rows = json.loads(text)
        yield from (r for r in rows if isinstance(r, dict))
        return
    for line in text.splitlines():
        if line.strip():
            r = json.loads(line)
            if isinstance(r, dict):
                yield r


def _tokenizer(model: str | None):
    if not model:
        return None
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(model, local_files_only=True)
    except Exception:  # no transformers, no local files, not a tokenizer: estimate instead
        return None


def count_tokens(path: str | Path, model: str | None = None) -> DatasetTokens:
    """Rows, sequences and tokens of a data file; with the model's tokenizer when it is at hand."""
    p = Path(path)
    if not p.is_file():
        raise PlannerError("dataset", f"{path}: not a file")
    if p.stat().st_size > MAX_BYTES:
        raise PlannerError("dataset", f"{path}: over {MAX_BYTES:,} bytes; give --tokens N instead")
    tok = _tokenizer(model)
    rows = seqs = tokens = prompts = 0
    try:
        for row in _rows(p):
            texts, prompt_only = row_sequences(row)
            rows += 1
            seqs += len(texts)
            prompts += prompt_only
            for t in texts:
                if tok is not None:
                    tokens += len(tok(t, add_special_tokens=True)["input_ids"])
                else:
                    tokens += max(1, round(len(t.encode("utf-8")) / BYTES_PER_TOKEN))
    except (json.JSONDecodeError, csv.Error, UnicodeError) as exc:
        raise PlannerError("dataset", f"{path}: not JSON Lines, a JSON list or CSV ({exc})") from None
    if not rows:
        raise PlannerError("dataset", f"{path}: no rows")
    how = f"tokenizer {model}" if tok is not None else f"bytes/{BYTES_PER_TOKEN:g} estimate (no tokenizer at hand)"
    return DatasetTokens(rows, seqs, tokens, prompts == rows, how)
