"""generate: K sampled responses per prompt from spec.model (the generation stage of RLAIF and RL-CAI).

    accelerate launch -m runners.recipes.generate --spec runs/<id>/spec.yaml [--resume]

Writes <run dir>/output/data.jsonl, one row per prompt in data order: {"prompt": <as given>,
"responses": [r1, ..., rK]} (what the RLAIF labelling stage reads), and result.json with
output_data. hparams are GenerateConfig fields (below). Data: prompts (prompt-only rows, or the
prompts of preference / prompt-completion data). spec.max_steps > 0 takes the first max_steps prompts.

Sampling reuses the PPO rollout (runners.rl.rollout.sample: left-padded batches, KV cache, cut after
the first EOS) with one random generator per response, seeded from (spec.seed, prompt index,
response index): a response depends on its prompt and seed only, not on the batch it was drawn in,
so a run stopped (STOP, checked between batches) and resumed (--resume continues after the rows
already written) gives the same file as an uninterrupted run. One metrics row per batch: step =
prompts done, max_steps = prompts in all, tokens_per_second (generated tokens), response_length
(mean tokens), eos_fraction (share of responses that ended with EOS rather than at max_new_tokens).

Generation runs in one process: under a multi-process launch the other processes exit at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from runners.recipes import common

OUTPUT_DIR = "output"
DATA_FILE = "data.jsonl"  # <run dir>/output/data.jsonl: runners.pipelines.spec.output_data_path
PROMPT_FORMATS = ("auto", "chat")


# --- configuration --------------------------------------------------------------------------------


@dataclass
class SamplingConfig:
    """How responses are sampled; shared by generate and cai-generate."""

    max_new_tokens: int = field(
        default=256,
        metadata={"help": "Most tokens generated per response (a response that reaches it without EOS is cut "
                  "there). Higher: longer answers, a larger KV cache, more time."},
    )
    temperature: float = field(
        default=1.0,
        metadata={"help": "Sampling temperature (> 0): the logits are divided by it. Below 1: safer, more alike "
                  "responses; above 1: more varied ones."},
    )
    top_p: float = field(
        default=1.0,
        metadata={"help": "Nucleus sampling: draw only from the most likely tokens whose probabilities add up to "
                  "top_p (0 < top_p <= 1; 1 keeps every token)."},
    )
    batch_size: int = field(
        default=8,
        metadata={"help": "Prompts per generation batch (each batch is one generate call per step, and the STOP "
                  "file is checked between batches). Higher: faster on a GPU, more KV-cache memory."},
    )

    def __post_init__(self) -> None:
        _positive_int(self, "max_new_tokens")
        _positive_int(self, "batch_size")
        if not isinstance(self.temperature, (int, float)) or isinstance(self.temperature, bool) or self.temperature <= 0:
            raise ValueError(f"temperature: a number > 0, got {self.temperature!r}")
        if not isinstance(self.top_p, (int, float)) or isinstance(self.top_p, bool) or not 0 < self.top_p <= 1:
            raise ValueError(f"top_p: a number in (0, 1], got {self.top_p!r}")


@dataclass
class GenerateConfig(SamplingConfig):
    """hparams of the generate recipe."""

    num_responses: int = field(
        default=2,
        metadata={"help": "Responses sampled per prompt (K). 2 gives the pair an RLAIF judge compares; more gives "
                  "the judge more pairs to choose from, at K times the generation time."},
    )
    prompt_format: str = field(
        default="auto",
        metadata={"help": "'auto': string prompts are used as they are, message-list prompts go through the "
                  "tokenizer's chat template (as PPO and DPO read them); 'chat': string prompts become one user "
                  "message, and the rows' prompts are written as message lists."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive_int(self, "num_responses")
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format: one of {', '.join(PROMPT_FORMATS)}, got {self.prompt_format!r}")


def _positive_int(config: Any, name: str) -> None:
    value = getattr(config, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: a whole number >= 1, got {value!r}")


def build_config(run: common.Run, config_cls: type):
    """The recipe's config from spec.hparams: unknown keys are SpecErrors naming the key (and close
    matches), bad values SpecErrors naming the field."""
    hparams = dict(run.spec.hparams)
    common.check_hparams(hparams, config_cls, {})
    try:
        return config_cls(**hparams)
    except (ValueError, TypeError) as exc:
        raise common.SpecError(f"hparams.{exc}" if str(exc).split(":")[0] in _field_names(config_cls)
                               else f"hparams: {config_cls.__name__} rejected the settings: {exc}") from None


def _field_names(config_cls: type) -> set[str]:
    return {f.name for f in fields(config_cls)}


# --- seeds, prompts, the output file ----------------------------------------------------------------


def row_seed(seed: int, prompt_index: int, slot: int) -> int:
    """The random seed of one generated sequence: a hash of (run seed, prompt index, slot), so it does
    not depend on the order or the batch the prompt is generated in."""
    digest = hashlib.blake2b(f"{seed}:{prompt_index}:{slot}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def output_data_path(run_dir: Path) -> Path:
    """<run dir>/output/data.jsonl (the same path as runners.pipelines.spec.output_data_path)."""
    return Path(run_dir) / OUTPUT_DIR / DATA_FILE


def as_messages(prompt: Any) -> list[dict[str, str]]:
    return prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]


def render_prompt(tokenizer, prompt: Any, chat: bool) -> str:
    """The text the model continues: a message list (or, with chat, any prompt) through the chat
    template with the assistant's turn opened; a plain string as it is."""
    if isinstance(prompt, list) or chat:
        return tokenizer.apply_chat_template(as_messages(prompt), tokenize=False, add_generation_prompt=True)
    return str(prompt)


