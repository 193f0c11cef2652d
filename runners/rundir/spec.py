"""RunSpec: everything a run needs, validated, written to runs/<id>/spec.yaml and read by recipes.

Field help texts follow TRL's config style. Validation errors name the field and what is accepted.
Hyper-parameter defaults are TRL 1.16's defaults for the method, except where a comment says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# Methods with a recipe under runners/recipes/. Ids are the planner's method ids (planner.methods).
RECIPE_METHODS = ("sft", "rm", "dpo", "ipo", "kto", "orpo", "simpo", "grpo", "rloo", "ppo")

Precision = Literal["bf16", "amp-bf16", "fp32"]


class SpecError(ValueError):
    """A RunSpec that cannot be used; the message names the field and what is accepted."""


class DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="Local .jsonl/.json/.csv/.parquet file, or a hub dataset id.")
    split: str = Field("train", description="Split to train on (hub datasets) .")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Rename columns to the names the method expects, e.g. {'question': 'prompt'}.",
    )
    format: str | None = Field(None, description="Force a data format instead of detecting it.")
    eval_fraction: float = Field(0.0, ge=0.0, lt=0.5, description="Share of rows held out for evaluation.")


class LoraSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1, le=1024, description="LoRA rank; higher increases adapter memory and capacity.")
    alpha: int | None = Field(
        None, ge=1, description="LoRA scaling numerator (scale = alpha / r); unset means 2 * r (scale 2)."
    )
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: str | list[str] = Field(
        "all-linear", description="'all-linear' or a list of module names (q_proj, v_proj, ...)."
    )
    quant: Literal["nf4", "int8"] | None = Field(
        None, description="Load the frozen base in 4-bit NF4 (QLoRA) or 8-bit; needs bitsandbytes and a GPU."
    )


    @model_validator(mode="after")
    def _default_alpha(self) -> LoraSpec:
        # Resolved here so every consumer (the recipes' peft config, plan.json) sees an int.
        if self.alpha is None:
            self.alpha = 2 * self.r
        return self


class RewardSpec(BaseModel):
    """Where GRPO/RLOO get their reward: a reward model, or a Python function by dotted path."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="Reward model (hub id or local path) with a scalar head.")
    function: str | None = Field(
        None, description="Dotted path 'package.module:function' (or 'package.module.function')."
    )

    @model_validator(mode="after")
    def _one_source(self) -> RewardSpec:
        if bool(self.model) == bool(self.function):
            raise ValueError("reward: give exactly one of 'model' or 'function'")
        return self


class RunSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: str = Field(description=f"One of {', '.join(RECIPE_METHODS)}.")
    model: str = Field(description="Hub id or local model directory (config.json + weights + tokenizer).")
    dataset: DatasetSpec
    hparams: dict[str, Any] = Field(
        default_factory=dict,
        description="Method hyper-parameters: TRL config fields (learning_rate, beta, loss_type, "
        "per_device_train_batch_size, gradient_accumulation_steps, max_length, num_generations, ...).",
    )
    lora: LoraSpec | None = Field(None, description="Train LoRA adapters instead of all weights.")
    reward: RewardSpec | None = Field(None, description="Reward source for grpo/rloo/ppo.")
    precision: Precision | None = Field(
        None,
        description="bf16: load weights in bf16, AdamW states in bf16 (8 B/param); amp-bf16: fp32 "
        "weights with bf16 autocast (16 B/param); fp32. None: bf16 on a GPU with bf16, fp32 on CPU.",
    )
    gradient_checkpointing: bool = Field(True, description="Recompute activations in backward (TRL default).")
    max_steps: int = Field(-1, description="Optimizer steps; -1 to train num_train_epochs.")
    num_train_epochs: float = Field(1.0, gt=0, description="Epochs when max_steps is -1.")
    seed: int = Field(42, description="Random seed.")
    devices: Literal["auto", "cpu"] | list[int] = Field(
        "auto", description="'auto' (all visible GPUs, else CPU), 'cpu', or GPU indices."
    )
    num_processes: int | None = Field(None, ge=1, description="Processes to launch; None: one per device.")
    sharding: Literal["auto", "fsdp", "deepspeed"] = Field(
        "auto",
        description="What shards the model when a replica does not fit one GPU: 'fsdp' (PyTorch FSDP2, "
        "nothing more to install), 'deepspeed' (ZeRO, needs alignplan[deepspeed]); 'auto': DeepSpeed "
        "when it is installed, else FSDP2.",
    )
    zero_stage: Literal[0, 2, 3] | None = Field(
        None,
        description="Force the sharding stage: 0 copies the whole model to every process (DDP), 2 shards "
        "gradients and optimizer states, 3 shards the weights too (less memory, more communication). "
        "None: the smallest stage the planner says fits. 2 and 3 need 2 or more GPUs.",
    )
    save_steps: int = Field(50, ge=1, description="Checkpoint every N steps (also on STOP).")
    logging_steps: int = Field(1, ge=1, description="Write metrics every N steps.")
    trust_remote_code: bool = Field(False, description="Run model code from the hub; off unless you trust it.")
    output_dir: str | None = Field(None, description="Where checkpoints go; default runs/<id>/checkpoints.")
    merge_lora: bool = Field(
        False,
        description="With lora: save the final model with the adapter merged into its base (a whole model "
        "that a later stage or another tool loads alone; the adapter is kept beside it in final-adapter/).",
    )
    name: str | None = Field(None, description="A label for the run registry.")

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        if v not in RECIPE_METHODS:
            raise ValueError(f"unknown method {v!r}; accepted: {', '.join(RECIPE_METHODS)}")
        return v

    @model_validator(mode="after")
    def _reward_for_online(self) -> RunSpec:
        if self.method in ("grpo", "rloo", "ppo") and self.reward is None:
            raise ValueError("reward: grpo, rloo and ppo need a reward model or a reward function")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError("max_steps: a positive step count, or -1 to use num_train_epochs")
        return self

    # --- io -------------------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: dict[str, Any]) -> RunSpec:
        """Validate a dict; raise SpecError with 'field: problem' lines."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SpecError(_explain(exc)) from None

    @classmethod
    def load(cls, path: str | Path) -> RunSpec:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SpecError(f"spec file not found: {path}") from None
        except yaml.YAMLError as exc:
            raise SpecError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise SpecError(f"{path}: expected a mapping of RunSpec fields")
        return cls.parse(data)

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False), encoding="utf-8")


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "spec"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{field}: {msg}")
    return "; ".join(lines)
