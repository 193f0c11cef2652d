"""cai-generate: Constitutional AI's supervised stage data (Bai et al. 2022): answer, critique, revise.

    accelerate launch -m runners.recipes.cai_generate --spec runs/<id>/spec.yaml [--resume]

For each prompt (typically red-team prompts) spec.model answers; then `rounds` times a principle is
drawn from the constitution (spec.constitution, default runners/data/constitutions/harmless.yaml;
seeded by spec.seed and the prompt's index), the critic writes a critique of the latest answer from
the principle's critique request, and the reviser rewrites the answer from its revision request.
Critic and reviser are the policy, or hparams.helper_model. Prompt formats (docs/cai.md): with a
chat template, one conversation (user prompt, assistant answer, user "Critique request: ...",
assistant critique, user "Revision request: ...", assistant revision); without, the same turns as
plain text ending in "Critique:" / "Revision:".

Writes, in <run dir>:
    output/data.jsonl     {prompt, completion: the final revision}: SFT data for the SL-CAI stage
                          (message lists in the chat format, so SFT applies the same template)
    output/revisions.jsonl every step: index, prompt, initial, rounds [{round, principle, critique,
                          revision}], final, changed (final != initial)
    report.json           prompts, how many final revisions differ from the initial answer, mean
                          critique and revision lengths (tokens and words), principles used, 3 examples
    metrics.jsonl, result.json (output_data, report) as the generate recipe does, with the same
    STOP (between batches) and --resume (after the rows already written, same output) behaviour.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runners.judges.constitution import Constitution, ConstitutionError, Principle, load_constitution
from runners.recipes import common
from runners.recipes.generate import (
    BatchLoop,
    Sampler,
    SamplingConfig,
    append_rows,
    as_messages,
    build_config,
    complete_rows,
    finish,
    load_prompts,
    load_sampler,
    open_output,
    other_process,
    output_data_path,
    row_seed,
)

CAI_PROMPT_FORMATS = ("auto", "chat", "plain")
REVISIONS_FILE = "revisions.jsonl"
REPORT_FILE = "report.json"
CRITIQUE_LABEL, REVISION_LABEL = "Critique request", "Revision request"


@dataclass
class CaiGenerateConfig(SamplingConfig):
    """hparams of the cai-generate recipe."""

    rounds: int = field(
        default=1,
        metadata={"help": "Critique -> revision rounds per prompt, each with a principle drawn at random. More "
                  "rounds revise further (Bai et al. used up to 4), at two more generations each."},
    )
    helper_model: str | None = field(
        default=None,
        metadata={"help": "A model (hub id or local path) that writes the critiques and revisions instead of the "
                  "policy, e.g. a stronger instruction-tuned model; None: the policy critiques itself."},
    )
    prompt_format: str = field(
        default="auto",
        metadata={"help": "'chat': the tokenizer's chat template, one conversation; 'plain': plain text turns "
                  "ending in 'Critique:' / 'Revision:'; 'auto': chat when the tokenizer has a template."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.rounds, int) or isinstance(self.rounds, bool) or self.rounds < 1:
            raise ValueError(f"rounds: a whole number >= 1, got {self.rounds!r}")
        if self.prompt_format not in CAI_PROMPT_FORMATS:
            raise ValueError(f"prompt_format: one of {', '.join(CAI_PROMPT_FORMATS)}, got {self.prompt_format!r}")
        if self.helper_model is not None and (not isinstance(self.helper_model, str) or not self.helper_model.strip()):
            raise ValueError(f"helper_model: a model path or hub id, got {self.helper_model!r}")


# --- prompt formats --------------------------------------------------------------------------------


def chat_format(run: common.Run, tokenizer, prompt_format: str, model: str) -> bool:
    if prompt_format == "plain":
        return False
    if tokenizer.chat_template:
        return True
    if prompt_format == "chat":
        raise common.SpecError(f"hparams.prompt_format: 'chat', but {model}'s tokenizer has no chat template")
    return False


def plain_prompt(prompt: Any) -> str:
    if isinstance(prompt, list):  # only reached for a plain-format helper given conversational prompts
        return "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in prompt) + "\nAssistant:"
    return str(prompt)


def joined(prompt_text: str, answer: str) -> str:
    """A plain-text prompt and an answer as one text: a space between them unless the prompt ends in one."""
    answer = answer.strip()
    return prompt_text + answer if not prompt_text or prompt_text[-1].isspace() else f"{prompt_text} {answer}"


def initial_text(tokenizer, prompt: Any, chat: bool) -> str:
    if chat:
        return tokenizer.apply_chat_template(as_messages(prompt), tokenize=False, add_generation_prompt=True)
    return plain_prompt(prompt)


def critique_text(tokenizer, prompt: Any, answer: str, principle: Principle, chat: bool) -> str:
    """The critic's input: the prompt, the answer so far, and the principle's critique request."""
    if chat:
        messages = [*as_messages(prompt), {"role": "assistant", "content": answer.strip()},
                    {"role": "user", "content": f"{CRITIQUE_LABEL}: {principle.critique}"}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"{joined(plain_prompt(prompt), answer)}\n\n{CRITIQUE_LABEL}: {principle.critique}\nCritique:"


def revision_text(tokenizer, prompt: Any, answer: str, principle: Principle, critique: str, chat: bool) -> str:
    """The reviser's input: the critic's conversation, its critique, and the principle's revision request."""
    if chat:
        messages = [*as_messages(prompt), {"role": "assistant", "content": answer.strip()},
                    {"role": "user", "content": f"{CRITIQUE_LABEL}: {principle.critique}"},
                    {"role": "assistant", "content": critique.strip()},
                    {"role": "user", "content": f"{REVISION_LABEL}: {principle.revision}"}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return (f"{critique_text(tokenizer, prompt, answer, principle, chat=False)} {critique.strip()}\n\n"
            f"{REVISION_LABEL}: {principle.revision}\nRevision:")


def sft_row(prompt: Any, final: str, chat: bool) -> dict[str, Any]:
    """The SL-CAI training row: conversational in the chat format, a plain prompt/completion otherwise."""
    if chat:
        return {"prompt": as_messages(prompt), "completion": [{"role": "assistant", "content": final.strip()}]}
    text = plain_prompt(prompt)
    return {"prompt": prompt, "completion": joined(text, final)[len(text):]}


def draw_principle(constitution: Constitution, seed: int, index: int, round_: int) -> Principle:
    """The principle of one round: seeded by the run's seed, the prompt's index and the round."""
    rng = random.Random(row_seed(seed, index, 10_000 + round_))
    return constitution.principles[rng.randrange(len(constitution.principles))]


# --- the output files ------------------------------------------------------------------------------


def align_revisions(path: Path, done: int) -> None:
    """On resume, keep exactly the revisions of the prompts whose data rows were written."""
    have = complete_rows(path)
    if have > done:
        lines = path.read_text(encoding="utf-8").splitlines()[:done]
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def write_report(run_dir: Path, revisions_path: Path, constitution: Constitution) -> dict[str, Any]:
    """<run dir>/report.json from every row of revisions.jsonl (so a resumed run reports all its prompts)."""
    rows = [json.loads(line) for line in revisions_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    steps = [step for row in rows for step in row["rounds"]]

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 3) if values else None

    changed = sum(1 for row in rows if row["changed"])
    report = {
        "prompts": len(rows),
        "revisions_differing": changed,
        "share_differing": round(changed / len(rows), 4) if rows else None,
        "rounds": len(steps),
        "mean_initial_tokens": mean([row["initial_tokens"] for row in rows]),
        "mean_critique_tokens": mean([s["critique_tokens"] for s in steps]),
        "mean_revision_tokens": mean([s["revision_tokens"] for s in steps]),
        "mean_critique_words": mean([len(s["critique"].split()) for s in steps]),
        "mean_revision_words": mean([len(s["revision"].split()) for s in steps]),
        "empty_revisions": sum(1 for s in steps if s["empty_revision"]),
        "constitution": constitution.name,
        "constitution_file": constitution.source,
        "principles_used": dict(Counter(s["principle"] for s in steps).most_common()),
        "examples": [
            {"prompt": row["prompt"], "initial": row["initial"],
             "principle": row["rounds"][-1]["principle"], "critique": row["rounds"][-1]["critique"],
             "final": row["final"]}
            for row in rows[:3]
        ],
    }
    path = run_dir / REPORT_FILE
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report


# --- the recipe ------------------------------------------------------------------------------------


def train(argv: list[str] | None = None) -> int:
    run = common.start("cai-generate", argv)
    if other_process():
        run.log("generation runs in the first process only; this one exits")
        return 0
    config = build_config(run, CaiGenerateConfig)
    try:
        constitution = load_constitution(run.spec.constitution)
    except ConstitutionError as exc:
        raise common.SpecError(f"constitution: {exc}") from None
    prompts = load_prompts(run)
    out_path = output_data_path(run.run_dir)
    revisions_path = out_path.parent / REVISIONS_FILE
    start = open_output(run, out_path, len(prompts))
    if run.resume:
        align_revisions(revisions_path, start)
    else:
        revisions_path.unlink(missing_ok=True)
        (run.run_dir / REPORT_FILE).unlink(missing_ok=True)

    policy = load_sampler(run, config)
    helper: Sampler = load_sampler(run, config, model_path=config.helper_model) if config.helper_model else policy
    chat = chat_format(run, policy.tokenizer, config.prompt_format, run.spec.model)
    helper_chat = chat if helper is policy else chat_format(run, helper.tokenizer, config.prompt_format,
                                                            str(config.helper_model))
    if any(isinstance(p, list) for p in prompts) and not chat:
        raise common.SpecError("hparams.prompt_format: the prompts are conversational; use 'chat' (or 'auto' with "
                               "a model that has a chat template)")
    run.log(f"{len(prompts)} prompts, {config.rounds} critique/revision round(s) each, constitution "
            f"{constitution.name!r} ({len(constitution.principles)} principles from {constitution.source}); "
            f"format {'chat' if chat else 'plain'}; critic/reviser: {config.helper_model or 'the policy'}")
    seed = run.spec.seed

    def process(begin: int, batch: list[Any]) -> tuple[list[dict[str, Any]], dict[str, float]]:
        indices = [begin + i for i in range(len(batch))]
        first = policy.sample([initial_text(policy.tokenizer, p, chat) for p in batch],
                              [row_seed(seed, i, 0) for i in indices])
        answers = [s["text"] for s in first]
        records = [{"index": i, "prompt": p, "initial": a, "initial_tokens": s["tokens"], "rounds": []}
                   for i, p, a, s in zip(indices, batch, answers, first, strict=True)]
        generations = list(first)
        for r in range(1, config.rounds + 1):
            principles = [draw_principle(constitution, seed, i, r) for i in indices]
            critiques = helper.sample(
                [critique_text(helper.tokenizer, p, a, pr, helper_chat)
                 for p, a, pr in zip(batch, answers, principles, strict=True)],
                [row_seed(seed, i, 2 * r - 1) for i in indices])
            revisions = helper.sample(
                [revision_text(helper.tokenizer, p, a, pr, c["text"], helper_chat)
                 for p, a, pr, c in zip(batch, answers, principles, critiques, strict=True)],
                [row_seed(seed, i, 2 * r) for i in indices])
            generations += critiques + revisions
            for k, (pr, c, v) in enumerate(zip(principles, critiques, revisions, strict=True)):
                empty = not v["text"].strip()  # nothing to train on: the answer stands as it was
                records[k]["rounds"].append({
                    "round": r, "principle": pr.name, "critique": c["text"], "critique_tokens": c["tokens"],
                    "revision": v["text"], "revision_tokens": v["tokens"], "empty_revision": empty,
                })
                if not empty:
                    answers[k] = v["text"]
        for record, final in zip(records, answers, strict=True):
            record["final"] = final
            record["changed"] = final.strip() != record["initial"].strip()
        append_rows(revisions_path, records)
        steps = [s for rec in records for s in rec["rounds"]]
        stats = {
            "response_length": sum(s["tokens"] for s in first) / len(first),
            "critique_length": sum(s["critique_tokens"] for s in steps) / len(steps),
            "revision_length": sum(s["revision_tokens"] for s in steps) / len(steps),
            "changed_fraction": sum(rec["changed"] for rec in records) / len(records),
            "eos_fraction": sum(s["eos"] for s in generations) / len(generations),
        }
        return [sft_row(rec["prompt"], rec["final"], chat) for rec in records], stats

    loop = BatchLoop(run, prompts, config.batch_size, start, out_path)
    loop.run_all(process, policy)
    report = write_report(run.run_dir, revisions_path, constitution) if revisions_path.exists() else None
    if report:
        run.log(f"{report['revisions_differing']}/{report['prompts']} final revisions differ from the first answer; "
                f"mean critique {report['mean_critique_tokens']} tokens, revision {report['mean_revision_tokens']}")
    return finish(run, loop, out_path, revisions=str(revisions_path),
                  report=str(run.run_dir / REPORT_FILE) if report else None,
                  share_differing=report["share_differing"] if report else None, rounds=config.rounds,
                  constitution=constitution.source)


def main(argv: list[str] | None = None) -> int:
    return common.run_main(train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
