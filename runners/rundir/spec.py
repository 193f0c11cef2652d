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
RECIPE_METHODS = ("sft", "rm", "dpo", "ipo", "kto", "orpo", "simpo", "grpo", "rloo", "ppo", "rlaif-label",
                  "generate", "cai-generate")
# Methods that score their own samples and so need spec.reward (a reward model or a reward function).
REWARD_METHODS = ("grpo", "rloo", "ppo")
# Methods that need spec.judge (the labelling stage of the RLAIF and CAI pipelines).
JUDGE_METHODS = ("rlaif-label",)

Precision = Literal["bf16-kahan", "bf16", "amp-bf16", "fp32"]


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
    """Where PPO/GRPO/RLOO get their reward: a reward model, or a function (docs/runners.md, Rewards)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="Reward model (hub id or local path) with a scalar head.")
    function: str | None = Field(
        None,
        description="A built-in by name ('builtin:exact_match', 'builtin:regex', 'builtin:length', "
        "'builtin:marker'), a module on the Python path ('package.module:function'), or a Python file "
        "('path/to/my_rewards.py:score', copied into the run directory). Called as "
        "f(prompts=..., completions=..., **columns) and returns one number per completion.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments for the function: a built-in's parameters (exact_match: column, "
        "extract; regex: pattern, full, ignore_case; length: target_words), or your function's own.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> RewardSpec:
        if bool(self.model) == bool(self.function):
            raise ValueError("reward: give exactly one of 'model' or 'function'")
        if self.params and not self.function:
            raise ValueError("reward.params: parameters are for reward.function, not a reward model")
        if self.function and self.function.strip().startswith("builtin:"):
            from runners.rewards.builtin import check_params

            self.function = self.function.strip()
            self.params = check_params(self.function, self.params)  # ValueError naming reward.params.<name>
        return self


# An environment variable's name (what api_key_env holds), and what an API key itself tends to look like.
_ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,63}"
_KEY_PREFIXES = ("sk-", "sk_", "hf_", "gsk_", "xai-", "pk_", "rk_", "ghp_", "github_pat_", "aiza", "key-")


def _looks_like_a_key(value: str) -> bool:
    """True for a string that is probably an API key rather than an environment variable's name."""
    import re

    if value.lower().startswith(_KEY_PREFIXES) or not re.fullmatch(_ENV_NAME, value):
        return True
    # Names are words (OPENAI_API_KEY, my_judge_key); keys are long runs of mixed case and digits.
    longest_word = max((len(part) for part in value.split("_")), default=0)
    mixed = any(c.islower() for c in value) and any(c.isupper() for c in value) and any(c.isdigit() for c in value)
    return longest_word >= 24 or (mixed and len(value) >= 20)


JudgeKind = Literal["local", "endpoint", "reward-model", "function"]


