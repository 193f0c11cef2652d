"""The data doctor: look at a preference data set before paying for a run.

`inspect(path, ...)` reads the file once, line by line for JSONL (bounded memory: a few fixed-size
numbers per pair, and a random sample of whole pairs), and returns a JSON-able report: volume, lengths
(in the model's tokens, with its chat template, as TRL's DPO trainer tokenizes; or a whitespace-word
estimate), biases (length, hedging/confidence markers, position and source columns), signal and
hygiene (identical chosen/rejected, empty fields, exact and near-duplicate pairs, prompts shared
between train and held-out splits, concentrated rejected answers), structure (format, turns,
multi-turn pairs whose earlier turns differ), and optionally a reward model's agreement with the
labels. Every problem is a finding: a code, a severity (info, warning, error), the figure, and a
sentence on what it does to training and what to do. docs/data-doctor.md documents the report.

Each analysis is a plain function on small inputs (lists of numbers or strings), tested on its own.
This module imports nothing of runners beyond load.py (the format detection and normalization the
recipes use); torch and transformers are imported only when a tokenizer or reward model is asked for.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runners.data.load import (
    FORMATS,
    HH_ASSISTANT,
    HH_HUMAN,
    PREFERENCE_FORMATS,
    DataError,
    detect_format,
    message_problem,
    misspelt_column,
    split_by_prompt,
    split_hh,
    stream_rows,
    to_explicit_preference,
    where_row,
)

SCHEMA = "alignplan.data-doctor/1"
SEVERITIES = ("info", "warning", "error")
MARKERS_FILE = Path(__file__).resolve().parent / "doctor_markers.yaml"
DEFAULT_SAMPLE_SIZE = 10_000  # pairs kept whole for token counts, near-duplicates, n-grams, the split check
REWARD_SAMPLE_SIZE = 1_000  # pairs the reward model scores
FIELDS = ("prompt", "chosen", "rejected")

# Where a finding starts. Each is a share of pairs unless said otherwise; docs/data-doctor.md lists them.
THRESHOLDS: dict[str, float] = {
    "length_bias_share": 0.70,  # chosen longer (or shorter) in at least this share of pairs with different lengths
    "marker_bias_share": 0.75,  # chosen has more markers in this share of the pairs where the counts differ
    "marker_min_share": 0.05,  # ... and those pairs are at least this share of all pairs
    "near_duplicate_share": 0.01,
    "near_duplicate_jaccard": 0.80,  # MinHash estimate of the Jaccard similarity of character 5-grams
    "rejected_distinct_ratio": 0.50,  # distinct rejected answers / pairs below this
    "ngram_rejected_share": 0.50,  # an n-gram in this share of rejected answers ...
    "ngram_chosen_share": 0.10,  # ... and in under this share of chosen answers separates them alone
    "position_skew_share": 0.65,  # one value of a position column in this share of pairs
    "source_skew_share": 0.90,  # one value of a source column in this share of pairs
    "reward_agreement": 0.65,  # a reward model agreeing with fewer labels than this
}
SPLIT_COLUMNS = ("split",)
POSITION_COLUMNS = ("position", "chosen_position", "chosen_index", "chosen_first", "order", "winner", "preferred")
SOURCE_COLUMNS = ("source", "chosen_source", "chosen_model", "model", "origin", "annotator", "dataset")
HELD_OUT_SPLITS = ("test", "eval", "validation", "valid", "val", "dev", "heldout", "held_out", "held-out")
_MAX_DISTINCT_VALUES = 1_000  # values counted per position/source column; the rest count as "(other)"
_EXAMPLES = 5


# --- findings -------------------------------------------------------------------------------------


@dataclass
class Finding:
    code: str
    severity: str
    message: str  # what it does to training, and what to do
    value: float | int | None = None  # the figure the finding is about
    field: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "field": self.field, "value": self.value,
                "message": self.message}


def pct(share: float) -> str:
    return f"{100 * share:.0f}%" if share >= 0.01 or share == 0 else f"{100 * share:.2f}%"


# --- reading --------------------------------------------------------------------------------------


def iter_rows(path: str, split: str = "train") -> tuple[Iterator[tuple[int | None, dict[str, Any] | str]], bool, str]:
    """(rows, streamed, source name): the runner's reader (load.stream_rows), one row at a time for
    JSONL, CSV and Parquet; (line, problem) for a row that cannot be read, which the doctor counts."""
    rows, source, streamed = stream_rows(path, split)
    return rows, streamed, source


# --- one pair -------------------------------------------------------------------------------------


@dataclass
class Pair:
    """One preference pair, normalized as the recipe will, with the plain-text forms the doctor reads."""

    prompt: Any  # str or messages, as to_explicit_preference returns them
    chosen: Any
    rejected: Any
    texts: tuple[str, str, str]  # prompt, chosen, rejected as plain text
    conversational: bool
    turns: int  # messages (or Human/Assistant turns) in the conversation prompt + chosen
    early_turns_differ: bool  # multi-turn: chosen and rejected differ before their last turn
    empty: tuple[str, ...]  # the fields that are empty
    line: int | None = None
    index: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def as_text(value: Any) -> str:
    """A string as it is; messages as 'role: content' lines."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" if isinstance(m, dict) else str(m)
                         for m in value)
    return "" if value is None else str(value)


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list):
        return not value or any(isinstance(m, dict) and not str(m.get("content", "")).strip() for m in value)
    return False


