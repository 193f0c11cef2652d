"""make_judge: the Judge a JudgeSpec describes (runners.rundir.spec.JudgeSpec, read by attribute so this
room imports nothing else of runners)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runners.judges.base import Judge, JudgeError, read_prompt_template

DEFAULT_CACHE_DIR = "judge_cache"


def make_judge(judge_spec: Any, *, run_dir: str | Path, default_model: str | None = None, device: str = "cpu",
               dtype=None, trust_remote_code: bool = False, constitutional: bool = False, batch_size: int = 8,
               max_length: int = 2048) -> Judge:
    kind = judge_spec.kind
    if kind == "function":
        from runners.judges.function import FunctionJudge

        return FunctionJudge(judge_spec.function)
    if kind == "reward-model":
        from runners.judges.reward_model import RewardModelJudge

        return RewardModelJudge.load(judge_spec.model, device=device, dtype=dtype, trust_remote_code=trust_remote_code,
                                     min_margin=judge_spec.min_margin, batch_size=batch_size, max_length=max_length)
    template = read_prompt_template(judge_spec.prompt_file, constitutional)
    if kind == "local":
        from runners.judges.local import LocalLMJudge

        model = judge_spec.model or default_model
        if not model:
            raise JudgeError("judge.model: a local judge needs a model (default: the run's model)")
        return LocalLMJudge.load(model, template, device=device, dtype=dtype, trust_remote_code=trust_remote_code,
                                 batch_size=batch_size, max_length=max_length)
    if kind == "endpoint":
        from runners.judges.endpoint import EndpointJudge

        cache = Path(judge_spec.cache_dir).expanduser() if judge_spec.cache_dir else Path(run_dir) / DEFAULT_CACHE_DIR
        return EndpointJudge(
            judge_spec.base_url, judge_spec.endpoint_model, template, cache, api_key_env=judge_spec.api_key_env,
            max_concurrency=judge_spec.max_concurrency, timeout_s=judge_spec.timeout_s,
            max_retries=judge_spec.max_retries, retry_backoff_s=judge_spec.retry_backoff_s,
            temperature=judge_spec.temperature, max_tokens=judge_spec.max_tokens,
        )
    raise JudgeError(f"judge.kind: unknown kind {kind!r}; accepted: local, endpoint, reward-model, function")
