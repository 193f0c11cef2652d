"""The decision framework: load advisor/framework.yaml, validate answers, walk the tree.

The engine knows question kinds (choice, bool, int, model, gpu) and node shapes (branches, next, skip);
everything else (which questions, in which order, which outcome) is data. Adding a question, a branch or
an outcome is an edit of framework.yaml only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import yaml

FRAMEWORK_PATH = Path(__file__).with_name("framework.yaml")
KINDS = ("choice", "bool", "int", "model", "gpu")
_SHORT_BOOL = {"y": "yes", "n": "no"}  # a prompt's y/n, on top of the planner's true/false words


class AdvisorError(ValueError):
    """Bad answers or a bad framework file; the message names the field and what is accepted."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class MissingAnswersError(AdvisorError):
    """Answers the path needs are missing. `.missing`: needed now; `.possible`: may be needed next."""

    def __init__(self, missing: list[str], possible: list[str]):
        msg = "missing answers for this path: " + ", ".join(missing)
        if possible:
            msg += " (then, depending on those answers, some of: " + ", ".join(possible) + ")"
        super().__init__(msg, field=missing[0] if missing else None)
        self.missing = missing
        self.possible = possible


@dataclass(frozen=True)
class Question:
    key: str
    kind: str
    text: str
    explain: str
    values: dict[str, str] = field(default_factory=dict)  # choice: value -> label
    minimum: int | None = None
    optional: bool = False
    default: Any = None
    hardware: bool = False

    def accepted(self) -> str:
        """What this question accepts, in words (used in error messages and prompts)."""
        if self.kind == "choice":
            return ", ".join(self.values)
        if self.kind == "bool":
            return "true or false (yes/no)"
        if self.kind == "int":
            return f"an integer >= {self.minimum if self.minimum is not None else 0}"
        if self.kind == "gpu":
            ids = _gpu_ids()
            return ", ".join(ids) if ids else "a planner GPU id"
        return "a model hub id or alias from the planner's catalogue, a config.json path or a model directory"

    def label(self, value: Any) -> str:
        if value is None:
            return "(skipped)"
        if self.kind == "choice":
            return self.values.get(value, str(value))
        if self.kind == "bool":
            return "yes" if value else "no"
        if self.kind == "int":
            return f"{value:,}"
        return str(value)

    def _accepted_list(self) -> list[Any] | None:
        """The values a UI can offer as choices (None: free input, see accepted_text)."""
        if self.kind == "choice":
            return list(self.values)
        if self.kind == "bool":
            return [True, False]
        if self.kind == "gpu":
            return _gpu_ids() or None
        return None

    def examples(self) -> list[str]:
        """For model questions: the planner's catalogue ids (other models are accepted too)."""
        if self.kind != "model":
            return []
        try:
            import planner
        except ImportError:
            return []
        return [m.id for m in planner.catalogue()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "text": self.text,
            "explain": self.explain,
            "accepted": self._accepted_list(),
            "labels": dict(self.values) if self.kind == "choice" else None,
            "accepted_text": self.accepted(),
            "minimum": self.minimum,
            "optional": self.optional,
            "default": self.default,
            "hardware": self.hardware,
            "examples": self.examples(),
        }


@dataclass(frozen=True)
class Branch:
    to: str | None  # node id, outcome id, or None (end)
    why: str = ""
    label: str = ""  # the answer(s) it stands for, for drawing
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class Node:
    id: str
    question: str
    branches: dict[str, Branch] = field(default_factory=dict)  # answer key -> branch
    ranges: tuple[Branch, ...] = ()  # int questions: min/max ranges
    next: Branch | None = None  # any answer
    skip: Branch | None = None  # optional question left unanswered

    def targets(self) -> list[Branch]:
        out = list(self.branches.values()) + list(self.ranges)
        if self.next is not None:
            out.append(self.next)
        if self.skip is not None:
            out.append(self.skip)
        return out


