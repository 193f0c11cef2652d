"""Shared steps of every recipe, in the order a recipe calls them.

    run = start("dpo", argv)              parse --spec/--resume, load the RunSpec, pick device and precision
    train_set, eval_set = load_data(run)  load + normalize the data: bad data fails here, before any model
    config = build_config(run, DPOConfig, defaults={...})   spec.hparams checked against the config fields
    tokenizer = load_tokenizer(run); model = load_model(run)
    trainer = DPOTrainer(..., callbacks=[run.monitor])
    return finish(run, trainer)           train (resuming if asked), save, write result.json

`run_main(train, argv)` wraps a recipe's train function: spec and data errors print one line and exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runners.data.load import DataError, DetectedFormat, load_and_normalize, split_dataset_by_prompt
from runners.recipes.callbacks import (
    METRICS_FILE,
    RESULT_FILE,
    STOP_FILE,
    PeakMemory,
    RunMonitor,
    write_result,
)
from runners.recipes.defaults import method_defaults
from runners.rundir.spec import RunSpec, SpecError

# Spec fields that set these TrainingArguments; hparams may not set them a second time.
SPEC_OWNED = {
    "output_dir": "output_dir",
    "max_steps": "max_steps",
    "num_train_epochs": "num_train_epochs",
    "seed": "seed",
    "logging_steps": "logging_steps",
    "save_steps": "save_steps",
    "gradient_checkpointing": "gradient_checkpointing",
    # transformers 5's new name wins over gradient_checkpointing, so it would bypass the spec (and the plan)
    "activation_checkpointing": "gradient_checkpointing",
    "bf16": "precision",
    "fp16": "precision",
    "use_cpu": "devices",
}

# Shown first, where the config has them, when an hparams key is unknown.
TUNED_HPARAMS = (
    "beta",
    "loss_type",
    "max_length",
    "max_completion_length",
    "num_generations",
    "temperature",
    "precompute_ref_log_probs",
    "label_smoothing",
    "cpo_alpha",
    "simpo_gamma",
    "desirable_weight",
    "undesirable_weight",
    "packing",
    "completion_only_loss",
    "center_rewards_coefficient",
)
# Shown after them: the common training fields.
COMMON_HPARAMS = (
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
    "max_grad_norm",
    "optim",
)


@dataclass
class Run:
    """What a recipe knows about its run once the spec is loaded."""

    method: str
    spec: RunSpec
    spec_path: Path
    run_dir: Path
    output_dir: Path
    resume: bool
    cuda: bool
    precision: str
    monitor: RunMonitor
    is_main: bool
    data_format: DetectedFormat | None = None
    notes: list[str] = field(default_factory=list)

    def log(self, message: str) -> None:
        if self.is_main:
            print(f"[{self.method}] {message}", flush=True)


# --- 1. start -----------------------------------------------------------------------------------


def parse_args(method: str, argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m runners.recipes.{method}", description=f"{method} recipe")
    parser.add_argument("--spec", required=True, help="runs/<id>/spec.yaml; the run directory is its parent")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    return parser.parse_args(argv)


def start(method: str, argv: list[str] | None) -> Run:
    """Load the spec, check it is for this recipe, pick device and precision, reset the run's outputs."""
    args = parse_args(method, argv)
    spec_path = Path(args.spec).resolve()
    spec = RunSpec.load(spec_path)
    if spec.method != method:
        raise SpecError(f"method: the spec asks for {spec.method!r} but this is the {method!r} recipe")
    run_dir = spec_path.parent
    cuda = uses_cuda(spec)
    precision = resolve_precision(spec.precision, cuda)
    output_dir = Path(spec.output_dir).expanduser() if spec.output_dir else run_dir / "checkpoints"
    if not output_dir.is_absolute():
        output_dir = (run_dir / output_dir).resolve()
    is_main = _is_main_process()
    run = Run(
        method=method,
        spec=spec,
        spec_path=spec_path,
        run_dir=run_dir,
        output_dir=output_dir,
        resume=args.resume,
        cuda=cuda,
        precision=precision,
        monitor=RunMonitor(run_dir, PeakMemory(cuda=cuda)),
        is_main=is_main,
    )
    if is_main:
        (run_dir / RESULT_FILE).unlink(missing_ok=True)
        if args.resume:
            (run_dir / STOP_FILE).unlink(missing_ok=True)  # the STOP that ended the previous attempt
        else:
            (run_dir / METRICS_FILE).unlink(missing_ok=True)
    check_quantization(run)
    run.log(f"spec {spec_path}; device {'cuda' if cuda else 'cpu'}; precision {precision}")
    return run


