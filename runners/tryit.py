"""Try a finished run: chat with its trained model and compare it, prompt by prompt, with its reference.

The reference is what the run started from: the spec's model (the SFT or base model a DPO-family or PPO
run aligns; for a pipeline stage, the previous stage's final model). For a LoRA run whose final/ is an
adapter, the reference is the same loaded model with the adapter switched off (no second copy).

Held-out prompts are the run's eval split when it has one (the recipe's rule: split_dataset_by_prompt on
the normalized data with the spec's eval_fraction and seed), else the first prompts of its data.
Generation is greedy by default. A prompt from the data is fed as the trainer saw it: a conversation
through the tokenizer's chat template, plain text as it is; a question typed by the user goes through
the chat template when the tokenizer has one.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runners.exports.merged import adapter_dir, final_model, load_tokenizer, torch_dtype, trained_by
from runners.rundir.reader import RunDir

Prompt = str | list[dict[str, Any]]  # plain text, or chat messages


@dataclass
class TriedRun:
    """A run's trained model and its reference, loaded for generation."""

    run_id: str
    trained: Any
    reference: Any | None  # None: not loaded, or (adapter_reference) the trained model with its adapter off
    tokenizer: Any
    reference_name: str
    adapter_reference: bool = False

    def reference_model(self):
        """(model, context to generate in) for the reference: the adapter switched off, or the reference."""
        if self.adapter_reference:
            return self.trained, self.trained.disable_adapter()
        if self.reference is None:
            raise ValueError("--compare: the reference model was not loaded (load(..., with_reference=True))")
        return self.reference, contextlib.nullcontext()


def load(run_dir: str | Path, with_reference: bool = True) -> TriedRun:
    """Load the run's final model (ExportError, one line, when the run has none) and, when asked, its
    reference, on the GPU when there is one."""
    import torch
    from transformers import AutoModelForCausalLM

    run = RunDir(Path(run_dir))
    final = final_model(run)
    run = trained_by(run, final)
    spec = run.spec()
    dtype = torch_dtype(run)
    kw = {"dtype": dtype, "trust_remote_code": spec.trust_remote_code}
    tokenizer = load_tokenizer(final, spec.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if adapter_dir(final) == final:
        from peft import PeftModel

        trained = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(spec.model, **kw), str(final))
        reference, name = None, f"{spec.model} (the LoRA adapter switched off)"
    else:
        trained = AutoModelForCausalLM.from_pretrained(str(final), **kw)
        reference = AutoModelForCausalLM.from_pretrained(spec.model, **kw) if with_reference else None
        name = spec.model
    device = "cuda" if torch.cuda.is_available() else "cpu"
    trained.to(device).eval()
    if reference is not None:
        reference.to(device).eval()
    return TriedRun(run.id, trained, reference, tokenizer, name, adapter_reference=adapter_dir(final) == final)


def held_out_prompts(run_dir: str | Path, k: int = 5) -> tuple[list[Prompt], str]:
    """Up to k distinct prompts and where they came from ('held-out split' or 'first prompts of the data')."""
    from runners.data.load import load_and_normalize, prompt_key, split_dataset_by_prompt

    run = RunDir(Path(run_dir))
    spec = trained_by(run, final_model(run)).spec()
    dataset, fmt = load_and_normalize(spec.dataset, spec.method)
    where = "first prompts of the data"
    if spec.dataset.eval_fraction > 0:
        _, dataset = split_dataset_by_prompt(dataset, spec.dataset.eval_fraction, spec.seed, fmt.source)
        where = "held-out split"
    seen: dict[str, Prompt] = {}
    for row in dataset:
        prompt = _prompt_of(row)
        seen.setdefault(prompt_key(row), prompt)
        if len(seen) >= k:
            break
    return list(seen.values()), where


def _prompt_of(row: dict[str, Any]) -> Prompt:
    if "prompt" in row:
        return row["prompt"]
    if "messages" in row:  # the turns before the last assistant turn, as prompt_key reads them
        messages = row["messages"]
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=len(messages))
        return messages[:last] if last > 0 else messages
    return row.get("text", "")


def prompt_text(prompt: Prompt) -> str:
    """A prompt as one string for display."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in prompt)


def as_user_prompt(text: str, tokenizer) -> Prompt:
    """A question typed by the user: a chat turn when the tokenizer has a chat template, else the text."""
    return [{"role": "user", "content": text}] if tokenizer.chat_template else text


def encode(prompt: Prompt, tokenizer) -> list[int]:
    if isinstance(prompt, str):
        return tokenizer(prompt)["input_ids"]
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(prompt_text(prompt))["input_ids"]


def generate(model, tokenizer, prompts: list[Prompt], max_new_tokens: int = 48, greedy: bool = True,
             temperature: float = 0.7) -> list[str]:
    """One answer per prompt (the new tokens only, special tokens dropped); one prompt at a time, so no
    padding changes what a greedy answer is."""
    import torch

    answers = []
    for prompt in prompts:
        ids = torch.tensor([encode(prompt, tokenizer)], device=model.device)
        sampling = {"do_sample": False} if greedy else {"do_sample": True, "temperature": temperature}
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id, **sampling)
        answers.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
    return answers


def answer(tried: TriedRun, prompts: list[Prompt], compare: bool = False, max_new_tokens: int = 48,
           greedy: bool = True) -> list[dict[str, Any]]:
    """[{prompt, trained[, reference]}] for the prompts."""
    trained = generate(tried.trained, tried.tokenizer, prompts, max_new_tokens, greedy)
    rows = [{"prompt": prompt_text(p), "trained": a} for p, a in zip(prompts, trained, strict=True)]
    if compare:
        model, context = tried.reference_model()
        with context:
            for row, ref in zip(rows, generate(model, tried.tokenizer, prompts, max_new_tokens, greedy), strict=True):
                row["reference"] = ref
    return rows


def print_rows(rows: list[dict[str, Any]], reference_name: str, out) -> None:
    for i, row in enumerate(rows, 1):
        print(f"--- prompt {i}: {json.dumps(row['prompt'])}", file=out)
        print(f"trained:   {json.dumps(row['trained'])}", file=out)
        if "reference" in row:
            print(f"reference: {json.dumps(row['reference'])}", file=out)
    if rows and "reference" in rows[0]:
        print(f"(reference: {reference_name})", file=out)
