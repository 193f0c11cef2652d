"""Load a training data set, detect its format and normalize it to what the method's TRL trainer expects.

Everything here runs before any model is loaded, so a bad file fails in a second with a DataError that
names the file and what is wrong, instead of after minutes of model loading.

Formats (DetectedFormat.name):

    preference               prompt / chosen / rejected strings (TRL "standard", explicit prompt)
    preference-implicit      chosen / rejected strings sharing a common prefix, no prompt column
    preference-conversational prompt / chosen / rejected as lists of {role, content} messages
    preference-messages      chosen / rejected message lists that include the prompt turns (UltraFeedback)
    hh-transcript            chosen / rejected "\\n\\nHuman: ... \\n\\nAssistant: ..." transcripts (Anthropic HH)
    unpaired                 prompt / completion / label (KTO)
    prompt-only              prompt (string or messages): GRPO, RLOO
    prompt-completion        prompt / completion without label (SFT)
    sft-messages             messages: a list of {role, content} turns (SFT)
    text                     text (SFT, plain language modelling)

docs/data-formats.md shows one row of each and what each method receives.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # datasets is imported lazily: the CLI and the app import this module
    import datasets

LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")

HH_HUMAN = "\n\nHuman:"
HH_ASSISTANT = "\n\nAssistant:"


class DataError(ValueError):
    """A data set that cannot be used for the method; the message names the file and the problem."""


@dataclass(frozen=True)
class DetectedFormat:
    name: str
    description: str
    rows: int = 0
    source: str = ""
    duplicates_dropped: int = 0  # repeated prompts dropped (prompts taken from pairs or unpaired rows)

    def summary(self) -> str:
        dropped = f" ({self.duplicates_dropped} repeated prompts dropped)" if self.duplicates_dropped else ""
        return f"{self.source}: detected format {self.name!r} ({self.description}), {self.rows} rows{dropped}"


FORMATS: dict[str, str] = {
    "preference": "prompt/chosen/rejected strings, explicit prompt",
    "preference-implicit": "chosen/rejected strings with the prompt inside both, no prompt column",
    "preference-conversational": "prompt/chosen/rejected lists of {role, content} messages",
    "preference-messages": "chosen/rejected message lists that include the prompt turns (UltraFeedback style)",
    "hh-transcript": "chosen/rejected Human/Assistant transcripts (Anthropic HH style)",
    "unpaired": "prompt/completion/label unpaired preference (KTO)",
    "prompt-only": "prompt only (for online methods that generate the answers)",
    "prompt-completion": "prompt/completion pairs without a label",
    "sft-messages": "messages: lists of {role, content} turns",
    "text": "text column",
    "responses": "prompt with a list of responses to compare (the generation stage's output)",
    "response-pair": "prompt/response_a/response_b: two responses to compare",
}

PREFERENCE_FORMATS = (
    "preference",
    "preference-implicit",
    "preference-conversational",
    "preference-messages",
    "hh-transcript",
)

# Which input formats each method can train on (after normalization), and the columns it ends up with.
ACCEPTED: dict[str, tuple[str, ...]] = {
    "dpo": PREFERENCE_FORMATS,
    "ipo": PREFERENCE_FORMATS,
    "orpo": PREFERENCE_FORMATS,
    "simpo": PREFERENCE_FORMATS,
    "rm": PREFERENCE_FORMATS,
    "kto": ("unpaired", *PREFERENCE_FORMATS),
    "grpo": ("prompt-only", "prompt-completion", "unpaired", *PREFERENCE_FORMATS),
    "rloo": ("prompt-only", "prompt-completion", "unpaired", *PREFERENCE_FORMATS),
    "ppo": ("prompt-only", "prompt-completion", "unpaired", *PREFERENCE_FORMATS),
    "generate": ("prompt-only", "prompt-completion", "unpaired", *PREFERENCE_FORMATS),
    "cai-generate": ("prompt-only", "prompt-completion", "unpaired", *PREFERENCE_FORMATS),
    "sft": ("sft-messages", "prompt-completion", "text", *PREFERENCE_FORMATS),
    # A judge compares plain-text responses; chosen/rejected pairs are judged again (re-labelled).
    "rlaif-label": ("responses", "response-pair", "preference", "preference-implicit", "hh-transcript"),
}

EXPECTED_COLUMNS: dict[str, str] = {
    "dpo": "prompt/chosen/rejected (or chosen/rejected with the prompt inside)",
    "ipo": "prompt/chosen/rejected (or chosen/rejected with the prompt inside)",
    "orpo": "prompt/chosen/rejected (or chosen/rejected with the prompt inside)",
    "simpo": "prompt/chosen/rejected (or chosen/rejected with the prompt inside)",
    "rm": "prompt/chosen/rejected (or chosen/rejected with the prompt inside)",
    "kto": "prompt/completion/label (or paired prompt/chosen/rejected, which is unpaired)",
    "grpo": "prompt",
    "rloo": "prompt",
    "ppo": "prompt",
    "generate": "prompt",
    "cai-generate": "prompt",
    "sft": "messages, prompt/completion, or text",
    "rlaif-label": "prompt/responses (a list), prompt/response_a/response_b, or prompt/chosen/rejected strings",
}


# --- public entry points ------------------------------------------------------------------------


def load_and_normalize(dataset_spec: Any, method: str) -> tuple[datasets.Dataset, DetectedFormat]:
    """Load the data named by dataset_spec (a DatasetSpec, dict, or path) and normalize it for method.

    Raises DataError before any model loads: unreadable or empty file, bad rows, a format the method
    cannot use. The returned DetectedFormat says which format was found (rows counts the rows kept).
    """
    from datasets import Dataset

    path, split, columns, forced = _unpack_spec(dataset_spec)
    if method not in ACCEPTED:
        raise DataError(f"method {method!r} has no data rules; accepted: {', '.join(ACCEPTED)}")
    rows, source, line_numbers = load_rows(path, split)
    rows = apply_column_mapping(rows, columns, source)
    if forced is not None and forced not in FORMATS:
        raise DataError(f"{source}: dataset.format {forced!r} is not a known format; accepted: {', '.join(FORMATS)}")
    name = forced or detect_format(rows, source=source).name
    if name not in ACCEPTED[method]:
        raise DataError(
            f"{source}: detected format {name!r} ({FORMATS[name]}) does not suit method {method!r}, which "
            f"expects {EXPECTED_COLUMNS[method]}; found columns {_columns(rows)}"
        )
    validate_rows(rows, name, source, line_numbers)
    normalized = normalize(rows, name, method)
    if method in ONLINE_METHODS:
        normalized = with_reward_columns(rows, normalized, name)
    check_prompts(normalized, name, source, line_numbers)
    dropped = 0
    if method in PROMPT_METHODS and (name in PREFERENCE_FORMATS or name == "unpaired"):
        # each pair (or each unpaired row) repeats its prompt: roll each prompt out once
        kept = unique_rows(normalized)
        dropped, normalized = len(normalized) - len(kept), kept
    fmt = DetectedFormat(name, FORMATS[name], rows=len(normalized), source=source, duplicates_dropped=dropped)
    return Dataset.from_list(normalized), fmt


def unique_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with exact repeats (same prompt, same reward columns) dropped, first kept, order kept."""
    seen: set[str] = set()
    out = []
    for row in rows:
        key = json.dumps(row, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def prompt_key(row: dict[str, Any]) -> str:
    """The prompt a normalized row answers, as a string: its prompt column; for messages, the turns
    before the last assistant turn; for plain text, the text itself."""
    if "prompt" in row:
        value = row["prompt"]
    elif "messages" in row:
        messages = row["messages"]
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=len(messages))
        value = messages[:last] if last > 0 else messages
    else:
        value = row.get("text", row)
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def split_by_prompt(rows: Sequence[dict[str, Any]], fraction: float, seed: int,
                    source: str = "data") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train rows, held-out rows) with whole prompts held out: every row of a held-out prompt (both
    halves of an unpaired pair, every pair that shares the prompt) is held out, so no held-out prompt
    is seen in training. round(prompts x fraction) prompts, picked with the seed; row order kept."""
    import random

    keys = [prompt_key(row) for row in rows]
    prompts = sorted(set(keys))
    n_eval = round(len(prompts) * fraction)
    if n_eval < 1:
        raise DataError(f"{source}: eval_fraction {fraction} of {len(prompts)} distinct prompts leaves no "
                        "evaluation rows (the held-out split is made by prompt)")
    if n_eval >= len(prompts):
        raise DataError(f"{source}: eval_fraction {fraction} of {len(prompts)} distinct prompts leaves no "
                        "training rows (the held-out split is made by prompt)")
    held = set(random.Random(seed).sample(prompts, n_eval))
    train = [row for row, key in zip(rows, keys, strict=True) if key not in held]
    held_out = [row for row, key in zip(rows, keys, strict=True) if key in held]
    return train, held_out


def detect_format(rows: Sequence[dict[str, Any]], source: str = "data") -> DetectedFormat:
    """Name the format of rows from their columns and the first row's value types."""
    if not rows:
        raise DataError(f"{source}: no rows")
    first = rows[0]
    cols = set(first)
    name = _detect_name(first, cols)
    if name is None:
        raise DataError(
            f"{source}: cannot tell the data format from columns {sorted(cols)}; expected one of: "
            "prompt/chosen/rejected, chosen/rejected, prompt/completion/label, prompt, messages, "
            "prompt/completion, text (rename columns with dataset.columns, e.g. {'question': 'prompt'})"
        )
    return DetectedFormat(name, FORMATS[name], rows=len(rows), source=source)