def uses_cuda(spec: RunSpec) -> bool:
    if spec.devices == "cpu":
        return False
    import torch

    return torch.cuda.is_available()


# Precision ids whose weights are loaded in bf16. bf16-kahan (the default on a bf16 GPU) trains them
# with torch-optimi's AdamW and Kahan summation: a bf16 buffer per weight keeps the part of each update
# that bf16 rounding drops (pure bf16 with torch's AdamW loses most updates at lr 1e-6:
# bench/results/precision.md). bf16 is pure bf16 with torch's AdamW.
BF16_WEIGHTS = ("bf16", "bf16-kahan")
# Below this learning rate pure bf16 (precision bf16) keeps under half the weight changes fp32 makes
# (bench/results/precision.md, the tiny model's sweep); a run below it is warned.
BF16_VANISHING_LR = 1e-4
# TrainingArguments.optim values that mean "torch's AdamW", which bf16-kahan replaces.
_PLAIN_ADAMW = ("adamw_torch", "adamw_torch_fused")


def resolve_precision(precision: str | None, cuda: bool) -> str:
    """The planner's precision ids; None means bf16-kahan on a bf16-capable GPU, else fp32."""
    if precision is not None:
        return precision
    if cuda:
        import torch

        if torch.cuda.is_bf16_supported():
            return "bf16-kahan"
    return "fp32"


def _is_main_process() -> bool:
    return os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) == "0"


# --- 2. data ------------------------------------------------------------------------------------


def load_data(run: Run):
    """(train_set, eval_set or None), normalized for the method; DataError before any model loads.

    The held-out split is made by prompt (split_by_prompt's rule): every row of a held-out prompt is held
    out, so KTO's two rows of one pair, or two pairs sharing a prompt, never straddle the split."""
    dataset, fmt = load_and_normalize(run.spec.dataset, run.method)
    run.data_format = fmt
    run.log(fmt.summary())
    for warning in fmt.warnings:
        run.log(f"warning: {warning}")
    fraction = run.spec.dataset.eval_fraction
    if fraction <= 0:
        return rows_for_steps(run, dataset), None
    train, held_out = split_dataset_by_prompt(dataset, fraction, run.spec.seed, fmt.source)
    run.log(f"held out by prompt: {len(held_out)} of {len(dataset)} rows")
    return rows_for_steps(run, train), held_out


# Recipes whose trainer takes per_device_train_batch_size rows (or completions, at most as many) per
# micro-step from the train set. PPO sizes its rollouts from the data itself; generation and labelling
# stages use every row.
TRAINER_METHODS = ("sft", "dpo", "ipo", "orpo", "simpo", "rm", "kto", "grpo", "rloo")