def _messages(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def early_turns_differ(row: dict[str, Any], fmt: str) -> bool:
    """Whether chosen and rejected differ before their final answer: the loss then compares two
    different conversations, and which earlier tokens count in the log-ratio is no longer clear."""
    if fmt in ("preference-messages", "preference-conversational"):
        chosen, rejected = _messages(row.get("chosen")), _messages(row.get("rejected"))
        return chosen[:-1] != rejected[:-1]
    if fmt == "hh-transcript":
        chosen, rejected = str(row.get("chosen", "")), str(row.get("rejected", ""))
        return split_hh(chosen)[0] != split_hh(rejected)[0]
    return False


def count_turns(row: dict[str, Any], fmt: str) -> int:
    if fmt == "preference-conversational":
        return len(_messages(row.get("prompt"))) + len(_messages(row.get("chosen")))
    if fmt == "preference-messages":
        return len(_messages(row.get("chosen"))) + (1 if isinstance(row.get("prompt"), str)
                                                     and len(_messages(row.get("chosen"))) == 1 else 0)
    if fmt == "hh-transcript":
        text = str(row.get("chosen", ""))
        return text.count(HH_HUMAN) + text.count(HH_ASSISTANT)
    return 2


def read_pair(row: dict[str, Any], fmt: str) -> Pair:
    """The pair of a raw row of format fmt; ValueError when the row cannot be read as one."""
    empty = tuple(c for c in ("prompt", "chosen", "rejected")
                  if (c in row or c != "prompt" or fmt in ("preference", "preference-conversational"))
                  and _is_empty(row.get(c)))
    if "chosen" in empty or "rejected" in empty:
        # nothing to normalize: keep the pair with what it has so the counts stay whole
        prompt = row.get("prompt") or ""
        chosen, rejected = row.get("chosen") or "", row.get("rejected") or ""
        conv = isinstance(chosen, list) or isinstance(rejected, list)
        return Pair(prompt, chosen, rejected, (as_text(prompt), as_text(chosen), as_text(rejected)), conv,
                    count_turns(row, fmt), False, empty)
    try:
        p = to_explicit_preference(row, fmt)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"cannot read it as {fmt!r} ({type(exc).__name__}: {exc})") from None
    conv = isinstance(p["chosen"], list)
    if fmt in ("preference-implicit", "hh-transcript") and not p["prompt"].strip():
        empty = (*empty, "prompt")
    return Pair(p["prompt"], p["chosen"], p["rejected"], (as_text(p["prompt"]), as_text(p["chosen"]),
                as_text(p["rejected"])), conv, count_turns(row, fmt), early_turns_differ(row, fmt), empty)


# --- small measures -------------------------------------------------------------------------------


def word_count(text: str) -> int:
    return len(text.split())


def normalized(text: str) -> str:
    """Lower case, whitespace collapsed: the key under which two prompts count as the same."""
    return " ".join(text.lower().split())


def hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def quantiles(values: Sequence[float]) -> dict[str, float]:
    """mean, p50, p90, p95, p99 and max (linear interpolation); zeros for no values."""
    import numpy as np

    if len(values) == 0:
        return {"count": 0, "mean": 0.0, "p50": 0.0, "p90": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    a = np.asarray(values, dtype=float)
    q = np.percentile(a, [50, 90, 95, 99])
    return {"count": int(a.size), "mean": round(float(a.mean()), 2), "p50": float(q[0]), "p90": float(q[1]),
            "p95": float(q[2]), "p99": float(q[3]), "max": float(a.max())}


def histogram(series: dict[str, Sequence[float]], bins: int = 30) -> dict[str, Any]:
    """Counts of each series on shared bin edges (from 0 to the largest value)."""
    import numpy as np

    top = max((max(v) for v in series.values() if len(v)), default=0)
    edges = np.linspace(0, max(float(top), 1.0), bins + 1)
    return {"edges": [round(float(e), 2) for e in edges],
            "counts": {k: [int(c) for c in np.histogram(np.asarray(v, dtype=float), bins=edges)[0]]
                       for k, v in series.items()}}


def length_bias(chosen: Sequence[float], rejected: Sequence[float]) -> dict[str, Any]:
    """How often the chosen answer is the longer one, and by how much on average."""
    import numpy as np

    c, r = np.asarray(chosen, dtype=float), np.asarray(rejected, dtype=float)
    n = int(c.size)
    if n == 0:
        return {"pairs": 0, "chosen_longer_share": 0.0, "chosen_shorter_share": 0.0, "equal_share": 0.0,
                "mean_difference": 0.0, "mean_chosen": 0.0, "mean_rejected": 0.0}
    return {"pairs": n, "chosen_longer_share": float((c > r).mean()), "chosen_shorter_share": float((c < r).mean()),
            "equal_share": float((c == r).mean()), "mean_difference": round(float((c - r).mean()), 2),
            "mean_chosen": round(float(c.mean()), 2), "mean_rejected": round(float(r.mean()), 2)}


def load_markers(path: str | Path | None = None) -> dict[str, list[str]]:
    """The marker word lists: the shipped defaults, with the lists a user file gives replacing them."""
    import yaml

    markers = yaml.safe_load(MARKERS_FILE.read_text(encoding="utf-8"))
    if path is not None:
        user = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(user, dict) or not all(isinstance(v, list) for v in user.values()):
            raise DataError(f"{path}: expected lists of words under hedging: and/or confident:")
        markers.update({k: [str(w) for w in v] for k, v in user.items()})
    return {k: [str(w) for w in v] for k, v in markers.items()}


def marker_pattern(words: Sequence[str]) -> re.Pattern[str]:
    """One case-insensitive whole-word pattern for a list of words and phrases."""
    alternatives = sorted({re.escape(w.lower()).replace(r"\ ", r"\s+") for w in words if w.strip()}, key=len,
                          reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives or ["(?!)"]) + r")(?!\w)", re.IGNORECASE)


def count_markers(text: str, pattern: re.Pattern[str]) -> int:
    return len(pattern.findall(text.replace("\u2019", "'")))


