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
from collections.abc import Iterable, Iterator, Sequence
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
    warnings: tuple[str, ...] = ()  # problems that leave the data usable (some pairs without signal)

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
    The file is read row by row (scan_rows); only the normalized rows are kept."""
    from datasets import Dataset
    from datasets.table import InMemoryTable

    scan = scan_rows(dataset_spec, method, keep_rows=True)
    # Given a fingerprint, datasets does not hash the whole table to make one (that hashing peaked at
    # four times the table's size); the file's identity and what was asked of it name the rows.
    return Dataset(InMemoryTable(scan.table), fingerprint=_fingerprint(dataset_spec, method, scan)), scan.format


def _fingerprint(dataset_spec: Any, method: str, scan: Scan) -> str:
    path, split, columns, forced = _unpack_spec(dataset_spec)
    local = Path(path).expanduser()
    stat = local.stat() if local.is_file() else None
    identity = [str(local.resolve()) if stat else path, split, stat and stat.st_size, stat and stat.st_mtime_ns,
                sorted(columns.items()), forced, method, scan.format.name, scan.format.rows]
    return f"{digest(json.dumps(identity, default=str)):016x}"


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

    train, held_out = split_indices([prompt_key(row) for row in rows], fraction, seed, source)
    return [rows[i] for i in train], [rows[i] for i in held_out]


def split_indices(keys: Sequence[str], fraction: float, seed: int, source: str = "data") -> tuple[list[int], list[int]]:
    """split_by_prompt on the rows' prompt keys: (train row indices, held-out row indices), in order."""
    import random

    prompts = sorted(set(keys))
    n_eval = held_out_count(len(prompts), fraction, source)
    held = set(random.Random(seed).sample(prompts, n_eval))
    train = [i for i, key in enumerate(keys) if key not in held]
    return train, [i for i, key in enumerate(keys) if key in held]


def split_dataset_by_prompt(dataset: datasets.Dataset, fraction: float, seed: int,
                            source: str = "data") -> tuple[datasets.Dataset, datasets.Dataset]:
    """split_by_prompt on a data set without turning its rows into Python objects: only the column
    prompt_key reads (prompt, messages or text) is read, a batch at a time."""
    column = next(c for c in ("prompt", "messages", "text") if c in dataset.column_names)
    keys = [prompt_key({column: value}) for batch in dataset.select_columns([column]).iter(batch_size=4096)
            for value in batch[column]]
    train, held_out = split_indices(keys, fraction, seed, source)
    return dataset.select(train), dataset.select(held_out)


def held_out_count(prompts: int, fraction: float, source: str = "data") -> int:
    """The prompts split_by_prompt holds out, round(prompts x fraction); DataError when that leaves
    no evaluation rows or no training rows."""
    n_eval = round(prompts * fraction)
    if n_eval < 1:
        raise DataError(f"{source}: eval_fraction {fraction} of {prompts} distinct prompts leaves no "
                        "evaluation rows (the held-out split is made by prompt)")
    if n_eval >= prompts:
        raise DataError(f"{source}: eval_fraction {fraction} of {prompts} distinct prompts leaves no "
                        "training rows (the held-out split is made by prompt)")
    return n_eval


# --- one pass over the rows ---------------------------------------------------------------------

# Methods that learn from the difference between chosen and rejected: a pair whose two answers are
# equal gives them nothing (DPO's loss is a constant; KTO gets the same answer as good and as bad).
PAIR_METHODS = ("dpo", "ipo", "orpo", "simpo", "rm", "kto")
SAMPLE_ROWS = 8  # normalized rows a check keeps (the reward check calls the function on two of them)


@dataclass
class Scan:
    """What one pass over the data found. rows: the first few normalized rows; table: every
    normalized row as an Arrow table (keep_rows), else None."""

    format: DetectedFormat
    rows: list[dict[str, Any]]
    input_rows: int  # rows read
    prompts: int  # distinct prompts (by an 8-byte digest of prompt_key)
    identical_pairs: int  # pairs with chosen equal to rejected (PAIR_METHODS)
    streamed: bool  # the file was read a row at a time
    table: Any = None  # pyarrow.Table