def _detect_name(first: dict[str, Any], cols: set[str]) -> str | None:
    if {"prompt", "responses"} <= cols:
        return "responses"
    if {"prompt", "response_a", "response_b"} <= cols:
        return "response-pair"
    if {"chosen", "rejected"} <= cols:
        chosen = first["chosen"]
        if _is_messages(chosen):
            if "prompt" in cols and _is_messages(first["prompt"]):
                return "preference-conversational"
            return "preference-messages"
        if isinstance(chosen, str) and "prompt" in cols:
            return "preference"
        if isinstance(chosen, str) and HH_ASSISTANT in chosen:
            return "hh-transcript"
        if isinstance(chosen, str):
            return "preference-implicit"
        return None
    if {"prompt", "completion", "label"} <= cols:
        return "unpaired"
    if {"prompt", "completion"} <= cols:
        return "prompt-completion"
    if "messages" in cols and _is_messages(first["messages"]):
        return "sft-messages"
    if "prompt" in cols:
        return "prompt-only"
    if "text" in cols:
        return "text"
    return None


# --- loading ------------------------------------------------------------------------------------


def _unpack_spec(spec: Any) -> tuple[str, str, dict[str, str], str | None]:
    if isinstance(spec, (str, Path)):
        return str(spec), "train", {}, None
    if isinstance(spec, dict):
        return str(spec["path"]), spec.get("split", "train"), dict(spec.get("columns") or {}), spec.get("format")
    return str(spec.path), spec.split, dict(spec.columns), spec.format