def uses_chat(run: common.Run, tokenizer, prompts: list[Any], prompt_format: str) -> bool:
    """Whether prompts go through the chat template; a SpecError when that needs one the tokenizer lacks."""
    chat = prompt_format == "chat" or any(isinstance(p, list) for p in prompts)
    if chat and not tokenizer.chat_template:
        why = "hparams.prompt_format is 'chat'" if prompt_format == "chat" else "the prompts are conversational"
        raise common.SpecError(f"model: {run.spec.model}'s tokenizer has no chat template, but {why}")
    return chat


def complete_rows(path: Path) -> int:
    """How many whole rows the output file holds; a torn last line (a process killed mid-write) is cut off."""
    if not path.exists():
        return 0
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    good: list[str] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            json.loads(line)
        except json.JSONDecodeError:
            break
        good.append(line)
    kept = "".join(line + "\n" for line in good)
    if kept != text:
        path.write_text(kept, encoding="utf-8")
    return len(good)


def open_output(run: common.Run, path: Path, total: int) -> int:
    """Prepare the output file; the index of the first prompt still to do (0 unless resuming)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not run.resume:
        path.unlink(missing_ok=True)
        return 0
    done = complete_rows(path)
    if done > total:
        raise common.SpecError(f"--resume: {path} has {done} rows but the data has only {total} prompts; "
                               "the data or max_steps changed since the run started")
    run.log(f"resuming after the {done} prompts already in {path}" if done else
            f"--resume: nothing written yet in {path}; starting from the first prompt")
    return done


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        fh.flush()
        os.fsync(fh.fileno())


def load_prompts(run: common.Run) -> list[Any]:
    """The prompts of the run's data (every row: eval_fraction holds nothing out here), capped by max_steps."""
    train_set, eval_set = common.load_data(run)
    prompts = list(train_set["prompt"])
    if eval_set is not None:
        run.log("eval_fraction: a generation stage evaluates nothing; the held-out prompts are generated too")
        prompts += list(eval_set["prompt"])
    if run.spec.max_steps > 0:
        prompts = prompts[: run.spec.max_steps]
    if not prompts:
        raise common.SpecError(f"dataset: {run.spec.dataset.path} has no prompts")
    return prompts


# --- the model and sampling -----------------------------------------------------------------------


