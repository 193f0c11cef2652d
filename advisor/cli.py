"""`alignplan advise`: choose the alignment method, one question at a time or from an answers file.

    alignplan advise                              # asks the questions in the terminal
    alignplan advise --answers answers.yaml       # no prompts; readable recommendation
    alignplan advise --answers answers.yaml --json
    alignplan advise --answers answers.yaml --write-spec spec.yaml   # then: alignplan run --spec spec.yaml
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any, TextIO

import yaml

from advisor.framework import AdvisorError, Question
from advisor.questions import answer, back, restart, step
from advisor.recommend import advise
from advisor.render import render_text


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "advise",
        help="choose DPO, PPO, RLAIF, CAI, GRPO, KTO, ... for your signal, task, data and hardware",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--answers", metavar="FILE", help="YAML or JSON file of answers {question: answer}; no prompts")
    p.add_argument("--json", action="store_true", help="print the recommendation as one JSON document")
    p.add_argument("--write-spec", metavar="FILE",
                   help="also write the runner preset as a RunSpec YAML (a pipeline's PipelineSpec for RLHF) "
                   "for `alignplan run --spec FILE`")
    p.add_argument("--data", metavar="FILE",
                   help="your preference data: the data doctor's summary joins the data guidance "
                   "(its pair count answers 'pairs' when the answers leave it out)")
    p.set_defaults(func=run_advise)


def load_answers(path: str | Path) -> dict[str, Any]:
    from planner.input_files import InputFileError, load_yaml_file

    path = Path(path)
    try:
        data = load_yaml_file(path, "--answers")  # JSON is YAML; a regular file, size and nesting bounded
    except InputFileError as exc:
        raise AdvisorError(str(exc).replace("not valid YAML", "neither YAML nor JSON"), field="answers") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AdvisorError(f"--answers: {path} must hold a mapping of question -> answer", field="answers")
    return data


def _describe(q: Question, out: TextIO, number: int, expected: int) -> None:
    print(f"\n[{number}/{expected}] {q.text}", file=out)
    if q.explain:
        print(textwrap.fill(q.explain, 100, initial_indent="  ", subsequent_indent="  "), file=out)
    if q.kind == "choice":
        for i, (value, label) in enumerate(q.values.items(), 1):
            print(f"    {i}) {value:<18} {label}", file=out)
    else:
        print(f"  Accepted: {q.accepted()}", file=out)
    hint = "'back' changes the previous answer, 'restart' starts over" if number > 1 else ""
    if q.optional:
        default = "Enter to skip" if q.default is None else f"Enter for {q.default}"
        hint = f"{default}; {hint}" if hint else default
    if not hint:
        return
    print(f"  ({hint})", file=out)


def _resolve_choice(q: Question, raw: str) -> str:
    """A choice may be typed as its number in the list."""
    if q.kind == "choice" and raw.isdigit() and 1 <= int(raw) <= len(q.values):
        return list(q.values)[int(raw) - 1]
    return raw


def ask_interactively(out: TextIO = sys.stdout) -> dict[str, Any]:
    """Ask every question on the path with input(), re-asking on invalid input; return the answers."""
    answers: dict[str, Any] = {}
    while True:
        s = step(answers)
        if s.done:
            return answers
        q = s.question
        assert q is not None
        _describe(q, out, s.answered + 1, s.expected)
        print("> ", end="", file=out, flush=True)
        try:
            raw = input().strip()
        except EOFError:
            raise AdvisorError(
                f"input ended before the question '{q.key}' was answered; use --answers FILE to run without prompts",
                field=q.key,
            ) from None
        if raw.lower() == "back":
            answers = back(answers)
            continue
        if raw.lower() == "restart":
            answers = restart()
            continue
        if raw == "" and not q.optional:
            print(f"  An answer is needed; accepted: {q.accepted()}", file=out)
            continue
        try:
            answers = answer(answers, q.key, _resolve_choice(q, raw) if raw else None)
        except AdvisorError as exc:
            print(f"  {exc}", file=out)


def check_has_recipe(method: str, spec_file: str) -> None:
    """A spec file is only useful to `alignplan run`, which runs RECIPE_METHODS and the pipelines
    (PIPELINE_METHODS: rlhf, ...) only."""
    from runners.pipelines.definitions import PIPELINE_METHODS
    from runners.rundir.spec import RECIPE_METHODS

    if method not in RECIPE_METHODS and method not in PIPELINE_METHODS:
        raise AdvisorError(
            f"--write-spec {spec_file}: the recommended method {method!r} has no runner recipe, so no spec file "
            f"was written; runners train {', '.join(RECIPE_METHODS)} and run the pipelines "
            f"{', '.join(PIPELINE_METHODS)}",
            field="write_spec",
        )


def run_advise(args: argparse.Namespace) -> int:
    if args.answers:
        answers = load_answers(args.answers)
    else:
        # with --json, prompts go to stderr so stdout stays one JSON document
        answers = ask_interactively(sys.stderr if args.json else sys.stdout)
    report = None
    if getattr(args, "data", None):  # a command line may call runners; the advisor itself does not
        from runners.data import doctor

        report = doctor.inspect(args.data, task=answers.get("task"))
        if "pairs" in report and answers.get("pairs") is None:
            answers = {**answers, "pairs": report["pairs"]}
    rec = advise(answers, spec_file=args.write_spec)
    if report is not None:
        rec.data_guidance["data_report"] = report.get("summary") or {
            "source": report["source"], "codes": [f["code"] for f in report["findings"]],
            "headline": [f["message"] for f in report["findings"]]}
    if args.write_spec:
        spec = rec.preset["run_spec"]
        check_has_recipe(spec["method"], args.write_spec)
        Path(args.write_spec).write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
        kind = f"{spec['method']} pipeline" if rec.preset.get("stage") else "runner"
        print(f"wrote {args.write_spec} ({kind} preset for `alignplan run --spec {args.write_spec}`)", file=sys.stderr)
    if args.json:
        print(json.dumps(rec.to_dict(), indent=2, default=str))
    else:
        if not args.answers:
            print()
        print(render_text(rec))
    return 0