def load_rows(path: str, split: str = "train") -> tuple[list[dict[str, Any]], str, list[int] | None]:
    """Rows of a local file or hub data set, the name to use in messages, and JSONL line numbers."""
    local = Path(path).expanduser()
    if local.is_dir():
        raise DataError(f"{path}: is a directory; give a .jsonl, .json, .csv or .parquet file")
    if local.is_symlink() or local.exists():  # a FIFO, a device (/dev/zero), a symlink loop: refused, not read
        from planner.input_files import InputFileError, check_regular_file

        try:
            check_regular_file(local, "dataset")
        except InputFileError as exc:
            raise DataError(str(exc).removeprefix("dataset: ")) from None
    if local.is_file():
        return _load_local(local)
    if local.suffix.lower() in LOCAL_SUFFIXES or path.startswith((".", "/", "~")):
        raise DataError(f"{path}: file not found")
    return _load_hub(path, split), f"{path} (hub, split {split!r})", None


def _load_local(path: Path) -> tuple[list[dict[str, Any]], str, list[int] | None]:
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in LOCAL_SUFFIXES:
        raise DataError(f"{source}: unsupported file type {suffix or '(none)'!r}; accepted: {', '.join(LOCAL_SUFFIXES)}")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{source}: the file is empty")
    if suffix == ".parquet":
        return _read_parquet(path), source, None
    text = _decode_utf8(raw, source)
    if suffix == ".jsonl":
        rows, lines = _parse_jsonl(text, source)
        return rows, source, lines
    if suffix == ".json":
        return _parse_json(text, source), source, None
    return _read_csv(path), source, None


def _decode_utf8(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{source}: not valid UTF-8: byte 0x{raw[exc.start]:02x} at byte offset {exc.start} (line {line}); "
            "re-save the file as UTF-8"
        ) from None


def _parse_jsonl(text: str, source: str) -> tuple[list[dict[str, Any]], list[int]]:
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{source}: line {number} is not valid JSON ({exc.msg} at column {exc.colno})") from None
        except RecursionError:
            raise DataError(f"{source}: line {number} is nested too deeply to be a data row") from None
        if not isinstance(row, dict):
            raise DataError(f"{source}: line {number} is a JSON {type(row).__name__}; each line must be an object")
        rows.append(row)
        lines.append(number)
    return rows, lines