class Sampler:
    """A frozen model and its tokenizer, sampling batches of texts with per-sequence seeds."""

    def __init__(self, model, tokenizer, device: str, config: SamplingConfig) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.config = config
        self.chunk = config.batch_size  # sequences per generate call
        self.generated_tokens = 0

    def sample(self, texts: list[str], seeds: list[int], max_new_tokens: int | None = None) -> list[dict[str, Any]]:
        """[{"text", "tokens", "eos"}] for each text, in order; texts are split into chunks of
        batch_size sequences (the KV cache grows with the chunk)."""
        out: list[dict[str, Any]] = []
        chunk = max(1, self.chunk)
        for i in range(0, len(texts), chunk):
            out += self._sample(texts[i:i + chunk], seeds[i:i + chunk], max_new_tokens or self.config.max_new_tokens)
        return out

    def _sample(self, texts: list[str], seeds: list[int], max_new_tokens: int) -> list[dict[str, Any]]:
        from runners.rl.rollout import sample

        tok = self.tokenizer
        side = tok.padding_side
        tok.padding_side = "left"  # every prompt ends where the responses start
        try:
            # The chat template already wrote the BOS; plain text gets the tokenizer's own special tokens.
            query = tok(texts, return_tensors="pt", padding=True,
                        add_special_tokens=not any(_starts_with_bos(tok, t) for t in texts))
        finally:
            tok.padding_side = side
        rollout = sample(
            self.model, query["input_ids"].to(self.device), query["attention_mask"].to(self.device),
            max_new_tokens=max_new_tokens, temperature=self.config.temperature, top_p=self.config.top_p,
            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, row_seeds=seeds,
        )
        results = []
        for ids, mask, ended in zip(rollout.response_ids, rollout.response_mask, rollout.ended_with_eos, strict=True):
            n = int(mask.sum())
            self.generated_tokens += n
            results.append({"text": tok.decode(ids[:n], skip_special_tokens=True), "tokens": n, "eos": bool(ended)})
        return results


def _starts_with_bos(tokenizer, text: str) -> bool:
    bos = tokenizer.bos_token
    return bool(bos) and text.startswith(bos)


def load_sampler(run: common.Run, config: SamplingConfig, model_path: str | None = None) -> Sampler:
    """spec.model (or model_path, e.g. a helper model) in eval mode on this process's device."""
    import dataclasses

    if run.spec.lora is not None:
        raise common.SpecError(f"lora: {run.method} trains nothing; remove lora (a LoRA run's merged final "
                               "model is an ordinary model path)")
    path = model_path or run.spec.model
    view = run if model_path is None else dataclasses.replace(run, spec=run.spec.model_copy(update={"model": path}))
    tokenizer = common.load_tokenizer(view)
    model = common.load_model(view, tokenizer=tokenizer)
    device = "cuda" if run.cuda else "cpu"
    model.to(device).eval()
    if tokenizer.eos_token_id is None:
        raise common.SpecError(f"model: {path}'s tokenizer has no EOS token; generation would never end a response")
    return Sampler(model, tokenizer, device, config)


# --- the loop: batches, metrics, STOP ----------------------------------------------------------------


class BatchLoop:
    """Walks the prompts in batches from `start`, writes a metrics row after each, and stops between
    batches when the STOP file appears. `process(batch_start, prompts) -> (rows, stats)`."""

    def __init__(self, run: common.Run, prompts: list[Any], batch_size: int, start: int, out_path: Path) -> None:
        self.run = run
        self.prompts = prompts
        self.batch_size = batch_size
        self.start = start
        self.out_path = out_path
        self.done = start
        self.stopped = False

    def batches(self) -> Iterator[tuple[int, list[Any]]]:
        for begin in range(self.start, len(self.prompts), self.batch_size):
            yield begin, self.prompts[begin:begin + self.batch_size]

    def run_all(self, process: Callable[[int, list[Any]], tuple[list[dict[str, Any]], dict[str, float]]],
                sampler: Sampler) -> None:
        monitor = self.run.monitor
        monitor.on_train_begin(None, None, None, model=sampler.model)
        if self.done >= len(self.prompts):
            return
        for begin, batch in self.batches():
            if self._stop_requested():
                self.stopped = True
                break
            t0, before = time.time(), sampler.generated_tokens
            rows, stats = process(begin, batch)
            seconds = time.time() - t0
            if sampler.generated_tokens > before:  # the batch's generation speed (issue 14's throughput)
                stats = {**stats, "generation_time_s": seconds,
                         "generation_tokens_per_second": (sampler.generated_tokens - before) / seconds}
            append_rows(self.out_path, rows)
            self.done = begin + len(batch)
            self._log(stats, seconds, sampler.generated_tokens)

    def _stop_requested(self) -> bool:
        control = SimpleNamespace(should_save=False, should_training_stop=False)
        self.run.monitor.on_step_end(None, None, control)
        return self.run.monitor.stopped

    def _log(self, stats: dict[str, float], seconds: float, tokens: int) -> None:
        total = len(self.prompts)
        state = SimpleNamespace(global_step=self.done, max_steps=total, epoch=self.done / total,
                                num_input_tokens_seen=0, is_world_process_zero=self.run.is_main)
        row = {"num_tokens": float(tokens), "batch_seconds": seconds, **stats}
        self.run.monitor.on_log(None, state, None, logs=row)
        shown = "  ".join(f"{k} {v:.3g}" for k, v in stats.items())
        self.run.log(f"prompts {self.done}/{total}: {shown} ({seconds:.2f} s)")