def rows_needed(run: Run) -> int | None:
    """Train rows max_steps can reach: (max_steps + 1) x per-device batch x gradient accumulation x
    processes (WORLD_SIZE); None when the run is not bounded by max_steps or the recipe is not a trainer's.
    An upper bound: GRPO and RLOO count completions in the batch, num_generations per prompt."""
    steps = run.spec.max_steps
    if run.method not in TRAINER_METHODS or steps is None or steps <= 0:
        return None
    from runners.recipes import trl_compat

    config_cls, forced = trl_compat.config_for(run.method)
    defaults = {f.name: f.default for f in dataclasses.fields(config_cls)}
    settings = {**defaults, **method_defaults(run.method), **dict(run.spec.hparams), **forced}

    def count(key: str) -> int:
        try:
            return max(1, int(float(settings.get(key) or 1)))
        except (TypeError, ValueError):
            return 1  # build_config reports the bad value

    processes = max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))
    micro_steps = count("gradient_accumulation_steps")
    if run.method in ("grpo", "rloo"):  # one generation may cover several optimizer steps' completions
        micro_steps = max(micro_steps, count("steps_per_generation"))
    per_step = count("per_device_train_batch_size") * micro_steps * processes
    if run.method in ("grpo", "rloo") and settings.get("generation_batch_size"):
        per_step = max(per_step, count("generation_batch_size"))
    # One step more than max_steps uses: accelerate's data loader fetches a batch ahead to see where
    # the data ends, and the recipes' token counter (RunMonitor.count_tokens) counts batches as they
    # are collated, so data that ends exactly at the last step leaves that step without a rate.
    return (steps + 1) * per_step


def rows_for_steps(run: Run, train):
    """The train set cut to the rows max_steps can reach (rows_needed), so the trainer tokenizes only
    those: a seeded random choice (file order kept), as the trainer's shuffled sampler would draw from
    the whole set. The held-out set is left whole: every evaluation reads all of it."""
    needed = rows_needed(run)
    if needed is None or len(train) <= needed:
        return train
    import random

    keep = sorted(random.Random(run.spec.seed).sample(range(len(train)), needed))
    run.log(f"max_steps {run.spec.max_steps}: tokenizing {needed} of {len(train)} train rows (the rows "
            "max_steps + 1 steps of batch x gradient accumulation x processes reach)")
    run.monitor.epoch_scale = needed / len(train)  # the logged epoch stays a pass over the whole data set
    return train.select(keep)


# --- 3. config ----------------------------------------------------------------------------------


def build_config(
    run: Run,
    config_cls: type,
    defaults: dict[str, Any] | None = None,
    forced: dict[str, Any] | None = None,
    has_eval: bool = False,
):
    """The TRL config: the method's published defaults (runners.recipes.defaults) < recipe defaults <
    spec.hparams < the spec's own fields (and `forced`).

    Unknown hparams keys, and keys the spec sets itself, are SpecErrors naming the key.
    """
    hparams = dict(run.spec.hparams)
    check_hparams(hparams, config_cls, forced or {})
    spec = run.spec
    kwargs: dict[str, Any] = {
        "report_to": "none",
        "disable_tqdm": True,
        "save_strategy": "steps",
        "logging_strategy": "steps",
        **method_defaults(run.method),
        **(defaults or {}),
        **hparams,
        **(forced or {}),
        "output_dir": str(run.output_dir),
        "max_steps": spec.max_steps,
        "num_train_epochs": spec.num_train_epochs,
        "seed": spec.seed,
        "logging_steps": spec.logging_steps,
        "save_steps": spec.save_steps,
        # Under FSDP, accelerate.yaml gives the recomputation to FSDP itself (transformers refuses both).
        "gradient_checkpointing": spec.gradient_checkpointing and not fsdp_recomputes(),
        **precision_args(run.precision, run.cuda),
    }
    fields = {f.name for f in dataclasses.fields(config_cls)}
    if "trust_remote_code" in fields:
        kwargs["trust_remote_code"] = spec.trust_remote_code  # TRL loads the reference model with it
    if under_fsdp() and "model_init_kwargs" in fields:
        # TRL loads a reference or reward model with device_map="auto" unless the run is DDP or
        # DeepSpeed: under FSDP that spreads it over every GPU, and FSDP then moves its weights
        # to this process's GPU while the dispatch hooks still send inputs elsewhere.
        given = kwargs.get("model_init_kwargs") or {}
        if not isinstance(given, dict):
            raise SpecError(f"hparams.model_init_kwargs: expected a mapping of from_pretrained arguments, got {given!r}")
        kwargs["model_init_kwargs"] = {**given, "device_map": None}
    if has_eval:
        kwargs.setdefault("eval_strategy", "steps")
        kwargs.setdefault("eval_steps", spec.save_steps)
    try:
        config = config_cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise SpecError(f"hparams: {config_cls.__name__} rejected the settings: {exc}") from None
    warn_vanishing_updates(run, getattr(config, "learning_rate", None))
    return config