def marker_bias(chosen: Sequence[int], rejected: Sequence[int]) -> dict[str, Any]:
    """Among the pairs whose marker counts differ, the share where the chosen answer has more."""
    import numpy as np

    c, r = np.asarray(chosen), np.asarray(rejected)
    n = int(c.size)
    differ = int((c != r).sum()) if n else 0
    more = int((c > r).sum()) if n else 0
    return {"pairs": n, "differ": differ, "differ_share": differ / n if n else 0.0,
            "chosen_more_share": more / differ if differ else 0.0,
            "mean_difference": round(float((c - r).mean()), 3) if n else 0.0,
            "chosen_with_marker_share": float((c > 0).mean()) if n else 0.0,
            "rejected_with_marker_share": float((r > 0).mean()) if n else 0.0}


def count_duplicates(hashes: Sequence[int]) -> dict[str, int]:
    """Rows that repeat an earlier row's hash, distinct values, and the largest group."""
    import numpy as np

    if len(hashes) == 0:
        return {"rows": 0, "distinct": 0, "repeats": 0, "largest_group": 0}
    _, counts = np.unique(np.asarray(hashes, dtype=np.uint64), return_counts=True)
    return {"rows": len(hashes), "distinct": int(counts.size), "repeats": int(len(hashes) - counts.size),
            "largest_group": int(counts.max())}


def shingles(text: str, k: int = 5) -> set[str]:
    """Character k-grams of the normalized text (the text itself when shorter)."""
    t = normalized(text)
    return {t[i:i + k] for i in range(max(1, len(t) - k + 1))}