def _parse_json(text: str, source: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise DataError(f"{source}: nested too deeply to be a data set") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1 and all(isinstance(r, dict) for r in lists[0]):
            data = lists[0]
        elif data and all(isinstance(v, list) for v in data.values()):
            lengths = {len(v) for v in data.values()}
            if len(lengths) != 1:
                raise DataError(f"{source}: column lists have different lengths {sorted(lengths)}")
            data = [dict(zip(data, values, strict=True)) for values in zip(*data.values(), strict=True)]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{source}: expected a JSON list of objects (one per row) or an object of column lists")
    if not data:
        raise DataError(f"{source}: no rows")
    return data


def _read_csv(path: Path) -> list[dict[str, Any]]:
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    if frame.empty:
        raise DataError(f"{path}: no rows")
    return frame.to_dict(orient="records")


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    if frame.empty:
        raise DataError(f"{path}: no rows")
    return [_plain(row) for row in frame.to_dict(orient="records")]


def _plain(value: Any) -> Any:
    """Parquet list columns come back as numpy arrays; make them lists of plain values."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _plain(value.tolist())
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _load_hub(path: str, split: str) -> list[dict[str, Any]]:
    from planner.models import _hub_reachable

    # Offline, the datasets client retries for about half a minute before it gives up: look in its
    # local cache only (a data set loaded here before, or a copied HF_DATASETS_CACHE), or answer now.
    if not _hub_reachable():
        cached = _load_cached_hub(path, split)
        if cached is None:
            raise DataError(
                f"{path}: no such local file, the Hugging Face hub cannot be reached to load it as a hub data set, "
                "and it is not in the local datasets cache; download the data elsewhere and give a local "
                ".jsonl/.json/.csv/.parquet file instead, e.g. runners/data/demo_preferences.jsonl"
            )
        if len(cached) == 0:
            raise DataError(f"{path}: split {split!r} has no rows")
        return cached.to_list()
    try:
        from datasets import load_dataset

        dataset = load_dataset(path, split=split)
    except Exception as exc:  # offline, unknown id, bad split: all mean "use a local file"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{path}: no such local file, and loading it as a hub data set failed ({first_line}). "
            "If the hub is unreachable, download the data elsewhere and give a local .jsonl/.json/.csv/.parquet "
            "file instead, e.g. runners/data/demo_preferences.jsonl"
        ) from None
    if len(dataset) == 0:
        raise DataError(f"{path}: split {split!r} has no rows")
    return dataset.to_list()


def _load_cached_hub(path: str, split: str):
    """The hub data set from datasets' local cache, without any network call; None when absent."""
    import datasets

    offline = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = True  # datasets reads the flag at call time: cache only, no retries
    try:
        return datasets.load_dataset(path, split=split)
    except Exception:  # not cached, or cached without this split
        return None
    finally:
        datasets.config.HF_HUB_OFFLINE = offline


def apply_column_mapping(rows: list[dict[str, Any]], mapping: dict[str, str], source: str) -> list[dict[str, Any]]:
    """Rename columns {old: new}; a mapped column that is missing is an error naming the found columns."""
    if not mapping:
        return rows
    found = _columns(rows)
    missing = [old for old in mapping if old not in found]
    if missing:
        raise DataError(
            f"{source}: dataset.columns maps {missing} but the data has no such column; found columns {found}"
        )
    return [{mapping.get(k, k): v for k, v in row.items()} for row in rows]


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    return sorted(rows[0]) if rows else []


# --- validation ---------------------------------------------------------------------------------

REQUIRED: dict[str, tuple[str, ...]] = {
    "preference": ("prompt", "chosen", "rejected"),
    "preference-implicit": ("chosen", "rejected"),
    "preference-conversational": ("prompt", "chosen", "rejected"),
    "preference-messages": ("chosen", "rejected"),
    "hh-transcript": ("chosen", "rejected"),
    "unpaired": ("prompt", "completion", "label"),
    "prompt-only": ("prompt",),
    "prompt-completion": ("prompt", "completion"),
    "sft-messages": ("messages",),
    "text": ("text",),
    "responses": ("prompt", "responses"),
    "response-pair": ("prompt", "response_a", "response_b"),
}


def validate_rows(rows: list[dict[str, Any]], name: str, source: str, line_numbers: list[int] | None) -> None:
    """Every row has the format's columns with non-empty values of the right type."""
    required = REQUIRED[name]
    for index, row in enumerate(rows):
        where = _where(source, index, line_numbers)
        missing = [c for c in required if c not in row]
        if missing:
            raise DataError(
                f"{where}: missing column(s) {missing} for format {name!r}; found columns {sorted(row)}, "
                f"expected {list(required)}"
            )
        for column in required:
            _check_value(row[column], column, name, where)


def check_prompts(rows: list[dict[str, Any]], name: str, source: str, line_numbers: list[int] | None) -> None:
    """A preference pair whose prompt came out empty has nothing to condition on: say which row."""
    if name not in ("preference-messages", "preference-conversational"):
        return
    for index, row in enumerate(rows):
        if "prompt" in row and not row["prompt"]:
            raise DataError(
                f"{_where(source, index, line_numbers)}: chosen and rejected share no prompt turns and there is "
                "no prompt column; put the user turns at the start of both lists or add a prompt column"
            )


def _where(source: str, index: int, line_numbers: list[int] | None) -> str:
    if line_numbers is not None:
        return f"{source}: row {index + 1} (line {line_numbers[index]})"
    return f"{source}: row {index + 1}"


def _check_value(value: Any, column: str, name: str, where: str) -> None:
    if column == "label":
        if _as_label(value) is None:
            raise DataError(f"{where}, column 'label': expected true/false (or 1/0), got {value!r}")
        return
    if column == "responses":
        if not isinstance(value, list) or len(value) < 2 or not all(isinstance(v, str) and v.strip() for v in value):
            raise DataError(f"{where}, column 'responses': expected a list of two or more non-empty strings")
        return
    wants_messages = name in ("preference-conversational", "preference-messages", "sft-messages") or (
        name in ("prompt-only", "prompt-completion", "unpaired") and isinstance(value, list)
    )
    if wants_messages:
        if not _is_messages(value):
            raise DataError(
                f"{where}, column {column!r}: expected a list of {{role, content}} messages, got {_kind(value)}"
            )
        if not value:
            raise DataError(f"{where}, column {column!r}: empty message list")
        for turn, message in enumerate(value, start=1):
            if not str(message.get("content", "")).strip():
                raise DataError(f"{where}, column {column!r}: message {turn} has empty content")
        return
    if not isinstance(value, str):
        raise DataError(f"{where}, column {column!r}: expected a string, got {_kind(value)}")
    if not value.strip():
        raise DataError(f"{where}, column {column!r}: empty string")
    if name == "hh-transcript" and HH_ASSISTANT not in value:
        raise DataError(f"{where}, column {column!r}: no '\\n\\nAssistant:' turn in the transcript")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)