class JudgeSpec(BaseModel):
    """Who compares two responses in the rlaif-label stage (docs/judges.md)."""

    model_config = ConfigDict(extra="forbid")

    kind: JudgeKind = Field(
        description="'local': a causal LM on this machine, read from the next-token probabilities of the two "
        "answer labels; 'endpoint': an OpenAI-compatible chat API; 'reward-model': a sequence classifier with "
        "one output, the higher score wins; 'function': a Python function (prompt, first, second) -> "
        "'first' | 'second' | None.",
    )
    model: str | None = Field(
        None, description="local / reward-model: hub id or local directory; local defaults to the run's model."
    )
    base_url: str | None = Field(
        None, description="endpoint: the API's base URL, e.g. https://api.openai.com/v1 or http://localhost:8000/v1."
    )
    endpoint_model: str | None = Field(None, description="endpoint: the model name the API serves.")
    api_key_env: str | None = Field(
        None,
        description="endpoint: the NAME of the environment variable that holds the API key (e.g. OPENAI_API_KEY); "
        "the key itself is never written to the spec or the run directory. None: no key (a local server).",
    )
    max_concurrency: int = Field(4, ge=1, le=256, description="endpoint: requests in flight at once.")
    timeout_s: float = Field(60.0, gt=0, le=3600, description="endpoint: seconds to wait for one answer.")
    max_retries: int = Field(
        4, ge=0, le=20, description="endpoint: retries of a request after a 429, a 5xx, a timeout or a lost "
        "connection, with exponential backoff."
    )
    retry_backoff_s: float = Field(
        1.0, ge=0, le=600, description="endpoint: the first retry waits this long, each next one twice as "
        "long (a Retry-After header, when sent, is honoured up to 60 s)."
    )
    temperature: float = Field(0.0, ge=0, le=2, description="endpoint: sampling temperature of the judge's answer.")
    max_tokens: int = Field(256, ge=1, le=32768, description="endpoint: the longest answer the judge may give.")
    prompt_file: str | None = Field(
        None,
        description="The judge's prompt, a text file with {prompt}, {first}, {second} (and {principle} with a "
        "constitution). None: runners/judges/prompts/pairwise.txt, or constitutional.txt with a constitution.",
    )
    min_margin: float = Field(
        0.0, ge=0, description="reward-model: a score difference below this is a tie (no winner)."
    )
    inconsistent: Literal["drop", "tie"] = Field(
        "drop",
        description="A pair whose two verdicts (both orders) disagree: 'drop' it, or record it as a tie. "
        "Ties are reported but never written as DPO pairs.",
    )
    price_per_million_input: float | None = Field(
        None, ge=0, description="endpoint: price of a million input tokens, for the cost in report.json."
    )
    price_per_million_output: float | None = Field(
        None, ge=0, description="endpoint: price of a million output tokens, for the cost in report.json."
    )
    function: str | None = Field(
        None,
        description="function: 'package.module:function' or 'path/to/file.py:function', called as "
        "f(prompt, first, second) and returning 'first', 'second' or None; runners.judges.rules has two.",
    )
    cache_dir: str | None = Field(
        None,
        description="endpoint: where answers are cached by a hash of the request (model, messages, sampling "
        "settings); default <run dir>/judge_cache. Share one between runs to pay for nothing twice.",
    )

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip().removeprefix("$")
        if _looks_like_a_key(v):  # the value is never echoed: it may be the secret itself
            raise ValueError(
                "expected the NAME of an environment variable (letters, digits, _; e.g. OPENAI_API_KEY), "
                "and this looks like a key itself; put the key in an environment variable and name it here"
            )
        return v

    @field_validator("base_url")
    @classmethod
    def _plain_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from urllib.parse import urlsplit

        parts = urlsplit(v.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("expected an http:// or https:// URL, e.g. https://api.openai.com/v1")
        if "@" in parts.netloc or parts.query:
            raise ValueError("credentials do not go in the URL; name an environment variable in api_key_env")
        return v.strip()

    @model_validator(mode="after")
    def _fields_for_kind(self) -> JudgeSpec:
        needs = {"endpoint": ("base_url", "endpoint_model"), "reward-model": ("model",), "function": ("function",)}
        for name in needs.get(self.kind, ()):
            if not getattr(self, name):
                raise ValueError(f"judge.{name}: a judge of kind {self.kind!r} needs it")
        only = {"base_url": "endpoint", "endpoint_model": "endpoint", "api_key_env": "endpoint",
                "function": "function", "cache_dir": "endpoint"}
        for name, kind in only.items():
            if getattr(self, name) and self.kind != kind:
                raise ValueError(f"judge.{name}: only a judge of kind {kind!r} uses it (this one is {self.kind!r})")
        if self.model and self.kind not in ("local", "reward-model"):
            raise ValueError(f"judge.model: only local and reward-model judges load a model (this one is {self.kind!r})")
        if self.min_margin and self.kind != "reward-model":
            raise ValueError("judge.min_margin: only a reward-model judge has a score margin")
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
    judge: JudgeSpec | None = Field(
        None, description="rlaif-label: the judge that compares two responses (docs/judges.md)."
    )
    precision: Precision | None = Field(
        None,
        description="bf16-kahan: bf16 weights, grads and AdamW states + a bf16 Kahan compensation buffer "
        "(torch-optimi; 10 B/param), keeps small updates; bf16: pure bf16 with torch's AdamW (8 B/param), "
        "loses most updates below lr ~1e-4; amp-bf16: fp32 weights with bf16 autocast (16 B/param); fp32. "
        "None: bf16-kahan on a GPU with bf16, fp32 on CPU.",
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
    constitution: str | None = Field(
        None,
        description="cai-generate: the constitution file (YAML: name, principles with name, critique and "
        "revision; docs/cai.md) its critique and revision requests come from. None: the bundled "
        "harmlessness constitution (runners/data/constitutions/harmless.yaml).",
    )

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        if v not in RECIPE_METHODS:
            raise ValueError(f"unknown method {v!r}; accepted: {', '.join(RECIPE_METHODS)}")
        return v

    @model_validator(mode="after")
    def _reward_for_online(self) -> RunSpec:
        if self.method in REWARD_METHODS and self.reward is None:
            raise ValueError(f"reward: {', '.join(REWARD_METHODS[:-1])} and {REWARD_METHODS[-1]} need a reward "
                             "model or a reward function")
        if self.method in JUDGE_METHODS and self.judge is None:
            raise ValueError(f"judge: {self.method} needs a judge (kind: local, endpoint, reward-model or function)")
        if self.judge is not None and self.method not in JUDGE_METHODS:
            raise ValueError(f"judge: only the rlaif-label stage uses a judge, not {self.method!r}")
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
        return cls.parse(read_spec_file(path, "spec", "RunSpec"))

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False), encoding="utf-8")


def read_spec_file(path: str | Path, kind: str, fields_of: str) -> dict[str, Any]:
    """A spec YAML file's mapping (a regular file, size and nesting bounded); SpecError naming the file."""
    from planner.input_files import InputFileError, load_yaml_file

    path = Path(path)
    try:
        data = load_yaml_file(path, "spec")
    except InputFileError as exc:
        raise SpecError(str(exc).replace(": file not found", f": {kind} file not found")) from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping of {fields_of} fields")
    return data


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "spec"
        msg = err["msg"].removeprefix("Value error, ")
        # A message that already names a field under this one (reward.params.pattern: ...) stands alone.
        lines.append(msg if msg.startswith(f"{field}.") else f"{field}: {msg}")
    return "; ".join(lines)