def near_duplicates(texts: Sequence[str], threshold: float = THRESHOLDS["near_duplicate_jaccard"],
                    num_perm: int = 64, exact_keys: Sequence[int] | None = None) -> dict[str, Any]:
    """Texts that are near-duplicates of an earlier, non-identical text: MinHash signatures of character
    5-grams, candidates from locality-sensitive hashing (datasketch), kept when the estimated Jaccard
    similarity reaches threshold. Exact repeats (same exact_keys value) are left to the exact count."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    sigs: dict[int, MinHash] = {}
    first_of: dict[int, int] = {}
    found: list[tuple[int, int, float]] = []
    for i, text in enumerate(texts):
        key = exact_keys[i] if exact_keys is not None else hash64(normalized(text))
        if key in first_of:
            continue
        first_of[key] = i
        m = MinHash(num_perm=num_perm)
        m.update_batch([s.encode("utf-8", "surrogatepass") for s in shingles(text)])
        best = None
        for j in lsh.query(m):
            sim = m.jaccard(sigs[j])
            if sim >= threshold and (best is None or sim > best[1]):
                best = (j, sim)
        if best is not None:
            found.append((i, best[0], round(best[1], 3)))
        lsh.insert(i, m)
        sigs[i] = m
    return {"checked": len(texts), "near_duplicates": len(found), "share": len(found) / len(texts) if texts else 0.0,
            "examples": [{"index": i, "like": j, "jaccard": s} for i, j, s in found[:_EXAMPLES]]}


def ngrams(text: str, n: int = 3) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+(?:'\w+)?", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def rejected_concentration(rejected: Sequence[str], chosen: Sequence[str], n: int = 3, top: int = 10,
                           distinct: int | None = None, pairs: int | None = None) -> dict[str, Any]:
    """How narrow the rejected answers are: distinct answers / pairs, and their most frequent n-grams
    with the share of rejected (and chosen) answers that contain each."""
    counts: Counter[tuple[str, ...]] = Counter()
    for text in rejected:
        counts.update(ngrams(text, n))
    common = counts.most_common(top)
    in_chosen: Counter[tuple[str, ...]] = Counter()
    wanted = {g for g, _ in common}
    for text in chosen:
        in_chosen.update(ngrams(text, n) & wanted)
    k = len(rejected) or 1
    if distinct is None:
        distinct = len({hash64(t) for t in rejected})
    if pairs is None:
        pairs = len(rejected)
    return {"pairs": pairs, "distinct": distinct, "distinct_ratio": distinct / pairs if pairs else 0.0, "n": n,
            "top_ngrams": [{"ngram": " ".join(g), "rejected_share": c / k, "chosen_share": in_chosen[g] / k}
                           for g, c in common]}


def split_leak(prompt_keys: Sequence[str], splits: Sequence[str]) -> dict[str, Any]:
    """Prompts (normalized) that occur both in the training split and in a held-out split."""
    where: dict[str, set[str]] = {}
    for key, split in zip(prompt_keys, splits, strict=True):
        where.setdefault(key, set()).add("heldout" if str(split).lower() in HELD_OUT_SPLITS else "train")
    held = [k for k, s in where.items() if "heldout" in s]
    shared = [k for k in held if "train" in where[k]]
    return {"heldout_prompts": len(held), "shared_prompts": len(shared),
            "share_of_heldout": len(shared) / len(held) if held else 0.0, "examples": shared[:_EXAMPLES]}


def suggest_max_length(totals: Sequence[float], multiple: int = 8) -> dict[str, int]:
    """p95 and p99 of prompt + the longer answer, and the p99 rounded up to a multiple of `multiple` (the
    suggested max_length)."""
    q = quantiles(totals)
    p99 = int(math.ceil(q["p99"]))
    return {"p95": int(math.ceil(q["p95"])), "p99": p99,
            "suggested": max(multiple, int(math.ceil(p99 / multiple)) * multiple)}


def truncation(prompt: Sequence[int], chosen: Sequence[int], rejected: Sequence[int], max_length: int) -> dict[str, Any]:
    """What TRL's keep_start truncation at max_length does: pairs whose prompt alone fills max_length are
    dropped; pairs whose prompt + answer exceeds it lose the end of that answer."""
    import numpy as np

    p, c, r = (np.asarray(x) for x in (prompt, chosen, rejected))
    n = int(p.size)
    counts = {"prompt": int((p >= max_length).sum()), "chosen": int((p + c > max_length).sum()),
              "rejected": int((p + r > max_length).sum())}
    return {"max_length": max_length, "pairs": n, "counts": counts,
            "shares": {k: (v / n if n else 0.0) for k, v in counts.items()}}


def column_skew(counts: Counter[str], total: int) -> dict[str, Any]:
    top = counts.most_common(5)
    return {"values": len(counts), "top": [{"value": v, "share": c / total if total else 0.0} for v, c in top],
            "top_share": top[0][1] / total if top and total else 0.0}


def reward_agreement(prompts: Sequence[str], chosen: Sequence[str], rejected: Sequence[str],
                     scorer: Callable[[Sequence[str], Sequence[str]], Sequence[float]],
                     indices: Sequence[int] | None = None, top: int = 10) -> dict[str, Any]:
    """The share of pairs the scorer ranks as labelled (chosen above rejected) and the pairs it disagrees
    with most (rejected far above chosen): the ones to read first."""
    sc, sr = list(scorer(prompts, chosen)), list(scorer(prompts, rejected))
    margins = [a - b for a, b in zip(sc, sr, strict=True)]
    n = len(margins)
    order = sorted(range(n), key=lambda i: margins[i])
    idx = list(indices) if indices is not None else list(range(n))
    worst = [{"index": idx[i], "margin": round(margins[i], 4), "prompt": prompts[i][:200],
              "chosen": chosen[i][:200], "rejected": rejected[i][:200]} for i in order[:top] if margins[i] < 0]
    return {"pairs": n, "agreement": sum(m > 0 for m in margins) / n if n else 0.0,
            "ties": sum(m == 0 for m in margins), "mean_margin": sum(margins) / n if n else 0.0,
            "most_disagreed": worst}


def load_reward_scorer(model_dir: str, batch_size: int = 16, max_length: int = 1024
                       ) -> Callable[[Sequence[str], Sequence[str]], list[float]]:
    """A scorer from a sequence-classification reward model (one logit); torch imported here."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    model.eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.config.pad_token_id = tok.pad_token_id

    def score(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        out: list[float] = []
        with torch.no_grad():
            for i in range(0, len(prompts), batch_size):
                texts = [p + r for p, r in zip(prompts[i:i + batch_size], responses[i:i + batch_size], strict=True)]
                enc = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
                out.extend(model(**enc).logits[:, 0].float().tolist())
        return out

    return score


# --- tokens ---------------------------------------------------------------------------------------


def whitespace_lengths(pair: Pair) -> tuple[int, int, int]:
    return word_count(pair.texts[0]), word_count(pair.texts[1]), word_count(pair.texts[2])


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def token_counter(tokenizer: Any) -> Callable[[Pair], tuple[int, int, int]]:
    """(prompt, chosen, rejected) token counts the way TRL 1.16's DPO trainer tokenizes: strings get the
    EOS token appended to each answer; messages go through the chat template (the prompt with the
    generation prompt); an answer's tokens are those of prompt + answer past their common prefix."""
    def ids(value: Any, gen: bool = False) -> list[int]:
        if isinstance(value, list):
            out = tokenizer.apply_chat_template(value, tokenize=True, add_generation_prompt=gen)
            if isinstance(out, dict) or hasattr(out, "keys"):
                out = out["input_ids"]
            return list(out)
        return list(tokenizer(value)["input_ids"])

    eos = tokenizer.eos_token or ""

    def count(pair: Pair) -> tuple[int, int, int]:
        if pair.conversational:
            prompt = pair.prompt if isinstance(pair.prompt, list) else [{"role": "user", "content": pair.prompt}]
            p = ids(prompt, gen=True)
            pc, pr = ids(prompt + pair.chosen), ids(prompt + pair.rejected)
        else:
            p = ids(pair.texts[0])
            c = pair.texts[1] if pair.texts[1].endswith(eos) else pair.texts[1] + eos
            r = pair.texts[2] if pair.texts[2].endswith(eos) else pair.texts[2] + eos
            pc, pr = ids(pair.texts[0] + c), ids(pair.texts[0] + r)
        cut = min(_common_prefix(p, pc), _common_prefix(p, pr))
        return cut, len(pc) - cut, len(pr) - cut

    return count


def load_tokenizer(model: str, trust_remote_code: bool = False) -> Any:
    """The model's tokenizer: a local directory, or a hub id (from the local cache only when the hub
    cannot be reached, so an offline machine answers at once instead of retrying)."""
    from transformers import AutoTokenizer

    local = Path(model).expanduser()
    offline = not local.is_dir() and not _hub_reachable()
    try:
        return AutoTokenizer.from_pretrained(str(local) if local.is_dir() else model,
                                             trust_remote_code=trust_remote_code, local_files_only=offline)
    except (OSError, ValueError) as exc:
        where = "the hub cannot be reached and it is not in the local cache" if offline else str(exc).splitlines()[0]
        raise DataError(f"--model {model}: cannot load its tokenizer ({where}); give a local model directory") from None


def _hub_reachable() -> bool:
    from planner.models import _hub_reachable as reachable

    return reachable()


# --- the whole file -------------------------------------------------------------------------------


@dataclass
class _Stream:
    """What is kept for every pair: fixed-size numbers (no text), plus a reservoir sample of pairs."""

    sample_size: int
    seed: int
    pairs: int = 0
    words: dict[str, array] = field(default_factory=lambda: {f: array("i") for f in FIELDS})
    hashes: dict[str, array] = field(default_factory=lambda: {k: array("Q") for k in ("prompt", "rejected", "pair")})
    markers: dict[str, dict[str, array]] = field(default_factory=dict)
    identical: int = 0
    identical_examples: list[int] = field(default_factory=list)
    empty: Counter[str] = field(default_factory=Counter)
    empty_examples: list[int] = field(default_factory=list)
    bad: list[tuple[int | None, str]] = field(default_factory=list)
    bad_count: int = 0
    turns: Counter[int] = field(default_factory=Counter)
    early: int = 0
    early_examples: list[int] = field(default_factory=list)
    columns: dict[str, Counter[str]] = field(default_factory=dict)
    split_of_prompt: dict[int, int] | None = None
    sample: list[Pair] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)

    def keep(self, pair: Pair) -> None:
        """Reservoir sampling (algorithm R): every pair has the same chance to be in the sample."""
        if len(self.sample) < self.sample_size:
            self.sample.append(pair)
        else:
            j = self.rng.randrange(self.pairs)
            if j < self.sample_size:
                self.sample[j] = pair


