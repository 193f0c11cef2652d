"""The recommendation as readable text for the terminal."""

from __future__ import annotations

import textwrap
from typing import Any

from advisor.recommend import Recommendation

WIDTH = 100


def _wrap(text: str, indent: str = "  ", bullet: str = "- ") -> str:
    return textwrap.fill(
        text, width=WIDTH, initial_indent=indent + bullet, subsequent_indent=indent + " " * len(bullet)
    )


def _gib(n_bytes: int | None) -> str:
    # from bytes, rounded once (peak_gib is already rounded to 2 places: rounding it again can differ
    # from `alignplan plan` in the last digit)
    return "?" if n_bytes is None else f"{n_bytes / 2**30:,.1f} GiB"


def fix_line(suggestion: dict[str, Any]) -> str:
    """One change, with the planner's per-GPU peak after it: "<change>: <N> GiB per GPU" for a change that
    fits; a partial one (it lowers the peak, not enough) adds "(still <M> GiB short of <C> GiB)".
    The CLI, the Advise page and the Launch page all show it so."""
    line = f"{suggestion['change']}: {_gib(suggestion.get('peak_bytes_per_gpu'))} per GPU"
    if suggestion.get("partial") and suggestion.get("capacity_bytes"):
        short = suggestion["peak_bytes_per_gpu"] - suggestion["capacity_bytes"]
        line += f" (not enough alone: still {_gib(short)} over the {_gib(suggestion['capacity_bytes'])})"
    return line


def render_memory(memory: dict[str, Any]) -> list[str]:
    if not memory.get("available"):
        return ["Memory check", f"  {memory.get('reason', 'not available')}"]
    setup = memory["setup"]
    lines = [
        f"Memory check (planner; {memory['model']} on {memory['gpus']} x {memory['gpu']}, "
        f"seq_len {setup.get('seq_len')}, batch {setup.get('batch_size')}, {setup.get('precision')}; GiB = 2^30 bytes)"
    ]
    for e in memory["methods"]:
        verdict = {True: "fits", False: "does NOT fit", None: "fit unknown"}[e["fits"]]
        extra = ""
        if e["fits"] is False and e.get("min_gpus_of_this_type"):
            extra = f" (needs {e['min_gpus_of_this_type']} x {memory['gpu']} with sharding)"
        lines.append(f"  {e['role']:<12} {e['method']:<6} peak {_gib(e['peak_bytes_per_gpu'])} per GPU: {verdict}{extra}")
    if memory.get("suggestions"):
        lines.append("  To make the recommendation fit (each checked with the planner):")
        for s in memory["suggestions"]:
            lines.append(_wrap(fix_line(s), indent="    "))
    for n in memory.get("notes", []):
        lines.append(_wrap(n, indent="  ", bullet="note: "))
    return lines


def render_text(rec: Recommendation) -> str:
    lines = [f"Recommendation: {rec.name} [{rec.method}]", textwrap.fill(rec.summary, WIDTH), "", "Why"]
    lines += [_wrap(w) for w in rec.why]
    g = rec.data_guidance
    lines += ["", f"Data ({g['unit']})"]
    if g.get("collect"):
        lines.append(_wrap(g["collect"]))
    if g.get("source"):
        lines.append(_wrap(f"source: {g['source']}", bullet="  "))
    lines += [_wrap(n) for n in g.get("notes", [])]
    d = g.get("data_report")  # the data doctor's summary, when the caller inspected the data
    if d:
        lines.append(_wrap(f"Data doctor on {d['source']}: {d.get('pairs', '?')} pairs; findings: "
                           f"{', '.join(d.get('codes') or []) or 'none'}"))
        lines += [_wrap(h, indent="    ") for h in d.get("headline", [])]
    if rec.caveats:
        lines += ["", "Caveats"]
        lines += [_wrap(c["text"]) for c in rec.caveats]
    lines += ["", "Alternatives considered"]
    for a in rec.alternatives:
        tag = " (runner-up)" if a.get("runner_up") else ""
        lines.append(_wrap(f"{a['name']}{tag}: {a['why_not']}"))
    if rec.memory is not None:
        lines += [""] + render_memory(rec.memory)
    lines += ["", "Next steps"]
    steps = [s for s in rec.next_steps if s.strip()]  # a step with nothing to say (no data to collect) is left out
    lines += [textwrap.fill(s, WIDTH, initial_indent=f"  {i}. ", subsequent_indent="     ")
              for i, s in enumerate(steps, 1)]
    p = rec.preset
    hp = ", ".join(f"{k}={v}" for k, v in p["hparams"].items())
    what = f"pipeline {p['method']}, {p['stage']} stage" if p.get("stage") else f"method {p['method']}"
    lines += ["", "Runner preset", f"  {what}; {hp}", f"  {p['command']}"]
    if p.get("reward"):
        lines.append("  reward: " + ", ".join(f"{k}={v}" for k, v in p["reward"].items()))
    if p.get("note"):
        lines.append(f"  note: {p['note']}")
    if rec.ignored_answers:
        lines += ["", "Answers not used on this path: " + ", ".join(rec.ignored_answers)]
    return "\n".join(lines)