def finish(run: common.Run, loop: BatchLoop, out_path: Path, **extra: Any) -> int:
    """result.json: stopped (with the prompts done) or succeeded, output_data either way."""
    extras = {"method": run.method, "precision": run.precision, "device": "cuda" if run.cuda else "cpu",
              "data_format": run.data_format.name if run.data_format else None,
              "output_data": str(out_path), "prompts_done": loop.done, "prompts_total": len(loop.prompts), **extra}
    if loop.stopped:
        run.log(f"STOP file seen after {loop.done}/{len(loop.prompts)} prompts; --resume continues from there")
        common.write_result(run.run_dir, "stopped", run.monitor, **extras)
        return 0
    common.write_result(run.run_dir, "succeeded", run.monitor, **extras)
    run.log(f"done: {loop.done} prompts in {out_path}")
    return 0


def other_process() -> bool:
    """True in a process other than the first of a multi-process launch (it has nothing to do)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and os.environ.get("RANK", "0") != "0"


# --- the recipe -----------------------------------------------------------------------------------


def train(argv: list[str] | None = None) -> int:
    run = common.start("generate", argv)
    if other_process():
        run.log("generation runs in the first process only; this one exits")
        return 0
    config = build_config(run, GenerateConfig)
    prompts = load_prompts(run)
    out_path = output_data_path(run.run_dir)
    start = open_output(run, out_path, len(prompts))
    sampler = load_sampler(run, config)
    chat = uses_chat(run, sampler.tokenizer, prompts, config.prompt_format)
    k = config.num_responses
    run.log(f"{len(prompts)} prompts x {k} responses; max_new_tokens {config.max_new_tokens}, temperature "
            f"{config.temperature}, top_p {config.top_p}, batch_size {config.batch_size} prompts")

    def process(begin: int, batch: list[Any]) -> tuple[list[dict[str, Any]], dict[str, float]]:
        texts, seeds = [], []
        for offset, prompt in enumerate(batch):
            text = render_prompt(sampler.tokenizer, prompt, chat)
            for j in range(k):
                texts.append(text)
                seeds.append(row_seed(run.spec.seed, begin + offset, j))
        samples = sampler.sample(texts, seeds)
        rows = [{"prompt": as_messages(p) if chat else p,
                 "responses": [s["text"] for s in samples[i * k:(i + 1) * k]]} for i, p in enumerate(batch)]
        stats = {"response_length": sum(s["tokens"] for s in samples) / len(samples),
                 "eos_fraction": sum(s["eos"] for s in samples) / len(samples)}
        return rows, stats

    sampler.chunk = config.batch_size * k  # batch_size counts prompts; a generate call takes their K samples
    loop = BatchLoop(run, prompts, config.batch_size, start, out_path)
    loop.run_all(process, sampler)
    return finish(run, loop, out_path, num_responses=k)


def main(argv: list[str] | None = None) -> int:
    return common.run_main(train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