def _where(pair: Pair) -> int:
    return pair.line if pair.line is not None else pair.index + 1


def inspect(path: str, *, method: str = "dpo", task: str | None = None, max_length: int = 1024,
            tokenizer: Any = None, model_name: str | None = None, markers: dict[str, list[str]] | None = None,
            eval_fraction: float = 0.0, seed: int = 42, split: str = "train",
            columns: dict[str, str] | None = None, sample_size: int = DEFAULT_SAMPLE_SIZE,
            volume: dict[str, Any] | None = None,
            reward_scorer: Callable[[Sequence[str], Sequence[str]], Sequence[float]] | None = None,
            reward_model_name: str | None = None, reward_sample_size: int = REWARD_SAMPLE_SIZE,
            thresholds: dict[str, float] | None = None) -> dict[str, Any]:
    """The report on a preference data set (docs/data-doctor.md has its schema).

    volume: the text's range for the task ({min, max, basis, source}); the caller looks it up (the
    advisor's framework.yaml holds it) so that the figures live in one place. tokenizer: counts tokens
    as the recipe will; without it, whitespace words estimate them."""
    started = time.perf_counter()
    th = {**THRESHOLDS, **(thresholds or {})}
    markers = markers if markers is not None else load_markers()
    patterns = {k: marker_pattern(v) for k, v in markers.items()}
    rows, streamed, source = iter_rows(path, split)
    st = _Stream(sample_size=sample_size, seed=seed, rng=random.Random(seed))
    st.markers = {k: {"chosen": array("i"), "rejected": array("i")} for k in patterns}
    fmt: str | None = None
    mapping = columns or {}
    notes: list[str] = []
    index = -1
    for line, row in rows:
        if isinstance(row, str):
            st.bad_count += 1
            if len(st.bad) < _EXAMPLES:
                st.bad.append((line, row))
            continue
        if mapping:
            row = {mapping.get(k, k): v for k, v in row.items()}
        if fmt is None:
            where = where_row(source, 0, line)
            fmt = detect_format([row], source=source, where=where).name  # a wrong type here: row and column
            typo = misspelt_column(row, fmt, method)
            if typo:
                raise DataError(f"{where}: {typo}")
            if fmt not in PREFERENCE_FORMATS:
                break
            if any(c in row for c in SPLIT_COLUMNS):
                st.split_of_prompt = {}
        index += 1
        try:
            for column in FIELDS:  # the runner refuses these rows: count them as bad, with its words
                problem = message_problem(row[column], allow_empty=True) if isinstance(row.get(column), list) else None
                if problem:
                    raise ValueError(f"column {column!r}: {problem}; expected a list of {{role, content}} messages "
                                     "with string role and content")
            pair = read_pair(row, fmt)
        except ValueError as exc:
            st.bad_count += 1
            if len(st.bad) < _EXAMPLES:
                st.bad.append((line, str(exc)))
            continue
        pair.line, pair.index = line, index
        st.pairs += 1
        _add(st, pair, row, patterns)
    if fmt is None:
        raise DataError(f"{source}: no rows")
    report: dict[str, Any] = {
        "schema": SCHEMA, "source": source, "method": method, "task": task,
        "format": {"name": fmt, "description": FORMATS[fmt]}, "streamed": streamed,
        "pairs": st.pairs, "bad_rows": {"count": st.bad_count,
                                        "examples": [{"line": ln, "problem": p} for ln, p in st.bad]},
        "notes": notes, "thresholds": th,
    }
    findings: list[Finding] = []
    if fmt not in PREFERENCE_FORMATS:
        findings.append(Finding("format_not_pairs", "error",
                                f"detected format {fmt!r} ({FORMATS[fmt]}) has no chosen/rejected pairs for {method}: "
                                "the doctor inspects preference pairs; give prompt/chosen/rejected data"))
        report["findings"] = [f.to_dict() for f in findings]
        report["seconds"] = round(time.perf_counter() - started, 3)
        return report
    sampled = st.pairs > len(st.sample)
    report["sample"] = {"size": len(st.sample), "of": st.pairs, "sampled": sampled, "seed": seed}
    if sampled:
        notes.append(f"token counts, near-duplicates, n-grams and the held-out split check use a random sample of "
                     f"{len(st.sample):,} of {st.pairs:,} pairs; the other figures count every pair")
    report["volume"] = _volume(st, task, volume)
    report["lengths"] = _lengths(st, tokenizer, model_name, max_length, notes)
    report["biases"] = _biases(st, report["lengths"], markers)
    report["hygiene"] = _hygiene(st, th, eval_fraction, seed)
    report["structure"] = {"turns": {str(k): v for k, v in sorted(st.turns.items())},
                           "multi_turn_pairs": sum(v for k, v in st.turns.items() if k > 2),
                           "early_turns_differ": {"count": st.early, "share": st.early / st.pairs if st.pairs else 0.0,
                                                  "examples": st.early_examples}}
    report["reward_model"] = None
    if reward_scorer is not None:
        chosen_sample = st.sample[:reward_sample_size]
        report["reward_model"] = {"model": reward_model_name, **reward_agreement(
            [p.texts[0] for p in chosen_sample], [p.texts[1] for p in chosen_sample],
            [p.texts[2] for p in chosen_sample], reward_scorer, [_where(p) for p in chosen_sample])}
    findings += findings_for(report, th)
    report["findings"] = [f.to_dict() for f in findings]
    report["summary"] = summary(report)
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report