def _as_label(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    return None


# --- normalization ------------------------------------------------------------------------------

# Online methods score their own samples: a reward function may read the data's other columns (an
# `answer` to match, test cases), which reach it as keyword lists (TRL's reward-function convention).
ONLINE_METHODS = ("grpo", "rloo", "ppo")
# Methods that read only prompts: from pairs or unpaired rows, each prompt once.
PROMPT_METHODS = ("grpo", "rloo", "ppo", "generate", "cai-generate")
_FORMAT_COLUMNS = frozenset({"prompt", "chosen", "rejected", "completion", "label", "messages", "text"})


def _column_kind(value: Any) -> str | None:
    """A kind every row of a kept column must share (Arrow needs one type per column); None: not kept."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "list-of-str"
    return None


def reward_columns(rows: Sequence[dict[str, Any]], name: str) -> list[str]:
    """The columns beside the format's own that every row has with one simple type (strings, numbers,
    booleans, lists of strings; missing or null values allowed): what a reward function may read."""
    if not rows:
        return []
    own = _FORMAT_COLUMNS | set(REQUIRED.get(name, ()))
    kept = []
    for column in rows[0]:
        if column in own:
            continue
        kinds = {_column_kind(row.get(column)) for row in rows} - {"none"}
        if len(kinds) == 1 and None not in kinds:
            kept.append(column)
    return kept


def with_reward_columns(rows: Sequence[dict[str, Any]], normalized: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The normalized rows (one per input row for the online methods) with the reward columns added."""
    columns = reward_columns(rows, name)
    if not columns or len(rows) != len(normalized):
        return normalized
    return [{**out, **{c: row.get(c) for c in columns}} for row, out in zip(rows, normalized, strict=True)]