CHUNK_ROWS = 8192  # normalized rows held as Python objects before they become Arrow columns


def _arrow(rows: list[dict[str, Any]], leave_out: set[str]):
    """Rows as an Arrow table, typed as datasets.Dataset.from_list types them (the first row's keys),
    without the columns in leave_out (reward columns found with two types: dropped at the end)."""
    import pyarrow as pa

    if leave_out:
        rows = [{k: v for k, v in row.items() if k not in leave_out} for row in rows]
    return pa.Table.from_pylist(rows)


def _mixed(kinds: dict[str, set[str | None]]) -> set[str]:
    """Columns that are not one simple type in every row so far (missing or null values aside)."""
    return {c for c, seen in kinds.items() if len(seen - {"none"}) > 1 or None in seen}


def _first_of_each(table) -> list[int]:
    """Indices of the rows that are not exact repeats of an earlier row (unique_rows' key)."""
    seen: set[int] = set()
    keep = []
    index = 0
    for batch in table.to_batches(max_chunksize=CHUNK_ROWS):
        for row in batch.to_pylist():
            key = digest(json.dumps(row, sort_keys=True, default=str))
            if key not in seen:
                seen.add(key)
                keep.append(index)
            index += 1
    return keep


def digest(text: str) -> int:
    """An 8-byte blake2b digest as an int: 8 bytes a row in an array('Q') instead of the text."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def _distinct(digests: Any) -> int:
    import numpy as np

    return int(np.unique(np.frombuffer(digests, dtype=np.uint64)).size) if len(digests) else 0


def scan_rows(dataset_spec: Any, method: str, keep_rows: bool = False, sample: int = SAMPLE_ROWS) -> Scan:
    """Read, validate and normalize the data for method in one pass, a row at a time.

    The runner's check (keep_rows False) keeps the first `sample` normalized rows and, per row, an
    8-byte digest of its prompt (and, for the prompt-only methods, of the whole row, to count repeats):
    its memory is the reader's (one JSONL line, one CSV record, one 1024-row Parquet batch) plus 8-16
    bytes a row. The recipe (keep_rows True) keeps every normalized row. Both run the same checks:
    the format from the first row (a wrong type in it named by row and column, a misspelt column
    named), every row's columns and values, empty shared prompts, pairs whose answers are equal (all:
    an error; some: a warning with the count and the first row), and the held-out split's prompt count."""
    from array import array

    path, split, columns, forced = _unpack_spec(dataset_spec)
    if method not in ACCEPTED:
        raise DataError(f"method {method!r} has no data rules; accepted: {', '.join(ACCEPTED)}")
    stream, source, streamed = stream_rows(path, split)
    if forced is not None and forced not in FORMATS:
        raise DataError(f"{source}: dataset.format {forced!r} is not a known format; accepted: {', '.join(FORMATS)}")
    name: str = forced or ""
    online = method in ONLINE_METHODS
    candidates: list[str] = []  # the first row's other columns: reward columns if one type throughout
    kinds: dict[str, set[str | None]] = {}
    prompts = array("Q")
    repeats = array("Q")
    dedup = False
    kept: list[dict[str, Any]] = []
    chunk: list[dict[str, Any]] = []  # keep_rows: the rows not yet in an Arrow table
    tables: list[Any] = []
    out_count = identical = index = 0
    first_identical = ""
    for line, row in stream:
        if isinstance(row, str):
            raise DataError(f"{source}: {row}")
        where = where_row(source, index, line)
        if index == 0:
            if columns:
                missing = [old for old in columns if old not in row]
                if missing:
                    raise DataError(f"{source}: dataset.columns maps {missing} but the data has no such column; "
                                    f"found columns {sorted(row)}")
            mapped = {columns.get(k, k): v for k, v in row.items()} if columns else row
            if not forced:
                try:
                    name = detect_format([mapped], source=source, where=where).name
                except DataError:
                    typo = misspelt_column(mapped, None, method)
                    if typo:
                        raise DataError(f"{where}: {typo}") from None
                    raise
                typo = misspelt_column(mapped, name, method)
                if typo:
                    raise DataError(f"{where}: {typo}")
            if name not in ACCEPTED[method]:
                raise DataError(
                    f"{source}: detected format {name!r} ({FORMATS[name]}) does not suit method {method!r}, which "
                    f"expects {EXPECTED_COLUMNS[method]}; found columns {sorted(mapped)}"
                )
            own = _FORMAT_COLUMNS | set(REQUIRED[name])
            candidates = [c for c in mapped if c not in own] if online else []
            dedup = method in PROMPT_METHODS and (name in PREFERENCE_FORMATS or name == "unpaired")
        if columns:
            row = {columns.get(k, k): v for k, v in row.items()}
        validate_row(row, name, where)
        out = normalize([row], name, method)
        if method != "sft" or name != "preference-implicit":  # SFT trains on an empty prompt as plain text
            for o in out:
                check_prompt(o, name, where)
        if method in PAIR_METHODS and name in PREFERENCE_FORMATS and row["chosen"] == row["rejected"]:
            identical += 1
            first_identical = first_identical or where.removeprefix(f"{source}: ")
        if candidates:
            for c in candidates:
                kinds.setdefault(c, set()).add(_column_kind(row.get(c)))
            out = [{**o, **{c: row.get(c) for c in candidates}} for o in out]
        for o in out:
            prompts.append(digest(prompt_key(o)))
            if dedup and not keep_rows:
                repeats.append(digest(json.dumps(o, sort_keys=True, default=str)))
        if len(kept) < sample:
            kept.extend(out[: sample - len(kept)])
        if keep_rows:
            chunk.extend(out)
            if len(chunk) >= CHUNK_ROWS:
                tables.append(_arrow(chunk, _mixed(kinds)))
                chunk = []
        out_count += len(out)
        index += 1
    if index == 0:
        raise DataError(f"{source}: no rows")
    drop: set[str] = set()
    if candidates:  # keep the columns with one simple type in every row (Arrow needs one type per column)
        drop = _mixed(kinds) | {c for c in candidates if not kinds[c] - {"none"}}
        if drop:
            kept = [{k: v for k, v in o.items() if k not in drop} for o in kept]
    table = None
    if keep_rows:
        import pyarrow as pa

        if chunk or not tables:
            tables.append(_arrow(chunk, drop))
        tables = [t.drop_columns(sorted(drop & set(t.column_names))) for t in tables]
        # a chunk whose reward column is all null, or all integers, types it differently: promote
        table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    dropped = 0
    if dedup:
        if table is not None:
            unique = _first_of_each(table)
            dropped = table.num_rows - len(unique)
            if dropped:
                table = table.take(unique)
        else:  # counted on the digest of each row with all its other columns (the dropped ones too)
            dropped = out_count - _distinct(repeats)
        if dropped:
            kept = unique_rows(kept)
    warnings: list[str] = []
    if identical and identical == index:
        raise DataError(
            f"{source}: chosen equals rejected in all {index} pairs (first at {first_identical}): there is no "
            "preference to learn; expected chosen and rejected to be two different answers (check the column mapping)"
        )
    if identical:
        warnings.append(f"{source}: chosen equals rejected in {identical} of {index} pairs (first at "
                        f"{first_identical}): they carry no preference and only cost compute; drop them")
    distinct_prompts = _distinct(prompts)
    fraction = _eval_fraction(dataset_spec)
    if fraction > 0:
        held_out_count(distinct_prompts, fraction, source)
    fmt = DetectedFormat(name, FORMATS[name], rows=out_count - dropped, source=source, duplicates_dropped=dropped,
                         warnings=tuple(warnings))
    return Scan(fmt, kept, index, distinct_prompts, identical, streamed, table)