def _add(st: _Stream, pair: Pair, row: dict[str, Any], patterns: dict[str, re.Pattern[str]]) -> None:
    p, c, r = pair.texts
    for name, text in zip(FIELDS, pair.texts, strict=True):
        st.words[name].append(word_count(text))
    st.hashes["prompt"].append(hash64(p))
    st.hashes["rejected"].append(hash64(r))
    st.hashes["pair"].append(hash64(f"{p}\x00{c}\x00{r}"))
    for kind, pattern in patterns.items():
        st.markers[kind]["chosen"].append(count_markers(c, pattern))
        st.markers[kind]["rejected"].append(count_markers(r, pattern))
    if c == r and not pair.empty:
        st.identical += 1
        if len(st.identical_examples) < _EXAMPLES:
            st.identical_examples.append(_where(pair))
    if pair.empty:
        st.empty.update(pair.empty)
        if len(st.empty_examples) < _EXAMPLES:
            st.empty_examples.append(_where(pair))
    st.turns[pair.turns] += 1
    if pair.early_turns_differ:
        st.early += 1
        if len(st.early_examples) < _EXAMPLES:
            st.early_examples.append(_where(pair))
    for column in (*POSITION_COLUMNS, *SOURCE_COLUMNS):
        if column in row:
            counts = st.columns.setdefault(column, Counter())
            value = str(row[column])[:100]
            counts[value if value in counts or len(counts) < _MAX_DISTINCT_VALUES else "(other)"] += 1
    if st.split_of_prompt is not None:
        split = next((str(row[c]) for c in SPLIT_COLUMNS if c in row), "train")
        bit = 2 if split.lower() in HELD_OUT_SPLITS else 1
        key = hash64(normalized(p))
        st.split_of_prompt[key] = st.split_of_prompt.get(key, 0) | bit
        pair.extra["split"] = split
    st.keep(pair)


def _volume(st: _Stream, task: str | None, volume: dict[str, Any] | None) -> dict[str, Any]:
    prompts = count_duplicates(st.hashes["prompt"])
    import numpy as np

    per_prompt = {"mean": 0.0, "max": 0}
    if st.pairs:
        _, counts = np.unique(np.asarray(st.hashes["prompt"], dtype=np.uint64), return_counts=True)
        per_prompt = {"mean": round(st.pairs / counts.size, 3), "max": int(counts.max())}
    return {"pairs": st.pairs, "distinct_prompts": prompts["distinct"], "pairs_per_prompt": per_prompt,
            "task": task, "guidance": volume}


def _lengths(st: _Stream, tokenizer: Any, model_name: str | None, max_length: int, notes: list[str]) -> dict[str, Any]:
    if tokenizer is not None:
        count = token_counter(tokenizer)
        triples = [count(p) for p in st.sample]
        lens = {f: [t[i] for t in triples] for i, f in enumerate(FIELDS)}
        unit, on = "tokens", "sample" if st.pairs > len(st.sample) else "all"
    else:
        lens = {f: st.words[f] for f in FIELDS}
        unit, on = "whitespace words (an estimate of tokens)", "all"
        notes.append("lengths are whitespace-separated words, an estimate: give --model to count the model's tokens "
                     "with its chat template, as the recipe will")
    totals = [p + max(c, r) for p, c, r in zip(lens["prompt"], lens["chosen"], lens["rejected"], strict=True)]
    return {"unit": unit, "tokenizer": model_name if tokenizer is not None else None, "counted_on": on,
            "pairs_counted": len(totals),
            "fields": {**{f: quantiles(lens[f]) for f in FIELDS}, "prompt+longer answer": quantiles(totals)},
            "histogram": histogram({f: lens[f] for f in FIELDS}),
            "truncation": truncation(lens["prompt"], lens["chosen"], lens["rejected"], max_length),
            "suggested_max_length": suggest_max_length(totals),
            "length_bias": length_bias(lens["chosen"], lens["rejected"])}


def _biases(st: _Stream, lengths: dict[str, Any], markers: dict[str, list[str]]) -> dict[str, Any]:
    out: dict[str, Any] = {"length": lengths["length_bias"], "length_unit": lengths["unit"], "markers": {}}
    for kind, counts in st.markers.items():
        out["markers"][kind] = {**marker_bias(counts["chosen"], counts["rejected"]), "words": markers[kind]}
    out["columns"] = {col: {"kind": "position" if col in POSITION_COLUMNS else "source",
                            **column_skew(counts, st.pairs)} for col, counts in st.columns.items()}
    return out