@dataclass(frozen=True)
class Framework:
    start: str
    after: str | None
    questions: dict[str, Question]
    nodes: dict[str, Node]
    outcomes: dict[str, dict[str, Any]]
    caveats: list[dict[str, Any]]
    data: dict[str, Any]
    defaults_for_memory: dict[str, Any]
    command_template: str
    command_template_spec: str
    spec_file: str
    raw: dict[str, Any]
    pipeline_command_template: str = ""  # presets with a `stage` run a pipeline of the runners
    pipeline_flags: dict[str, dict[str, str]] = field(default_factory=dict)  # data/given name -> CLI flag


def answer_key(value: Any) -> str:
    """The branch key of an answer: booleans as 'true'/'false', everything else as its string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- loading ---------------------------------------------------------------------------------------


def _branch(spec: Any, where: str, label: str = "") -> Branch:
    if not isinstance(spec, dict) or "to" not in spec:
        raise AdvisorError(f"{where}: expected a mapping with 'to' (and optionally 'why')", field=where)
    return Branch(
        to=spec["to"],
        why=str(spec.get("why", "")).strip(),
        label=label,
        minimum=spec.get("min"),
        maximum=spec.get("max"),
    )


def _question(key: str, spec: dict[str, Any]) -> Question:
    kind = spec.get("kind")
    if kind not in KINDS:
        raise AdvisorError(f"questions.{key}.kind: {kind!r}; accepted: {', '.join(KINDS)}", field=key)
    values = {str(k): str(v) for k, v in (spec.get("values") or {}).items()}
    if kind == "choice" and not values:
        raise AdvisorError(f"questions.{key}.values: a choice question needs values", field=key)
    return Question(
        key=key,
        kind=kind,
        text=str(spec.get("text", key)).strip(),
        explain=str(spec.get("explain", "")).strip(),
        values=values,
        minimum=spec.get("min"),
        optional="default" in spec,
        default=spec.get("default"),
        hardware=bool(spec.get("hardware", False)),
    )


def _node(node_id: str, spec: dict[str, Any], questions: dict[str, Question]) -> Node:
    qkey = spec.get("question")
    if qkey not in questions:
        raise AdvisorError(f"nodes.{node_id}.question: unknown question {qkey!r}", field=node_id)
    q = questions[qkey]
    branches: dict[str, Branch] = {}
    ranges: list[Branch] = []
    raw = spec.get("branches")
    if isinstance(raw, list):
        ranges = [_branch(b, f"nodes.{node_id}.branches[{i}]", _range_label(b)) for i, b in enumerate(raw)]
    elif isinstance(raw, dict):
        for answer, b in raw.items():
            key = answer_key(answer)
            branches[key] = _branch(b, f"nodes.{node_id}.branches.{key}", q.label(_parse_key(q, key)))
    nxt = _branch(spec["next"], f"nodes.{node_id}.next") if "next" in spec else None
    skip = _branch(spec["skip"], f"nodes.{node_id}.skip", "skip") if "skip" in spec else None
    if not branches and not ranges and nxt is None:
        raise AdvisorError(f"nodes.{node_id}: needs 'branches' or 'next'", field=node_id)
    return Node(node_id, qkey, branches, tuple(ranges), nxt, skip)


def _range_label(b: dict[str, Any]) -> str:
    lo, hi = b.get("min"), b.get("max")
    if hi is None:
        return f">= {lo:,}" if lo is not None else "any"
    return f"{lo or 0:,}-{hi:,}"


def _parse_key(q: Question, key: str) -> Any:
    if q.kind == "bool":
        return key == "true"
    return key


def load_framework(path: str | Path = FRAMEWORK_PATH) -> Framework:
    """Read and check a framework file: every reference resolves, every choice value has a branch."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise AdvisorError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise AdvisorError(f"{path}: expected a mapping")
    questions = {k: _question(k, v) for k, v in (raw.get("questions") or {}).items()}
    nodes = {k: _node(k, v, questions) for k, v in (raw.get("nodes") or {}).items()}
    outcomes = dict(raw.get("outcomes") or {})
    fw = Framework(
        start=raw.get("start"),
        after=raw.get("after"),
        questions=questions,
        nodes=nodes,
        outcomes=outcomes,
        caveats=list(raw.get("caveats") or []),
        data=dict(raw.get("data") or {}),
        defaults_for_memory=dict(raw.get("defaults_for_memory") or {}),
        command_template=str(raw.get("command_template", "")),
        command_template_spec=str(raw.get("command_template_spec", "alignplan run --spec {spec_file}")),
        spec_file=str(raw.get("spec_file", "spec.yaml")),
        raw=raw,
        pipeline_command_template=str(raw.get("pipeline_command_template", "")),
        pipeline_flags={k: dict(v or {}) for k, v in (raw.get("pipeline_flags") or {}).items()},
    )
    _check(fw, path)
    return fw


