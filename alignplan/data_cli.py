"""`alignplan data inspect FILE|HUB_ID`: the data doctor from the shell (docs/data-doctor.md).

    alignplan data inspect pairs.jsonl --model Qwen/Qwen2.5-0.5B --task factual --max-length 1024 --json
"""

from __future__ import annotations

import argparse
import json
import sys

from planner.parsing import printable


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="look at training data before a run (the data doctor)",
                       description="Look at training data before paying for a run.")
    inner = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    q = inner.add_parser("inspect", help="report on a preference data set: volume, lengths, biases, hygiene",
                         description="Report on a preference data set: volume against the reference text's guidance, "
                         "token lengths and truncation, length and marker biases, duplicates, split leaks, "
                         "concentrated rejected answers, multi-turn structure; each finding with a code and a severity.")
    q.add_argument("path", metavar="FILE|HUB_ID", help="local .jsonl/.json/.csv/.parquet file or hub data set id")
    q.add_argument("--model", help="count tokens with this model's tokenizer and chat template (hub id or directory); "
                                   "without it, whitespace words estimate tokens")
    q.add_argument("--method", default="dpo", help="the method the data is for (default dpo)")
    q.add_argument("--task", help="the advisor's task id (style, factual, qa, safety, ...): volume guidance")
    q.add_argument("--max-length", type=int, default=1024, help="the planned max_length in tokens (default 1024, TRL's)")
    q.add_argument("--eval-fraction", type=float, default=0.0,
                   help="the run's held-out share: check the split by prompt as the runner makes it")
    q.add_argument("--markers", help="YAML with hedging:/confident: word lists (default: runners/data/doctor_markers.yaml)")
    q.add_argument("--reward-model", metavar="DIR", help="a reward model: the share of labels it agrees with")
    q.add_argument("--sample-size", type=int, default=10_000,
                   help="pairs kept whole for token counts, near-duplicates and n-grams (default 10000)")
    q.add_argument("--gpu", help="GPU type for the memory plan's fit (e.g. H100-80GB)")
    q.add_argument("--plan-model", help="model to plan memory for (default: --model)")
    q.add_argument("--json", action="store_true", help="print the report as one JSON document")
    q.set_defaults(func=run_inspect)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_inspect(args: argparse.Namespace) -> int:
    from alignplan import data_doctor

    if args.max_length < 1:
        raise ValueError(f"--max-length must be a positive number of tokens, got {args.max_length}")
    if not 0 <= args.eval_fraction < 0.5:
        raise ValueError(f"--eval-fraction must be in [0, 0.5), got {args.eval_fraction}")
    if args.sample_size < 1:
        raise ValueError(f"--sample-size must be at least 1, got {args.sample_size}")
    report = data_doctor.run(args.path, model=args.model, method=args.method, task=args.task,
                             max_length=args.max_length, eval_fraction=args.eval_fraction, markers=args.markers,
                             reward_model=args.reward_model, sample_size=args.sample_size, gpu=args.gpu,
                             plan_model=args.plan_model)
    if args.json:
        json.dump(report, sys.stdout, indent=1, default=str)
        print()
    else:
        for line in data_doctor.render_text(report).splitlines():
            print(printable(line))
    return 1 if any(f["severity"] == "error" for f in report.get("findings", [])) else 0