def _eval_fraction(spec: Any) -> float:
    if isinstance(spec, dict):
        return float(spec.get("eval_fraction") or 0.0)
    return float(getattr(spec, "eval_fraction", 0.0) or 0.0)


def detect_format(rows: Sequence[dict[str, Any]], source: str = "data", where: str | None = None) -> DetectedFormat:
    """Name the format of rows from their columns and the first row's value types. A first row whose
    chosen/rejected/messages value is neither text nor a list of messages is an error naming that row
    and column (where: how to name the first row, default 'SOURCE: row 1')."""
    if not rows:
        raise DataError(f"{source}: no rows")
    first = rows[0]
    cols = set(first)
    name = _detect_name(first, cols)
    if name is None:
        where = where or f"{source}: row 1"
        for column in ("chosen", "rejected", "messages") if {"chosen", "rejected"} <= cols or "messages" in cols else ():
            if column in first and not isinstance(first[column], str):
                problem = message_problem(first[column])
                if problem:
                    raise DataError(f"{where}, column {column!r}: {problem}; expected "
                                    f"{'a list of {role, content} messages' if column == 'messages' else 'a string or a list of {role, content} messages'}")
        raise DataError(
            f"{source}: cannot tell the data format from columns {sorted(cols)}; expected one of: "
            "prompt/chosen/rejected, chosen/rejected, prompt/completion/label, prompt, messages, "
            "prompt/completion, text (rename columns with dataset.columns, e.g. {'question': 'prompt'})"
        )
    return DetectedFormat(name, FORMATS[name], rows=len(rows), source=source)


