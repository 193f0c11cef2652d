"""Labelling: turn responses into judged preference pairs, every pair asked in both orders.

    pairs, skipped = make_pairs(rows, pairing="consecutive")
    records = label_pairs(judge, pairs, principles=None, seed=42, inconsistent="drop")
    report = summarize(records)               # the numbers of report.json
    dpo_rows = dpo_pairs(records)             # {prompt, chosen, rejected} for output/data.jsonl

Both orders cancel position bias: the pair (a, b) is asked as (first=a, second=b) and as (first=b,
second=a). If both verdicts name the same response the pair is consistent and that response is
chosen; if they name different responses (the judge followed the position, not the content) the
pair is inconsistent: dropped (default) or kept as a tie. A consistent tie, and an inconsistent pair
kept as a tie, are recorded in labels.jsonl but never written as DPO pairs. A pair where either
verdict is unusable (unparseable answer, failed request) is dropped and counted.

Pairs from a row {prompt, responses: [r0, r1, ...]}: pairing 'consecutive' gives (r0, r1), (r2, r3),
... (an odd last response is left out: every response is used once, so pairs are independent);
'all' gives every (ri, rj), i < j, in that order, at most max_pairs_per_prompt per prompt. Two
identical responses are not a pair (skipped and counted). Lengths are in characters.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import combinations
from statistics import mean
from typing import Any

from runners.judges.base import Comparison, Judge, Verdict

RAW_KEEP = 2000  # characters of a judge's written answer kept in labels.jsonl

# Outcomes of one pair.
PAIR, TIE, INCONSISTENT, NO_VERDICT = "pair", "tie", "inconsistent", "no-verdict"


@dataclass(frozen=True)
class Pair:
    index: int  # position in the labelling order (what --resume counts)
    row: int  # the data row it came from
    prompt: str
    a: str
    b: str
    positions: tuple[int, int]  # which of the row's responses a and b are


def make_pairs(rows: list[dict[str, Any]], pairing: str = "consecutive", max_pairs_per_prompt: int = 6,
               max_pairs: int = -1) -> tuple[list[Pair], int]:
    """(the pairs in order, how many identical-response pairs were skipped)."""
    pairs: list[Pair] = []
    skipped = 0
    for row_index, row in enumerate(rows):
        responses = list(row["responses"])
        if pairing == "all":
            chosen = list(combinations(range(len(responses)), 2))[:max_pairs_per_prompt]
        else:
            chosen = [(i, i + 1) for i in range(0, len(responses) - 1, 2)]
        for i, j in chosen:
            if responses[i].strip() == responses[j].strip():
                skipped += 1
                continue
            pairs.append(Pair(len(pairs), row_index, row["prompt"], responses[i], responses[j], (i, j)))
            if 0 < max_pairs <= len(pairs):
                return pairs, skipped
    return pairs, skipped


def pick_principle(principles: list[Any] | tuple[Any, ...] | None, seed: int, pair_index: int):
    """The constitution principle for one pair: drawn with an RNG seeded by (seed, pair index), so the
    same pair gets the same principle in a resumed run."""
    if not principles:
        return None
    return random.Random(f"{seed}:{pair_index}").choice(list(principles))


def principle_text(principle: Any) -> str:
    """What the constitutional prompt shows: a principle's comparison question if it has one, else its
    critique request (what to look for in an answer)."""
    return getattr(principle, "comparison", None) or principle.critique


def label_pairs(judge: Judge, pairs: list[Pair], principles=None, seed: int = 42,
                inconsistent: str = "drop") -> list[dict[str, Any]]:
    """Judge each pair in both orders (one batch to the judge) and combine the two verdicts."""
    chosen_principles = [pick_principle(principles, seed, p.index) for p in pairs]
    comparisons: list[Comparison] = []
    for pair, principle in zip(pairs, chosen_principles, strict=True):
        text = principle_text(principle) if principle is not None else None
        comparisons.append(Comparison(pair.prompt, pair.a, pair.b, text))
        comparisons.append(Comparison(pair.prompt, pair.b, pair.a, text))
    verdicts = judge.compare_batch(comparisons)
    return [
        combine(pair, verdicts[2 * k], verdicts[2 * k + 1], principle, inconsistent)
        for k, (pair, principle) in enumerate(zip(pairs, chosen_principles, strict=True))
    ]


def _as_response(verdict: Verdict, shown: tuple[str, str]) -> str | None:
    """Which response ('a' or 'b') a verdict names, given the order they were shown in."""
    if verdict.winner is None:
        return None
    return shown[0] if verdict.winner == "first" else shown[1]


def combine(pair: Pair, ab: Verdict, ba: Verdict, principle: Any = None, inconsistent: str = "drop") -> dict[str, Any]:
    """One labels.jsonl record from the verdicts of order (a, b) and order (b, a)."""
    winner_ab, winner_ba = _as_response(ab, ("a", "b")), _as_response(ba, ("b", "a"))
    usable = ab.usable and ba.usable
    consistent = usable and winner_ab == winner_ba
    if not usable:
        outcome, winner = NO_VERDICT, None
    elif consistent:
        outcome, winner = (PAIR, winner_ab) if winner_ab else (TIE, None)
    else:
        outcome, winner = (TIE if inconsistent == "tie" else INCONSISTENT), None
    p_a = None
    if ab.p_first is not None and ba.p_first is not None:
        p_a = (ab.p_first + (1.0 - ba.p_first)) / 2.0  # P(a better), averaged over both orders
    record: dict[str, Any] = {
        "index": pair.index,
        "row": pair.row,
        "positions": list(pair.positions),
        "prompt": pair.prompt,
        "response_a": pair.a,
        "response_b": pair.b,
        "verdict_ab": ab.winner,  # position named when a was shown first
        "verdict_ba": ba.winner,  # position named when b was shown first
        "p_first_ab": ab.p_first,
        "p_first_ba": ba.p_first,
        "p_a": p_a,
        "consistent": consistent,
        "inconsistent": usable and not consistent,
        "outcome": outcome,
        "winner": winner,  # 'a', 'b' or None
        "length_a": len(pair.a),
        "length_b": len(pair.b),
        "principle": getattr(principle, "name", None),
        "errors": [v.error for v in (ab, ba) if v.error],
        "input_tokens": ab.input_tokens + ba.input_tokens,
        "output_tokens": ab.output_tokens + ba.output_tokens,
        "tokens": ab.tokens + ba.tokens,
        "cached": [ab.cached, ba.cached],
    }
    if ab.raw is not None or ba.raw is not None:
        record["raw_ab"] = None if ab.raw is None else ab.raw[:RAW_KEEP]
        record["raw_ba"] = None if ba.raw is None else ba.raw[:RAW_KEEP]
    if ab.extra or ba.extra:
        record["judge_ab"], record["judge_ba"] = ab.extra, ba.extra
    return record


def dpo_pairs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """{prompt, chosen, rejected} for every record with a winner, in labelling order."""
    out = []
    for r in records:
        if r["outcome"] != PAIR:
            continue
        chosen, rejected = (r["response_a"], r["response_b"]) if r["winner"] == "a" else (r["response_b"], r["response_a"])
        out.append({"prompt": r["prompt"], "chosen": chosen, "rejected": rejected})
    return out


def summarize(records: list[dict[str, Any]], price_per_million_input: float | None = None,
              price_per_million_output: float | None = None) -> dict[str, Any]:
    """The labelling numbers of report.json (docs/judges.md lists each)."""
    both = [r for r in records if r["outcome"] != NO_VERDICT]
    consistent = [r for r in both if r["consistent"]]
    written = [r for r in records if r["outcome"] == PAIR]
    errors = [e for r in records for e in r["errors"]]
    positions = [v for r in both for v in (r["verdict_ab"], r["verdict_ba"]) if v is not None]
    differing = [r for r in written if r["length_a"] != r["length_b"]]
    longer = [r for r in differing if (r["length_a"] > r["length_b"]) == (r["winner"] == "a")]
    diffs = [(r["length_a"] - r["length_b"]) * (1 if r["winner"] == "a" else -1) for r in written]
    input_tokens = sum(r["input_tokens"] for r in records)
    output_tokens = sum(r["output_tokens"] for r in records)
    report: dict[str, Any] = {
        "pairs_judged": len(records),
        "comparisons": 2 * len(records),
        "pairs_with_both_verdicts": len(both),
        "consistent": len(consistent),
        "position_consistency": _share(len(consistent), len(both)),
        "pairs_written": len(written),
        "ties": sum(r["outcome"] == TIE for r in records),
        "ties_from_inconsistent": sum(r["outcome"] == TIE and r["inconsistent"] for r in records),
        "dropped": sum(r["outcome"] in (INCONSISTENT, NO_VERDICT) for r in records),
        "dropped_inconsistent": sum(r["outcome"] == INCONSISTENT for r in records),
        "dropped_no_verdict": sum(r["outcome"] == NO_VERDICT for r in records),
        "unparseable": sum(e == "unparseable" for e in errors),
        "failed": sum(e.startswith("failed") for e in errors),
        "first_position_share": _share(sum(v == "first" for v in positions), len(positions)),
        "longer_preferred_share": _share(len(longer), len(differing)),
        "mean_length_difference": mean(diffs) if diffs else None,
        "length_unit": "characters",
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "tokens": sum(r["tokens"] for r in records),
    }
    principles = sorted({r["principle"] for r in records if r.get("principle")})
    if principles:
        report["principles"] = {name: sum(r.get("principle") == name for r in records) for name in principles}
    if price_per_million_input is not None or price_per_million_output is not None:
        pin, pout = price_per_million_input or 0.0, price_per_million_output or 0.0
        report["cost"] = input_tokens / 1e6 * pin + output_tokens / 1e6 * pout
        report["price_per_million_input"], report["price_per_million_output"] = pin, pout
    return report


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None
