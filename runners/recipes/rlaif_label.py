"""rlaif-label: a judge compares pairs of responses, in both orders, and the consistent verdicts become
DPO pairs (the labelling stage of RLAIF and of Constitutional AI's RL phase).

    accelerate launch -m runners.recipes.rlaif_label --spec runs/<id>/spec.yaml [--resume]

spec.judge says who judges (runners.rundir.spec.JudgeSpec: a local causal LM, an OpenAI-compatible
endpoint, a reward model or a Python function); spec.hparams are LabelConfig fields
(runners/judges/config.py); with spec.constitution (CAI) each pair is judged against one principle
drawn with a seeded RNG. Data: {prompt, responses: [...]}, {prompt, response_a, response_b}, or
{prompt, chosen, rejected} (judged again). Writes, in the run directory:

    labels.jsonl        one record per pair: both verdicts, p_first per order, consistent?, winner, lengths
    report.json         position consistency, dropped, ties, unparseable, length bias, tokens, cost, time
    output/data.jsonl   the DPO pairs {prompt, chosen, rejected} (runners.pipelines.spec.output_data_path)
    metrics.jsonl       one row per batch: step = pairs done, max_steps = pairs in all, the figures so far
    result.json         status, output_data, labels, and the report

The STOP file is read between batches (status stopped); --resume continues after the pairs already in
labels.jsonl (an endpoint judge's answers are cached on disk, so nothing is asked twice). Labelling
trains nothing: lora, gradient_checkpointing, max_steps, num_train_epochs, save_steps, merge_lora,
sharding and zero_stage are ignored (one log line names those set). It runs in the main process only.
docs/judges.md has the details.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from runners.recipes import common

METHOD = "rlaif-label"
LABELS_FILE = "labels.jsonl"
REPORT_FILE = "report.json"
# Where a data-making stage writes its rows (runners.pipelines.spec.output_data_path; pipelines import
# recipes, not the other way round, so the path is repeated here and a test pins the two together).
OUTPUT_DATA = Path("output") / "data.jsonl"
# Spec fields for training that mean nothing here, with the value that is their default.
TRAINING_FIELDS = {"lora": None, "max_steps": -1, "num_train_epochs": 1.0, "merge_lora": False, "zero_stage": None}


def build_label_config(run: common.Run):
    from runners.judges.config import LabelConfig

    hparams = dict(run.spec.hparams)
    common.check_hparams(hparams, LabelConfig, {})
    try:
        return LabelConfig(**hparams)
    except (TypeError, ValueError) as exc:
        raise common.SpecError(f"hparams.{exc}" if str(exc).split(":")[0] in hparams else f"hparams: {exc}") from None


def load_principles(run: common.Run):
    """The constitution's principles when the spec names one (CAI), else None."""
    constitution = getattr(run.spec, "constitution", None)
    if not constitution:
        return None
    from runners.judges.constitution import ConstitutionError, load_constitution

    source = constitution if isinstance(constitution, (str, Path)) else getattr(constitution, "path", None)
    try:
        loaded = load_constitution(source)
    except ConstitutionError as exc:
        raise common.SpecError(f"constitution: {exc}") from None
    run.log(f"constitution {loaded.name}: {len(loaded.principles)} principles, one drawn per pair (seed {run.spec.seed})")
    return loaded.principles