def _check(fw: Framework, path: Path) -> None:
    for ref in (fw.start, fw.after):
        if ref is not None and ref not in fw.nodes:
            raise AdvisorError(f"{path}: start/after {ref!r} is not a node")
    overlap = set(fw.nodes) & set(fw.outcomes)
    if overlap:
        raise AdvisorError(f"{path}: ids used for both a node and an outcome: {sorted(overlap)}")
    for node in fw.nodes.values():
        q = fw.questions[node.question]
        for b in node.targets():
            if b.to is not None and b.to not in fw.nodes and b.to not in fw.outcomes:
                raise AdvisorError(f"{path}: nodes.{node.id} leads to unknown {b.to!r}")
        if node.branches:
            if q.kind == "choice":
                unknown = set(node.branches) - set(q.values)
                uncovered = set(q.values) - set(node.branches)
            elif q.kind == "bool":
                unknown = set(node.branches) - {"true", "false"}
                uncovered = {"true", "false"} - set(node.branches)
            else:
                unknown, uncovered = set(node.branches), set()
            if unknown:
                raise AdvisorError(f"{path}: nodes.{node.id} branches on unknown answers {sorted(unknown)}")
            if uncovered and node.next is None:
                raise AdvisorError(f"{path}: nodes.{node.id} has no branch for {sorted(uncovered)}")
    modes = (fw.data.get("modes") or {}) if isinstance(fw.data, dict) else {}
    for oid, spec in fw.outcomes.items():
        for key in ("name", "summary", "runner_up", "data", "preset", "next_steps", "alternatives"):
            if key not in spec:
                raise AdvisorError(f"{path}: outcomes.{oid} needs '{key}'")
        options = [spec["data"]] if isinstance(spec["data"], str) else [o.get("mode") for o in spec["data"]]
        for mode in options:
            if mode not in modes:
                raise AdvisorError(f"{path}: outcomes.{oid}.data: unknown data mode {mode!r}; accepted: {', '.join(modes)}")
            if (spec.get("preset") or {}).get("stage"):  # a pipeline preset: its data sets come from the mode
                _check_pipeline_mode(fw, path, oid, mode, modes[mode])
        judge = (spec.get("preset") or {}).get("judge")
        if judge is not None:
            kind = judge.get("kind") if isinstance(judge, dict) else None
            if kind not in (fw.pipeline_flags.get("judge") or {}):
                raise AdvisorError(f"{path}: outcomes.{oid}.preset.judge: kind {kind!r} has no pipeline_flags.judge")
            if not spec["preset"].get("judge_stage"):
                raise AdvisorError(f"{path}: outcomes.{oid}.preset.judge needs judge_stage (the labelling stage)")