# Every column some format reads: a column a letter or two away from one of these is a likely typo.
KNOWN_COLUMNS = ("prompt", "chosen", "rejected", "completion", "label", "messages", "text", "responses",
                 "response_a", "response_b")


def misspelt_column(first: dict[str, Any], name: str | None, method: str) -> str | None:
    """The error for a column that looks like a misspelling of a format column (difflib, ratio 0.8)
    when reading it as that column would give a different format the method accepts: {prompt,
    chosen, rejeted} is read as prompt-only, and would silently train GRPO on prompts alone."""
    import difflib

    cols = set(first)
    for column in sorted(cols):
        if column in KNOWN_COLUMNS:
            continue
        close = difflib.get_close_matches(column, [k for k in KNOWN_COLUMNS if k not in cols], n=1, cutoff=0.8)
        if not close:
            continue
        renamed = {(close[0] if k == column else k): v for k, v in first.items()}
        meant = _detect_name(renamed, set(renamed))
        if meant is not None and meant != name and meant in ACCEPTED.get(method, (meant,)):
            read_as = f"it is read as format {name!r} ({FORMATS[name]})" if name else "the format cannot be told"
            return (f"column {column!r} is not known; did you mean {close[0]!r}? As written {read_as}; with "
                    f"{close[0]!r} it would be {meant!r} ({FORMATS[meant]}). Rename the column, or map it with "
                    f"dataset.columns {{{column!r}: {close[0]!r}}}")
    return None


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
    """Rows of a local file or hub data set, the name to use in messages, and JSONL line numbers.
    Holds every row: for a large file, iterate stream_rows instead."""
    stream, source, _ = stream_rows(path, split)
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    for line, row in stream:
        if isinstance(row, str):
            raise DataError(f"{source}: {row}")
        rows.append(row)
        if line is not None:
            lines.append(line)
    if not rows:
        raise DataError(f"{source}: no rows")
    return rows, source, lines if len(lines) == len(rows) else None