def normalize(rows: Iterable[dict[str, Any]], name: str, method: str) -> list[dict[str, Any]]:
    """Rows in the shape the method's TRL trainer expects (extra columns are dropped here; the online
    methods get the reward columns back in load_and_normalize)."""
    if method == "rlaif-label":  # every accepted format becomes {prompt, responses: [...]}
        if name == "responses":
            return [{"prompt": r["prompt"], "responses": list(r["responses"])} for r in rows]
        if name == "response-pair":
            return [{"prompt": r["prompt"], "responses": [r["response_a"], r["response_b"]]} for r in rows]
        pairs = [to_explicit_preference(row, name) for row in rows]
        return [{"prompt": p["prompt"], "responses": [p["chosen"], p["rejected"]]} for p in pairs]
    if name in PREFERENCE_FORMATS:
        pairs = [to_explicit_preference(row, name) for row in rows]
        if method == "kto":
            return unpair(pairs)
        if method in ("grpo", "rloo", "ppo", "generate", "cai-generate"):
            return [{"prompt": p["prompt"]} for p in pairs]
        if method == "sft":
            return [{"prompt": p["prompt"], "completion": p["chosen"]} for p in pairs]
        return pairs
    if name == "unpaired":
        if method == "kto":
            return [{"prompt": r["prompt"], "completion": r["completion"], "label": _as_label(r["label"])} for r in rows]
        return [{"prompt": r["prompt"]} for r in rows]
    if name == "prompt-completion":
        if method == "sft":
            return [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]
        return [{"prompt": r["prompt"]} for r in rows]
    if name == "prompt-only":
        return [{"prompt": r["prompt"]} for r in rows]
    if name == "sft-messages":
        return [{"messages": [_message(m) for m in r["messages"]]} for r in rows]
    return [{"text": r["text"]} for r in rows]


def to_explicit_preference(row: dict[str, Any], name: str) -> dict[str, Any]:
    """prompt/chosen/rejected with the prompt split off (strings, or message lists)."""
    if name == "preference":
        return {"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"]}
    if name == "preference-conversational":
        return {
            "prompt": [_message(m) for m in row["prompt"]],
            "chosen": [_message(m) for m in row["chosen"]],
            "rejected": [_message(m) for m in row["rejected"]],
        }
    if name == "preference-messages":
        chosen = [_message(m) for m in row["chosen"]]
        rejected = [_message(m) for m in row["rejected"]]
        shared = _common_prefix_length(chosen, rejected)
        # The answer is at least the last turn, even when both lists end identically.
        shared = min(shared, len(chosen) - 1, len(rejected) - 1)
        prompt = chosen[:shared]
        if not prompt and isinstance(row.get("prompt"), str) and row["prompt"].strip():
            prompt = [{"role": "user", "content": row["prompt"]}]  # answers only, question in a prompt column
        return {"prompt": prompt, "chosen": chosen[shared:], "rejected": rejected[shared:]}
    if name == "hh-transcript":
        prompt, chosen = split_hh(row["chosen"])
        _, rejected = split_hh(row["rejected"])
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    # implicit string prompt: the shared prefix, cut back to a word boundary so no word is split.
    chosen, rejected = row["chosen"], row["rejected"]
    cut = _common_prefix_length(chosen, rejected)
    while cut > 0 and not chosen[cut - 1].isspace():
        cut -= 1
    return {"prompt": chosen[:cut], "chosen": chosen[cut:], "rejected": rejected[cut:]}


def split_hh(transcript: str) -> tuple[str, str]:
    """Split an HH transcript at its last Assistant turn: (prompt ending in 'Assistant:', answer)."""
    cut = transcript.rfind(HH_ASSISTANT) + len(HH_ASSISTANT)
    return transcript[:cut], transcript[cut:]


def unpair(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each pair becomes a desirable (chosen) and an undesirable (rejected) row for KTO."""
    rows: list[dict[str, Any]] = []
    for pair in pairs:
        rows.append({"prompt": pair["prompt"], "completion": pair["chosen"], "label": True})
        rows.append({"prompt": pair["prompt"], "completion": pair["rejected"], "label": False})
    return rows


def _message(message: dict[str, Any]) -> dict[str, str]:
    return {"role": str(message["role"]), "content": str(message["content"])}


def _common_prefix_length(a: Sequence[Any], b: Sequence[Any]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