def read_done(labels_path: Path, pairs) -> list[dict[str, Any]]:
    """The records a previous attempt wrote, checked against the pairs (same order, same prompts)."""
    done: list[dict[str, Any]] = []
    if not labels_path.exists():
        return done
    for line in labels_path.read_text(encoding="utf-8").splitlines():
        try:
            done.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by a crash: that pair is judged again
    for record in done:
        k = record.get("index")
        if not isinstance(k, int) or k >= len(pairs) or pairs[k].prompt != record.get("prompt") \
                or (pairs[k].a, pairs[k].b) != (record.get("response_a"), record.get("response_b")):
            raise common.SpecError(
                f"--resume: {labels_path} does not match the data or the pairing (pair {k}); "
                "start the labelling again without --resume"
            )
    return done


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def train(argv: list[str] | None = None) -> int:
    from runners.data.load import load_and_normalize
    from runners.judges.base import JudgeError
    from runners.judges.build import make_judge
    from runners.judges.labelling import dpo_pairs, label_pairs, make_pairs, summarize

    run = common.start(METHOD, argv)
    if not run.is_main:  # one judge is enough; the other processes have nothing to do
        return 0
    spec, judge_spec = run.spec, run.spec.judge
    if judge_spec is None:
        raise common.SpecError("judge: rlaif-label needs a judge (kind: local, endpoint, reward-model or function)")
    config = build_label_config(run)
    ignored = [name for name, default in TRAINING_FIELDS.items() if getattr(spec, name) != default]
    if ignored:
        run.log(f"ignored (labelling trains nothing): {', '.join(ignored)}")
    if os.environ.get("WORLD_SIZE", "1") != "1":
        run.log("labelling runs in the main process only; the other processes exit at once")

    dataset, fmt = load_and_normalize(spec.dataset, METHOD)
    run.data_format = fmt
    run.log(fmt.summary())
    if spec.dataset.eval_fraction > 0:
        run.log("eval_fraction: labelling holds nothing out; every row is judged")
    principles = load_principles(run)
    pairs, identical = make_pairs(list(dataset), config.pairing, config.max_pairs_per_prompt, config.max_pairs)
    if not pairs:
        raise common.DataError(f"{fmt.source}: no pair of different responses to judge")
    run.log(f"{len(pairs)} pairs ({config.pairing} pairing; {identical} identical pairs skipped), each judged in both orders")

    labels_path, report_path = run.run_dir / LABELS_FILE, run.run_dir / REPORT_FILE
    output_path = run.run_dir / OUTPUT_DATA
    previous: dict[str, Any] = {}
    if run.resume:
        if report_path.exists():
            previous = json.loads(report_path.read_text(encoding="utf-8"))
        records = read_done(labels_path, pairs)
        write_jsonl(labels_path, records)  # drops a line cut short by a crash
        run.log(f"resuming after {len(records)} pairs already labelled")
    else:
        records = []
        for path in (labels_path, report_path, output_path):
            path.unlink(missing_ok=True)

    device = "cuda" if run.cuda else "cpu"
    try:
        judge = make_judge(judge_spec, run_dir=run.run_dir, default_model=spec.model, device=device,
                           dtype=common.model_dtype(run.precision), trust_remote_code=spec.trust_remote_code,
                           constitutional=principles is not None, batch_size=2 * config.batch_size,
                           max_length=config.max_length)
    except JudgeError as exc:
        raise common.SpecError(str(exc)) from None
    described = describe_judge(judge_spec, judge, spec.model)
    run.log(f"judge: {described}")
    run.monitor.on_train_begin(None, None, None)

    started = time.time()
    total = len(pairs)
    stopped = False

    def report_now(complete: bool) -> dict[str, Any]:
        report = summarize(records, judge_spec.price_per_million_input, judge_spec.price_per_million_output)
        stats = judge.stats()
        carried = previous.get("requests_by_attempt", [])
        report.update(
            judge=judge_spec.kind, judge_detail=described, pairs_total=total, identical_pairs_skipped=identical,
            pairing=config.pairing, inconsistent_policy=judge_spec.inconsistent, complete=complete,
            wall_time_s=float(previous.get("wall_time_s", 0.0)) + (time.time() - started),
            attempts=int(previous.get("attempts", 0)) + 1,
        )
        if judge_spec.kind == "endpoint":
            for key in ("requests", "retries", "cache_hits", "failed"):
                report[key] = int(previous.get(key, 0)) + int(stats.get(key, 0))
            errors = dict(previous.get("http_errors", {}))
            for key, n in stats.get("errors", {}).items():
                errors[key] = errors.get(key, 0) + n
            report["http_errors"] = errors
            report["requests_by_attempt"] = [*carried, int(stats.get("requests", 0))]
            report.setdefault("cost", None)
        if getattr(judge, "answer_tokens", None):
            report["answer_tokens"] = judge.answer_tokens
        return report

    try:
        for start in range(len(records), total, config.batch_size):
            batch = pairs[start:start + config.batch_size]
            batch_started = time.time()
            try:
                new = label_pairs(judge, batch, principles, spec.seed, judge_spec.inconsistent)
            except JudgeError as exc:
                raise common.SpecError(str(exc)) from None
            records.extend(new)
            with labels_path.open("a", encoding="utf-8") as fh:
                for record in new:
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            log_batch(run, records, total, judge.stats(), len(batch) / max(time.time() - batch_started, 1e-9),
                      judge_spec.price_per_million_input, judge_spec.price_per_million_output)
            control = SimpleNamespace(should_save=False, should_training_stop=False)
            run.monitor.on_step_end(None, None, control)
            if run.monitor.stopped and len(records) < total:
                stopped = True
                break
    finally:
        judge.close()

    report = report_now(complete=not stopped)
    report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    write_jsonl(output_path, dpo_pairs(records))
    extras = {"method": METHOD, "precision": run.precision, "device": device, "data_format": fmt.name,
              "output_data": str(output_path), "labels": str(labels_path), "report_file": str(report_path),
              "report": report}
    consistency = report["position_consistency"]
    summary = (f"{len(records)}/{total} pairs judged; position consistency "
               f"{'n/a' if consistency is None else f'{consistency:.1%}'}; {report['pairs_written']} DPO pairs written, "
               f"{report['dropped']} dropped, {report['ties']} ties, {report['unparseable']} unparseable")
    if stopped:
        run.log(f"STOP file seen: {summary}; --resume continues after pair {len(records)}")
        common.write_result(run.run_dir, "stopped", run.monitor, **extras)
        return 0
    run.log(f"done: {summary}; pairs in {output_path}")
    common.write_result(run.run_dir, "succeeded", run.monitor, **extras)
    return 0