def _hygiene(st: _Stream, th: dict[str, float], eval_fraction: float, seed: int) -> dict[str, Any]:
    pairs = count_duplicates(st.hashes["pair"])
    rejected = count_duplicates(st.hashes["rejected"])
    sample = st.sample
    near = near_duplicates([f"{p.texts[0]}\n{p.texts[1]}\n{p.texts[2]}" for p in sample],
                           threshold=th["near_duplicate_jaccard"],
                           exact_keys=[hash64(f"{p.texts[0]}\x00{p.texts[1]}\x00{p.texts[2]}") for p in sample])
    near["examples"] = [{**e, "index": _where(sample[e["index"]]), "like": _where(sample[e["like"]])}
                        for e in near["examples"]]
    leak: dict[str, Any] | None = None
    if st.split_of_prompt is not None:
        values = list(st.split_of_prompt.values())
        held = sum(1 for v in values if v & 2)
        shared = sum(1 for v in values if v == 3)
        examples = [p.texts[0][:200] for p in sample
                    if st.split_of_prompt.get(hash64(normalized(p.texts[0]))) == 3][:_EXAMPLES]
        leak = {"by": "split column", "heldout_prompts": held, "shared_prompts": shared,
                "share_of_heldout": shared / held if held else 0.0, "examples": list(dict.fromkeys(examples))}
    elif eval_fraction > 0 and sample:
        rows = [{"prompt": p.texts[0], "i": i} for i, p in enumerate(sample)]
        try:
            train, held = split_by_prompt(rows, eval_fraction, seed)
        except DataError as exc:
            leak = {"by": f"eval_fraction {eval_fraction}", "error": str(exc)}
        else:
            keys = [normalized(r["prompt"]) for r in train] + [normalized(r["prompt"]) for r in held]
            result = split_leak(keys, ["train"] * len(train) + ["heldout"] * len(held))
            leak = {"by": f"eval_fraction {eval_fraction}, seed {seed} (split by prompt as the runner does; exact "
                          "prompts cannot be shared, so this counts prompts equal up to case and spacing)", **result}
    conc = rejected_concentration([p.texts[2] for p in sample], [p.texts[1] for p in sample],
                                  distinct=rejected["distinct"], pairs=st.pairs)
    return {"identical_pairs": {"count": st.identical, "examples": st.identical_examples},
            "empty_fields": {"counts": dict(st.empty), "examples": st.empty_examples},
            "exact_duplicates": {"count": pairs["repeats"], "share": pairs["repeats"] / st.pairs if st.pairs else 0.0,
                                 "largest_group": pairs["largest_group"]},
            "near_duplicates": near, "split_leak": leak, "rejected": conc}


# --- findings -------------------------------------------------------------------------------------