def warn_vanishing_updates(run: Run, learning_rate: float | None) -> str | None:
    """One line in the log and the run's notes when pure bf16 trains at a rate its rounding swallows."""
    if run.precision != "bf16" or learning_rate is None or learning_rate >= BF16_VANISHING_LR:
        return None
    line = (f"warning: precision bf16 at learning_rate {learning_rate:g}: below about {BF16_VANISHING_LR:g} most "
            "AdamW updates round away in bf16 weights (bench/results/precision.md); use precision bf16-kahan "
            "(the default: same memory + 2 bytes/param) or amp-bf16")
    run.notes.append(line)
    run.log(line)
    return line


def kahan_adamw(params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                weight_decay: float = 0.0):
    """torch-optimi's AdamW with torch's defaults; Kahan summation switches on for bf16 parameters
    (kahan_sum=None: a bf16 compensation buffer per bf16 weight; fp32 parameters, LoRA adapters say,
    are updated as by torch's AdamW)."""
    from optimi import AdamW

    return AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, kahan_sum=None)


def use_kahan_optimizer(run: Run, trainer) -> bool:
    """Under bf16-kahan, make the trainer build torch-optimi's Kahan AdamW in place of torch's AdamW.

    Left alone: another optimizer asked for in hparams (optim), one already given to the trainer,
    and DeepSpeed, whose bf16 mode keeps fp32 master weights itself."""
    if run.precision != "bf16-kahan" or _deepspeed():
        return False
    args = trainer.args
    optim = str(getattr(args.optim, "value", args.optim))
    if getattr(trainer, "optimizer", None) is not None or getattr(trainer, "optimizer_cls_and_kwargs", None):
        return False
    if optim not in _PLAIN_ADAMW:
        run.log(f"precision bf16-kahan: optim {optim!r} was asked for; it runs without Kahan compensation")
        return False
    from optimi import AdamW

    trainer.optimizer_cls_and_kwargs = (AdamW, {
        "lr": args.learning_rate, "betas": (args.adam_beta1, args.adam_beta2), "eps": args.adam_epsilon,
        "kahan_sum": None,
    })
    run.log("optimizer: torch-optimi AdamW with Kahan summation (bf16 weights + a bf16 compensation buffer)")
    return True