def _check_pipeline_mode(fw: Framework, path: Path, oid: str, mode_id: str, mode: dict[str, Any]) -> None:
    if not fw.pipeline_command_template:
        raise AdvisorError(f"{path}: outcomes.{oid}.preset has a stage but there is no pipeline_command_template")
    if not mode.get("pipeline_data"):
        raise AdvisorError(f"{path}: data.modes.{mode_id}: outcome {oid} runs a pipeline; give its pipeline_data")
    for kind, key in (("data", "pipeline_data"), ("given", "given"), ("given", "given_with_rm")):
        unknown = set(mode.get(key) or {}) - set(fw.pipeline_flags.get(kind) or {})
        if unknown:
            raise AdvisorError(f"{path}: data.modes.{mode_id}.{key}: no pipeline_flags.{kind} for {sorted(unknown)}")


@lru_cache(maxsize=1)
def framework() -> Framework:
    """The packaged framework, loaded once."""
    return load_framework()


# --- answers -------------------------------------------------------------------------------------


def _gpu_ids() -> list[str]:
    try:
        import planner
    except ImportError:
        return []
    return list(getattr(planner, "GPUS", {}) or [])


def parse_answer(q: Question, raw: Any) -> Any:
    """Turn a raw answer (typed, or text from a prompt/file) into the canonical value, or raise."""
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return None
    bad = AdvisorError(f"{q.key}: {raw!r} is not accepted; accepted: {q.accepted()}", field=q.key)
    if q.kind == "choice":
        value = str(raw).strip().lower()
        if value not in q.values:
            raise bad
        return value
    if q.kind == "bool":
        from planner.parsing import parse_bool  # the one true/false parser (lazy, as every planner use here)

        if isinstance(raw, str):
            raw = _SHORT_BOOL.get(raw.strip().lower(), raw)
        try:
            return parse_bool(raw, q.key)
        except ValueError:
            raise bad from None
    if q.kind == "int":
        if isinstance(raw, bool):
            raise bad
        if isinstance(raw, int):
            value = raw
        elif isinstance(raw, float) and raw.is_integer():
            value = int(raw)
        else:
            text = str(raw).strip().replace(",", "").replace("_", "")
            digits = text.lstrip("-")
            if not (digits.isascii() and digits.isdigit()):  # isdigit() alone accepts '¹', which int() rejects
                raise bad
            value = int(text)
        if q.minimum is not None and value < q.minimum:
            raise bad
        return value
    if q.kind == "gpu":
        ids = _gpu_ids()
        text = str(raw).strip()
        if ids:
            match = {i.lower(): i for i in ids}.get(text.lower())
            if match is None:
                raise bad
            return match
        return text
    return _check_model(q, str(raw).strip())


def _check_model(q: Question, text: str) -> str:
    """A model the planner can load (catalogue id, alias, config path, model dir); kept as typed."""
    try:
        import planner
    except ImportError:
        return text  # no planner: nothing to check against, and no memory check will run
    try:
        planner.load_model(text)
    except ValueError as exc:
        raise AdvisorError(f"{q.key}: {exc}".replace(f"{q.key}: {q.key}: ", f"{q.key}: "), field=q.key) from None
    return text


def validate_answers(answers: dict[str, Any] | None, fw: Framework | None = None) -> dict[str, Any]:
    """Canonical answers. Unknown keys or values raise AdvisorError naming the field and what is accepted.

    A value of None means "asked and skipped" (optional questions take their default).
    """
    fw = fw or framework()
    if answers is None:
        return {}
    if not isinstance(answers, dict):
        raise AdvisorError("answers: expected a mapping of question -> answer")
    out: dict[str, Any] = {}
    for key, raw in answers.items():
        if key not in fw.questions:
            raise AdvisorError(
                f"answers: unknown question {key!r}; accepted: {', '.join(fw.questions)}", field=str(key)
            )
        out[key] = parse_answer(fw.questions[key], raw)
    return out


# --- walking -------------------------------------------------------------------------------------