# (JSONL line number or None, the row) for a readable row; (line number or None, what is wrong) for
# a row that cannot be read, so that a caller may stop (the runner) or count and go on (the doctor).
RowStream = Iterator[tuple[int | None, "dict[str, Any] | str"]]


def stream_rows(path: str, split: str = "train") -> tuple[RowStream, str, bool]:
    """(rows one at a time, the name to use in messages, whether the file is read row by row).

    Local JSONL is read a line at a time, CSV a record at a time, Parquet a batch of rows at a time;
    a JSON document up to JSON_WHOLE_LIMIT bytes and a hub data set are read whole (streamed False).
    A file-level problem (not found, empty, not Parquet, a JSON document too large) raises DataError."""
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
        suffix = local.suffix.lower()
        if suffix not in LOCAL_SUFFIXES:
            raise DataError(f"{local}: unsupported file type {suffix or '(none)'!r}; accepted: {', '.join(LOCAL_SUFFIXES)}")
        if local.stat().st_size == 0:
            raise DataError(f"{local}: the file is empty")
        reader = {".jsonl": _iter_jsonl, ".csv": _iter_csv, ".parquet": _iter_parquet, ".json": _iter_json}[suffix]
        return reader(local), str(local), suffix != ".json"
    if local.suffix.lower() in LOCAL_SUFFIXES or path.startswith((".", "/", "~")):
        raise DataError(f"{path}: file not found")
    rows = _load_hub(path, split)
    return ((None, row) for row in rows), f"{path} (hub, split {split!r})", False


# A JSON document has to be parsed whole (about ten times its size in memory as Python objects);
# above this size the runner asks for JSON Lines, which it reads a row at a time.
JSON_WHOLE_LIMIT = 256 * 2**20


def _iter_jsonl(path: Path) -> RowStream:
    """One line in memory at a time. Lines end at \\n only (a U+2028 inside a string stays in its row)."""
    source = str(path)
    offset = 0
    seen = False
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            start = offset
            offset += len(raw)
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw, start = raw[3:], 3
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                seen = True
                yield number, (f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at byte offset {start + exc.start} "
                               f"(line {number}); re-save the file as UTF-8")
                continue
            if not line.strip():
                continue
            seen = True
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, f"line {number} is not valid JSON ({exc.msg} at column {exc.colno})"
                continue
            except RecursionError:
                yield number, f"line {number} is nested too deeply to be a data row"
                continue
            if not isinstance(row, dict):
                yield number, f"line {number} is a JSON {type(row).__name__}; each line must be an object"
                continue
            yield number, row
    if not seen:
        raise DataError(f"{source}: the file is empty")


def _iter_json(path: Path) -> RowStream:
    size = path.stat().st_size
    if size > JSON_WHOLE_LIMIT:
        raise DataError(
            f"{path}: a {size / 2**20:.0f} MiB JSON document is parsed whole (about ten times its size in memory); "
            f"above {JSON_WHOLE_LIMIT // 2**20} MiB give JSON Lines instead, one object per line, which is read a "
            "row at a time (e.g. jq -c '.[]' data.json > data.jsonl)"
        )
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: the file is empty")
    for row in _parse_json(_decode_utf8(raw, str(path)), str(path)):
        yield None, row


def _iter_csv(path: Path) -> RowStream:
    """Every value a string, as written (no type guessing); a record with too many fields is a bad row."""
    import csv

    csv.field_size_limit(2**31 - 1)  # a long answer is one field; the default limit is 128 KiB
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None or not any(h.strip() for h in header):
                raise DataError(f"{path}: the file is empty" if header is None else f"{path}: no header row")
            for record in reader:
                if not record:
                    continue  # a blank line
                if len(record) > len(header):
                    yield None, (f"line {reader.line_num} has {len(record)} fields but the header has "
                                 f"{len(header)}; quote values that contain commas")
                    continue
                yield None, dict(zip(header, record + [""] * (len(header) - len(record)), strict=True))
        except csv.Error as exc:
            raise DataError(f"{path}: not a readable CSV file (line {reader.line_num}: {exc})") from None
        except UnicodeDecodeError:
            raise DataError(f"{path}: not valid UTF-8 near line {reader.line_num + 1}; re-save the file as UTF-8") from None