def _deepspeed() -> bool:
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def check_hparams(hparams: dict[str, Any], config_cls: type, forced: dict[str, Any]) -> None:
    refuse_remote_code_switches(hparams)
    names = {f.name for f in dataclasses.fields(config_cls)}
    for key, value in hparams.items():
        if key in SPEC_OWNED:
            raise SpecError(f"hparams.{key}: set it with the spec field {SPEC_OWNED[key]!r}, not in hparams")
        if key in forced and _as_list(forced[key]) != _as_list(value):
            raise SpecError(f"hparams.{key}: this recipe fixes {key}={forced[key]!r}")
        if key not in names:
            close = difflib.get_close_matches(key, sorted(names), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise SpecError(
                f"hparams.{key}: not a {config_cls.__name__} field{hint}; accepted include "
                f"{', '.join(_some_fields(config_cls))}, ..."
            )


def refuse_remote_code_switches(hparams: dict[str, Any]) -> None:
    """One switch decides whether code from a model folder runs: the spec's trust_remote_code, which
    every loader reads (policy, reference, reward, value, judge). A ``trust_remote_code`` anywhere in
    hparams (model_init_kwargs, ref_model_init_kwargs, a JSON string of them, a list) would win over
    it where TRL loads a model, so it is a SpecError naming the field."""
    import json

    def walk(value: Any, where: str, depth: int) -> None:
        if depth > 20:
            return
        if isinstance(value, str) and value.lstrip().startswith(("{", "[")):
            try:
                value = json.loads(value)  # TRL reads *_init_kwargs given as a JSON string
            except ValueError:
                return
        if isinstance(value, dict):
            for key, item in value.items():
                if str(key).strip().lower() == "trust_remote_code":
                    raise SpecError(f"{where}.{key}: remote code is decided by the spec field trust_remote_code alone "
                                    "(spec.yaml, the Launch page), for every model the run loads; remove it here")
                walk(item, f"{where}.{key}", depth + 1)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]", depth + 1)

    for key, value in hparams.items():
        if str(key).strip().lower() == "trust_remote_code":
            raise SpecError(f"hparams.{key}: set it with the spec field 'trust_remote_code' (spec.yaml, "
                            "the Launch page), not in hparams")
        walk(value, f"hparams.{key}", 0)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _some_fields(config_cls: type) -> list[str]:
    """Commonly tuned fields of this config first, then the common training ones, then its other own fields."""
    from transformers import TrainingArguments

    names = [f.name for f in dataclasses.fields(config_cls)]
    base = {f.name for f in dataclasses.fields(TrainingArguments)}
    tuned = [n for n in TUNED_HPARAMS if n in names]
    own = [n for n in names if n not in base and n not in tuned and n not in ("model_init_kwargs", "trust_remote_code")]
    return (tuned + list(COMMON_HPARAMS) + own)[:24]


def under_fsdp() -> bool:
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def fsdp_recomputes() -> bool:
    """True when accelerate launched this process with FSDP's own activation checkpointing."""
    return under_fsdp() and os.environ.get("FSDP_ACTIVATION_CHECKPOINTING", "false").lower() == "true"


def precision_args(precision: str, cuda: bool, deepspeed: bool | None = None) -> dict[str, Any]:
    """bf16/bf16-kahan: weights already bf16, no autocast; amp-bf16: fp32 weights + bf16 autocast;
    fp32: neither.

    Under DeepSpeed (accelerate sets ACCELERATE_USE_DEEPSPEED) a bf16 or bf16-kahan run is DeepSpeed's bf16 mode
    (fp32 master weights and moments, what the planner models): accelerate.yaml turns it on, and
    transformers refuses a TrainingArguments.bf16 that disagrees with the DeepSpeed config."""
    if deepspeed is None:
        deepspeed = _deepspeed()
    args: dict[str, Any] = {"bf16": precision == "amp-bf16" or (deepspeed and precision in BF16_WEIGHTS), "fp16": False}
    if not cuda:
        args["use_cpu"] = True
    return args


# --- 4. tokenizer and model ---------------------------------------------------------------------


def load_tokenizer(run: Run):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run.spec.model, trust_remote_code=run.spec.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if run.data_format and _conversational(run.data_format.name) and not tokenizer.chat_template:
        raise SpecError(
            f"model: {run.spec.model}'s tokenizer has no chat template, but the data is conversational "
            f"({run.data_format.name}); use a chat model or plain-text prompt/chosen/rejected data"
        )
    return tokenizer


def _conversational(format_name: str) -> bool:
    return format_name in ("preference-conversational", "preference-messages", "sft-messages")


def model_dtype(precision: str):
    import torch

    return torch.bfloat16 if precision in BF16_WEIGHTS else torch.float32