def describe_judge(judge_spec, judge, run_model: str) -> str:
    if judge_spec.kind == "endpoint":
        return f"endpoint {judge_spec.endpoint_model} at {judge_spec.base_url}"
    if judge_spec.kind == "function":
        return f"function {judge_spec.function}"
    if judge_spec.kind == "reward-model":
        return f"reward model {judge_spec.model} (min_margin {judge_spec.min_margin})"
    return f"local LM {judge_spec.model or run_model}, verdict from the next-token probabilities of {judge.answer_tokens}"


def log_batch(run: common.Run, records, total: int, stats: dict[str, Any], pairs_per_second: float,
              price_in: float | None, price_out: float | None) -> None:
    """One metrics.jsonl row through the run's RunMonitor (as every recipe writes them), and a log line."""
    from runners.judges.labelling import summarize

    so_far = summarize(records, price_in, price_out)
    row: dict[str, Any] = {
        "pairs_per_second": pairs_per_second,
        **{k: so_far[k] for k in ("position_consistency", "pairs_written", "dropped", "ties", "unparseable",
                                  "failed", "longer_preferred_share", "first_position_share", "tokens")},
        **{k: stats[k] for k in ("requests", "retries", "cache_hits") if k in stats},
    }
    if "cost" in so_far:
        row["cost"] = so_far["cost"]
    state = SimpleNamespace(global_step=len(records), max_steps=total, epoch=len(records) / total,
                            num_input_tokens_seen=0, is_world_process_zero=True)
    run.monitor.on_log(None, state, None, logs=row)
    consistency = so_far["position_consistency"]
    run.log(f"pairs {len(records)}/{total}: consistency {'n/a' if consistency is None else f'{consistency:.2f}'} "
            f"written {so_far['pairs_written']} dropped {so_far['dropped']} ties {so_far['ties']}"
            + (f" requests {stats['requests']} retries {stats['retries']} cache hits {stats['cache_hits']}"
               if "requests" in stats else ""))


def main(argv: list[str] | None = None) -> int:
    return common.run_main(train, argv)


if __name__ == "__main__":
    raise SystemExit(main())