def _iter_parquet(path: Path) -> RowStream:
    """A batch of rows at a time (list columns come back as plain lists)."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                yield None, row
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None


def _decode_utf8(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{source}: not valid UTF-8: byte 0x{raw[exc.start]:02x} at byte offset {exc.start} (line {line}); "
            "re-save the file as UTF-8"
        ) from None


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
    for index, row in enumerate(rows):
        validate_row(row, name, _where(source, index, line_numbers))


def validate_row(row: dict[str, Any], name: str, where: str) -> None:
    """The row has the format's columns with non-empty values of the right type; where names the row."""
    required = REQUIRED[name]
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
    for index, row in enumerate(rows):
        check_prompt(row, name, _where(source, index, line_numbers))


def check_prompt(row: dict[str, Any], name: str, where: str) -> None:
    """A normalized pair whose shared prompt came out empty: the answers condition on nothing."""
    if "prompt" not in row or row["prompt"]:
        return
    if name in ("preference-messages", "preference-conversational"):
        raise DataError(
            f"{where}: chosen and rejected share no prompt turns and there is "
            "no prompt column; put the user turns at the start of both lists or add a prompt column"
        )
    if name == "preference-implicit":
        raise DataError(
            f"{where}, columns 'chosen'/'rejected': they share no prompt (they differ from the first word); "
            "expected both to start with the same prompt text, or a prompt column"
        )


def _where(source: str, index: int, line_numbers: list[int] | None) -> str:
    return where_row(source, index, line_numbers[index] if line_numbers is not None else None)


def where_row(source: str, index: int, line: int | None) -> str:
    """How a message names a row: 'SOURCE: row 3 (line 5)' (JSONL) or 'SOURCE: row 3'."""
    return f"{source}: row {index + 1}" + (f" (line {line})" if line is not None else "")


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
        if not isinstance(value, list):
            raise DataError(
                f"{where}, column {column!r}: expected a list of {{role, content}} messages, got {_kind(value)}"
            )
        if not value:
            raise DataError(f"{where}, column {column!r}: empty message list")
        problem = message_problem(value)
        if problem:
            raise DataError(f"{where}, column {column!r}: {problem}; expected a list of {{role, content}} messages "
                            "with string role and non-empty string content")
        return
    if not isinstance(value, str):
        raise DataError(f"{where}, column {column!r}: expected a string, got {_kind(value)}")
    if not value.strip():
        raise DataError(f"{where}, column {column!r}: empty string")
    if name == "hh-transcript" and HH_ASSISTANT not in value:
        raise DataError(f"{where}, column {column!r}: no '\\n\\nAssistant:' turn in the transcript")


def message_problem(value: Any, allow_empty: bool = False) -> str | None:
    """What is wrong with a list of {role, content} messages, naming the message; None when nothing
    (allow_empty: empty content is not a problem here; the data doctor counts it as an empty field)."""
    if not isinstance(value, list):
        return f"got {_kind(value)}"
    for turn, message in enumerate(value, start=1):
        if not isinstance(message, dict):
            return f"message {turn} is {_kind(message)}, not an object"
        for key in ("role", "content"):
            if key not in message:
                return f"message {turn} has no {key!r} (keys {sorted(message)})"
            if not isinstance(message[key], str):
                return f"message {turn}'s {key!r} is {_kind(message[key])}"
        if not message["role"].strip():
            return f"message {turn} has an empty role"
        if not message["content"].strip() and not allow_empty:
            return f"message {turn} has empty content"
    return None


def _kind(value: Any) -> str:
    """How a message names a JSON value's type: null, a number, a list, an object (dict), a string."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object (dict)"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


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