def load_model(run: Run, head: str = "causal-lm", tokenizer=None):
    """The policy (or, with head="score", a one-logit sequence classifier for reward modelling)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from runners.recipes.callbacks import write_phase

    write_phase(run.run_dir, "loading the model", model=run.spec.model)
    kwargs: dict[str, Any] = {"dtype": model_dtype(run.precision), "trust_remote_code": run.spec.trust_remote_code}
    quant = quantization_config(run)
    if quant is not None:
        from accelerate import PartialState

        kwargs["quantization_config"] = quant
        kwargs["device_map"] = {"": PartialState().local_process_index}
    if head == "score":
        model = AutoModelForSequenceClassification.from_pretrained(run.spec.model, num_labels=1, **kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(run.spec.model, **kwargs)
    if tokenizer is not None and model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=run.spec.gradient_checkpointing)
    n_params = sum(p.numel() for p in model.parameters())
    run.log(f"model {run.spec.model}: {n_params:,} parameters, dtype {model.dtype}")
    fmt = getattr(run, "data_format", None)  # next, the trainer tokenises the data (load_data counted it)
    write_phase(run.run_dir, "tokenising", rows=getattr(fmt, "rows", None))
    return model


def quantization_config(run: Run):
    """BitsAndBytesConfig for QLoRA (nf4) or 8-bit LoRA; needs a CUDA GPU and bitsandbytes."""
    if run.spec.lora is None or run.spec.lora.quant is None:
        return None
    check_quantization(run)
    import torch
    from transformers import BitsAndBytesConfig

    if run.spec.lora.quant == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute
    )


def check_quantization(run: Run) -> None:
    """Checked at start, before the data, so a QLoRA spec on a CPU machine fails at once."""
    if run.spec.lora is None or run.spec.lora.quant is None:
        return
    if not run.cuda:
        raise SpecError(
            f"lora.quant: {run.spec.lora.quant!r} quantization (QLoRA) needs a CUDA GPU; none is in use here "
            "(devices: cpu or no GPU). Drop lora.quant to train LoRA on the unquantized model"
        )
    try:
        importlib.import_module("bitsandbytes")
    except ImportError:
        raise SpecError("lora.quant: needs the bitsandbytes package (pip install 'alignplan[qlora]')") from None


def peft_config(run: Run, task_type: str = "CAUSAL_LM"):
    """A peft LoraConfig from spec.lora, or None to train all weights."""
    if run.spec.lora is None:
        return None
    from peft import LoraConfig

    lora = run.spec.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type=task_type,
    )


def describe_reference(run: Run, config) -> str:
    """Which reference the trainer will use; logged so the run's memory use can be explained."""
    if run.spec.lora is not None:
        where = "the base model with the LoRA adapter switched off (no copy in memory)"
    elif getattr(config, "precompute_ref_log_probs", False):
        where = "log-probs precomputed once before training (no copy in memory while training)"
    else:
        where = f"a frozen copy of {run.spec.model} (set hparams precompute_ref_log_probs: true to drop it)"
    run.log(f"reference: {where}")
    return where


def reward_functions(run: Run) -> list[Any]:
    """GRPO/RLOO reward: a reward model path (TRL loads it) or a function (runners.rewards: a built-in,
    a module's function or a file's, parameters bound)."""
    from runners.rewards.load import RewardError, reward_callable

    reward = run.spec.reward
    if reward is None:
        raise SpecError(f"reward: {run.method} needs a reward model or a reward function")
    if reward.model:
        return [reward.model]
    try:
        return [reward_callable(reward)]
    except RewardError as exc:  # one line, exit 2, like every spec problem
        raise SpecError(str(exc)) from None


def import_function(dotted: str) -> Callable[..., Any]:
    """The function 'package.module:function', 'package.module.function', 'path/file.py:function' or
    'builtin:<name>' names, as written (runners.rewards.load; a SpecError naming reward.function)."""
    from runners.rewards.load import RewardError, import_reward_function

    try:
        return import_reward_function(dotted)
    except RewardError as exc:
        raise SpecError(str(exc)) from None


def count_pair_tokens(run: Run, trainer) -> None:
    """ORPO/CPO log no token count: count the chosen + rejected tokens of each batch for tokens_per_second."""
    trainer.data_collator = run.monitor.count_tokens(
        trainer.data_collator, ("chosen_attention_mask", "rejected_attention_mask"), trainer.args.world_size
    )