@dataclass
class Walk:
    """Where the answers lead. `pending` is the first node whose question is unanswered."""

    path: list[str] = field(default_factory=list)  # node ids visited, then the outcome id
    asked: list[str] = field(default_factory=list)  # question keys on the path, in order
    why: list[tuple[str, str]] = field(default_factory=list)  # (node id, why template) per step taken
    outcome: str | None = None
    pending: str | None = None  # node id
    missing: list[str] = field(default_factory=list)
    possible: list[str] = field(default_factory=list)
    used: dict[str, Any] = field(default_factory=dict)  # answers (and defaults) that decided the path


def _choose(fw: Framework, node: Node, value: Any) -> Branch | None:
    if node.ranges and isinstance(value, int):
        for b in node.ranges:
            if (b.minimum is None or value >= b.minimum) and (b.maximum is None or value <= b.maximum):
                return b
    b = node.branches.get(answer_key(value))
    return b if b is not None else node.next


def walk(
    answers: dict[str, Any], *, start: str | None = None, use_defaults: bool = True, fw: Framework | None = None
) -> Walk:
    """Follow the answers from `start` (default: the framework's start) to an outcome or a pending question.

    With use_defaults, an optional question with no answer takes its default (or its skip branch); without,
    it stays pending until answered or explicitly skipped (answer None).
    """
    fw = fw or framework()
    w = Walk()
    current: str | None = start or fw.start
    seen: set[str] = set()
    while current is not None and current in fw.nodes:
        if current in seen:
            raise AdvisorError(f"framework: cycle at node {current!r}")
        seen.add(current)
        node = fw.nodes[current]
        q = fw.questions[node.question]
        w.path.append(current)
        given = node.question in answers
        value = answers.get(node.question)
        if value is None:
            skippable = q.optional and (given or use_defaults)
            if not skippable:
                if w.pending is None:
                    w.pending = current
                if not use_defaults:
                    return w
                w.missing.append(q.key)
                if node.next is not None and not node.branches and not node.ranges:
                    current = node.next.to  # the path does not depend on this answer: keep listing
                    continue
                w.possible = sorted(set(_questions_below(fw, node)) - set(w.asked) - {q.key})
                return w
            # skipped (or optional and unanswered): take the skip branch or the default's branch
            w.asked.append(q.key)
            if node.skip is not None:
                w.used[q.key] = None
                current = node.skip.to
                continue
            value = q.default
            if value is None:
                w.used[q.key] = None
                current = node.next.to if node.next is not None else None
                continue
        else:
            w.asked.append(q.key)
        w.used[q.key] = value
        branch = _choose(fw, node, value)
        if branch is None:
            raise AdvisorError(f"{q.key}: no branch for {value!r} at node {node.id}", field=q.key)
        if branch.why:
            w.why.append((current, branch.why))
        current = branch.to
    if current is not None and current in fw.outcomes and not w.missing:
        w.outcome = current
        w.path.append(current)
    if w.missing:
        w.outcome = None
    return w


def _questions_below(fw: Framework, node: Node) -> list[str]:
    """Every question key reachable below `node` (not counting its own), in first-seen order."""
    out: list[str] = []
    stack = [b.to for b in node.targets()]
    seen: set[str] = set()
    while stack:
        nid = stack.pop()
        if nid is None or nid in seen or nid not in fw.nodes:
            continue
        seen.add(nid)
        child = fw.nodes[nid]
        if child.question not in out:
            out.append(child.question)
        stack.extend(b.to for b in child.targets())
    return out


def longest_remaining(fw: Framework, node_id: str | None) -> int:
    """Questions on the longest path from node_id to an outcome (or the end), node_id included."""

    @cache
    def depth(nid: str | None) -> int:
        if nid is None or nid not in fw.nodes:
            return 0
        return 1 + max((depth(b.to) for b in fw.nodes[nid].targets()), default=0)

    return depth(node_id)