def findings_for(report: dict[str, Any], th: dict[str, float] = THRESHOLDS) -> list[Finding]:
    """The findings a report's figures call for, most severe first."""
    out: list[Finding] = []
    n = report["pairs"]
    bad = report["bad_rows"]["count"]
    if bad:
        out.append(Finding("bad_rows", "error", f"{bad} row(s) cannot be read as pairs (first: line "
                           f"{report['bad_rows']['examples'][0]['line']}: {report['bad_rows']['examples'][0]['problem']}): "
                           "the runner refuses the whole file; fix or drop them", bad))
    vol = report["volume"]
    g = vol.get("guidance")
    if g and vol.get("task"):
        lo, hi = int(g["min"]), int(g["max"])
        where = f"the reference text's {lo:,}-{hi:,} pairs for {vol['task']} ({g.get('source', '')})"
        if n < lo:
            out.append(Finding("volume_below_guidance", "warning",
                               f"{n:,} pairs, {vol['distinct_prompts']:,} distinct prompts: under {where}; expect a "
                               f"weak or narrow preference signal; collect {lo - n:,}+ more pairs", n))
        elif n > hi:
            out.append(Finding("volume_above_guidance", "info",
                               f"{n:,} pairs: above {where}; spend effort on label quality and coverage, not volume", n))
        else:
            out.append(Finding("volume_within_guidance", "info", f"{n:,} pairs: within {where}", n))
    h = report["hygiene"]
    if h["empty_fields"]["counts"]:
        fields = ", ".join(f"{k} in {v}" for k, v in sorted(h["empty_fields"]["counts"].items()))
        total = sum(h["empty_fields"]["counts"].values())
        out.append(Finding("empty_fields", "error", f"empty fields: {fields} pair(s) (first at line/row "
                           f"{h['empty_fields']['examples'][0]}): the runner refuses the file; drop or fill them",
                           total))
    if h["identical_pairs"]["count"]:
        k = h["identical_pairs"]["count"]
        out.append(Finding("identical_chosen_rejected", "error",
                           f"chosen equals rejected in {k} pair(s) ({pct(k / n)}; first at {h['identical_pairs']['examples'][0]}): "
                           "their DPO loss is a constant with no gradient, wasted compute; drop them", k))
    leak = h.get("split_leak")
    if leak and leak.get("shared_prompts"):
        k = leak["shared_prompts"]
        out.append(Finding("split_leak", "error",
                           f"{k} of {leak['heldout_prompts']} held-out prompts ({pct(leak['share_of_heldout'])}) also "
                           f"occur in training ({leak['by']}): held-out loss and accuracy overstate generalization; "
                           "split by prompt so every pair of a prompt lands on one side", k))
    trunc = report["lengths"]["truncation"]
    sug = report["lengths"]["suggested_max_length"]["suggested"]
    unit = "tokens" if report["lengths"]["unit"] == "tokens" else "words (estimated)"
    if trunc["counts"]["prompt"]:
        k = trunc["counts"]["prompt"]
        out.append(Finding("prompt_over_max_length", "error",
                           f"the prompt alone fills max_length {trunc['max_length']} {unit} in {k} pair(s) "
                           f"({pct(trunc['shares']['prompt'])}): TRL drops them; raise max_length (p99 suggests {sug}) "
                           "or shorten the prompts", k, "prompt"))
    for f in ("chosen", "rejected"):
        k = trunc["counts"][f]
        if k:
            out.append(Finding("truncated_at_max_length", "warning",
                               f"prompt + {f} exceeds max_length {trunc['max_length']} {unit} in {k} pair(s) "
                               f"({pct(trunc['shares'][f])}): the end of the {f} answer is cut, and the preference "
                               f"may sit in the part cut off; raise max_length to {sug} (p99) or shorten the answers",
                               k, f))
    ex = h["exact_duplicates"]
    if ex["count"]:
        out.append(Finding("exact_duplicates", "warning",
                           f"{ex['count']} pair(s) repeat an earlier pair exactly ({pct(ex['share'])}; largest group "
                           f"{ex['largest_group']}): they weigh those preferences several times and can leak into "
                           "the held-out split; deduplicate", ex["count"]))
    nd = h["near_duplicates"]
    if nd["share"] > th["near_duplicate_share"]:
        out.append(Finding("near_duplicates", "warning",
                           f"{nd['near_duplicates']} of {nd['checked']} pairs checked ({pct(nd['share'])}) are near-"
                           f"duplicates of another pair (MinHash Jaccard >= {th['near_duplicate_jaccard']}): they "
                           "over-weigh a few preferences and leak across splits; deduplicate them",
                           nd["near_duplicates"]))
    rej = h["rejected"]
    if n and rej["distinct_ratio"] < th["rejected_distinct_ratio"]:
        out.append(Finding("rejected_concentrated", "warning",
                           f"{rej['distinct']} distinct rejected answers for {n} pairs (ratio {rej['distinct_ratio']:.2f}): "
                           "DPO will suppress that narrow region broadly instead of learning what made each answer "
                           "bad, and can turn over-conservative; add varied rejected answers", rej["distinct_ratio"]))
    for g2 in rej["top_ngrams"][:3]:
        if g2["rejected_share"] >= th["ngram_rejected_share"] and g2["chosen_share"] < th["ngram_chosen_share"]:
            out.append(Finding("rejected_ngram_marker", "warning",
                               f"'{g2['ngram']}' is in {pct(g2['rejected_share'])} of rejected answers and "
                               f"{pct(g2['chosen_share'])} of chosen ones: that phrase alone separates the pair, and "
                               "DPO can learn it instead of the quality you mean; vary the rejected answers",
                               round(g2["rejected_share"], 4)))
            break
    lb = report["biases"]["length"]
    differ = lb["chosen_longer_share"] + lb["chosen_shorter_share"]
    if differ:
        longer = lb["chosen_longer_share"] / differ
        lu = "tokens" if report["lengths"]["unit"] == "tokens" else "words"
        if longer >= th["length_bias_share"]:
            out.append(Finding("length_bias", "warning",
                               f"chosen is longer in {pct(lb['chosen_longer_share'])} of pairs (mean difference "
                               f"{lb['mean_difference']:+.1f} {lu}): DPO will learn length; balance lengths or add "
                               "length-controlled pairs", round(lb["chosen_longer_share"], 4)))
        elif longer <= 1 - th["length_bias_share"]:
            out.append(Finding("length_bias", "warning",
                               f"chosen is shorter in {pct(lb['chosen_shorter_share'])} of pairs (mean difference "
                               f"{lb['mean_difference']:+.1f} {lu}): DPO will learn brevity; balance lengths or add "
                               "length-controlled pairs", round(lb["chosen_shorter_share"], 4)))
    for kind, mb in report["biases"]["markers"].items():
        if mb["differ_share"] >= th["marker_min_share"] and (mb["chosen_more_share"] >= th["marker_bias_share"]
                                                            or mb["chosen_more_share"] <= 1 - th["marker_bias_share"]):
            more = mb["chosen_more_share"] >= th["marker_bias_share"]
            share = mb["chosen_more_share"] if more else 1 - mb["chosen_more_share"]
            out.append(Finding(f"{kind}_bias", "warning",
                               f"{kind} markers: of the {pct(mb['differ_share'])} of pairs whose counts differ, the "
                               f"chosen answer has {'more' if more else 'fewer'} in {pct(share)}: DPO will learn to "
                               f"sound {'more' if more else 'less'} {kind}, whether or not it is right; balance the "
                               "pairs or check the labels (edit the word list with --markers)",
                               round(mb["chosen_more_share"], 4)))
    for col, sk in report["biases"]["columns"].items():
        top = sk["top"][0] if sk["top"] else None
        if top is None or sk["values"] < 2 and sk["kind"] == "source":
            continue
        if sk["kind"] == "position" and sk["top_share"] >= th["position_skew_share"]:
            out.append(Finding("position_skew", "warning",
                               f"column {col!r} is {top['value']!r} in {pct(top['share'])} of pairs: annotators' "
                               "position bias may be in the labels; show the two answers in random order, or "
                               "re-label a sample with the order swapped", round(top["share"], 4), col))
        elif sk["kind"] == "source" and sk["top_share"] >= th["source_skew_share"]:
            out.append(Finding("source_skew", "info",
                               f"column {col!r} is {top['value']!r} in {pct(top['share'])} of pairs: the preference "
                               "is mostly that source's; other sources are barely represented", round(top["share"], 4),
                               col))
    stc = report["structure"]["early_turns_differ"]
    if stc["count"]:
        out.append(Finding("multi_turn_early_turns_differ", "warning",
                           f"{stc['count']} multi-turn pair(s) ({pct(stc['share'])}; first at {stc['examples'][0]}) "
                           "differ before the last turn: the loss then compares two different conversations, and the "
                           "reference text warns that multi-turn DPO needs care over which tokens are included in the "
                           "log-ratio; keep the earlier turns identical and let only the final answer differ",
                           stc["count"]))
    rm = report.get("reward_model")
    if rm and rm["pairs"] and rm["agreement"] < th["reward_agreement"]:
        out.append(Finding("reward_model_disagrees", "warning",
                           f"the reward model agrees with {pct(rm['agreement'])} of {rm['pairs']} labels: noisy "
                           "labels, or a preference unlike the reward model's; read the most disagreed pairs first",
                           round(rm["agreement"], 4)))
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(out, key=lambda f: order[f.severity])


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The few lines other places show (the advisor's data guidance, the Launch page)."""
    counts = Counter(f["severity"] for f in report.get("findings", []))
    vol = report.get("volume", {})
    lengths = report.get("lengths", {})
    return {"source": report["source"], "format": report["format"]["name"], "pairs": report["pairs"],
            "distinct_prompts": vol.get("distinct_prompts"),
            "suggested_max_length": (lengths.get("suggested_max_length") or {}).get("suggested"),
            "length_unit": lengths.get("unit"),
            "errors": counts.get("error", 0), "warnings": counts.get("warning", 0), "infos": counts.get("info", 0),
            "codes": [f["code"] for f in report.get("findings", [])],
            "headline": [f["message"] for f in report.get("findings", []) if f["severity"] != "info"][:3]}