# --- 5. train, save, result ---------------------------------------------------------------------


def last_checkpoint(output_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    if not output_dir.is_dir():
        return None
    return get_last_checkpoint(str(output_dir))


def finish(run: Run, trainer) -> int:
    """Train (from the newest checkpoint with --resume), save the final model, write result.json."""
    checkpoint = last_checkpoint(run.output_dir) if run.resume else None
    if run.resume and checkpoint is None:
        run.log(f"--resume: no checkpoint in {run.output_dir}; starting from step 0")
    elif checkpoint:
        run.log(f"resuming from {checkpoint}")
    use_kahan_optimizer(run, trainer)
    trainer.train(resume_from_checkpoint=checkpoint)
    if run.monitor.stopped:
        saved = last_checkpoint(run.output_dir)
        run.log(f"STOP file seen: checkpoint {saved}; exiting")
        if trainer.is_world_process_zero():
            write_result(run.run_dir, "stopped", run.monitor, checkpoint=saved, **_result_extras(run))
        return 0
    final_dir = run.output_dir / "final"
    if getattr(trainer, "is_fsdp_enabled", False):
        # Checkpoints stay sharded (one file per process, fast to resume from); the final model is
        # gathered whole so that from_pretrained can load it.
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(final_dir))
    if run.spec.lora is not None and run.spec.merge_lora and trainer.is_world_process_zero():
        save_merged(run, trainer, final_dir)
    if trainer.is_world_process_zero():
        write_result(run.run_dir, "succeeded", run.monitor, final_model=str(final_dir), **_result_extras(run))
    held = run.monitor.parameters_held
    if held and held["sharded"]:
        run.log(f"sharded: this process held {held['this_process']:,} of {held['total']:,} parameters")
    run.log(f"done: final model in {final_dir}")
    return 0


def save_merged(run: Run, trainer, final_dir: Path) -> None:
    """final/ becomes the whole model with the LoRA adapter merged in (what a later pipeline stage
    loads); the adapter alone moves to final-adapter/."""
    import shutil

    adapter_dir = run.output_dir / "final-adapter"
    shutil.rmtree(adapter_dir, ignore_errors=True)
    final_dir.rename(adapter_dir)
    write_merged(trainer.accelerator.unwrap_model(trainer.model), trainer.processing_class, final_dir)
    run.log(f"LoRA adapter merged into the base model: {final_dir} (adapter alone: {adapter_dir})")


def write_merged(peft_model, tokenizer, out_dir: Path):
    """Merge a peft model's LoRA weights into its base weights and save the whole model (and the
    tokenizer, when given) to out_dir; returns the merged model. Used at the end of a run (save_merged)
    and by `alignplan runs export --merged` (runners/exports/merged.py)."""
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(str(out_dir))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out_dir))
    return merged


def _result_extras(run: Run) -> dict[str, Any]:
    return {
        "method": run.method,
        "precision": run.precision,
        "device": "cuda" if run.cuda else "cpu",
        "data_format": run.data_format.name if run.data_format else None,
    }


def run_main(train: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a recipe; a spec or data problem prints one line and exits 2, anything else exits 1."""
    try:
        return train(argv)
    except (SpecError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        _write_failure(argv, str(exc))
        return 2
    except Exception as exc:
        traceback.print_exc()
        _write_failure(argv, f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        _close_process_group()


def _close_process_group() -> None:
    """Tear the process group down before the interpreter exits: gloo's worker threads otherwise die
    with the process ("terminate called without an active exception", SIGABRT) now and then."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # cleanup must never turn a finished run into a failed one
        pass


def _write_failure(argv: list[str] | None, message: str) -> None:
    if not _is_main_process():
        return
    try:
        spec_path = Path(parse_args("recipe", argv).spec)
    except SystemExit:
        return
    if spec_path.parent.is_dir():
        write_result(spec_path.parent, "failed", error=message)
