"""Any OpenAI-compatible chat endpoint as the judge (OpenAI, vLLM, TGI, llama.cpp server, ...),
through the `openai` client.

- The API key is read from the environment variable whose NAME the spec gives (judge.api_key_env);
  it lives in the client object only, never in the spec, the cache, the labels, the logs or result.json.
- Up to `max_concurrency` requests are in flight at once (a thread pool).
- A 429, a 5xx, a timeout or a lost connection is retried up to `max_retries` times, waiting
  retry_backoff_s * 2**attempt (or the server's Retry-After, at most 60 s). 401/403/404 stop the run:
  every other request would fail the same way. A request still failing after its retries gives a
  verdict with error 'failed: ...' (counted, the pair dropped), never a hang: the client has a timeout.
- The verdict is parsed from the answer text (runners.judges.base.parse_verdict); an answer that
  cannot be parsed is counted as 'unparseable'.
- Every answer that came back (parseable or not: it was paid for) is cached on disk under a SHA-256 of
  the request (model, messages, temperature, max_tokens), one JSON file per answer, so a resumed or
  repeated labelling asks nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from runners.judges.base import Comparison, Judge, JudgeError, Verdict, parse_verdict, render_prompt

RETRY_AFTER_CAP_S = 60.0
FATAL_STATUSES = (401, 403, 404)


class EndpointFatalError(JudgeError):
    """The endpoint refuses every request (bad key, unknown model or URL): the run stops."""


class AnswerCache:
    """One JSON file per answer, <dir>/<key[:2]>/<key>.json, written atomically (safe across threads
    and processes). Holds the answer text and its token counts only."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @staticmethod
    def key(request: dict[str, Any]) -> str:
        blob = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._path(key).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)


class EndpointJudge(Judge):
    kind = "endpoint"

    def __init__(self, base_url: str, model: str, template: str, cache_dir: str | Path, *,
                 api_key_env: str | None = None, max_concurrency: int = 4, timeout_s: float = 60.0,
                 max_retries: int = 4, retry_backoff_s: float = 1.0, temperature: float = 0.0,
                 max_tokens: int = 256) -> None:
        from openai import OpenAI

        if api_key_env:
            key = os.environ.get(api_key_env, "")
            if not key.strip():
                raise JudgeError(f"judge.api_key_env: the environment variable {api_key_env} is not set (or empty)")
        else:
            key = "no-key"  # servers without authentication ignore it; the client wants something
        # max_retries=0: the retries are ours, so they are counted and backed off as documented.
        self.client = OpenAI(base_url=base_url, api_key=key, timeout=timeout_s, max_retries=0)
        del key
        self.base_url = base_url
        self.model = model
        self.template = template
        self.cache = AnswerCache(cache_dir)
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        self.temperature = temperature
        self.max_tokens = max_tokens
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="judge")
        self._lock = threading.Lock()
        self.counters: dict[str, Any] = {"requests": 0, "retries": 0, "cache_hits": 0, "failed": 0,
                                         "errors": {}}

    # --- counting --------------------------------------------------------------------------------

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def _count_error(self, what: str) -> None:
        with self._lock:
            self.counters["errors"][what] = self.counters["errors"].get(what, 0) + 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {**self.counters, "errors": dict(self.counters["errors"])}

    # --- asking ----------------------------------------------------------------------------------

    def request_for(self, comparison: Comparison) -> dict[str, Any]:
        """What is sent (besides the key), and what the cache key is a hash of."""
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": render_prompt(self.template, comparison)}],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    def compare_batch(self, comparisons: list[Comparison]) -> list[Verdict]:
        return list(self._pool.map(self._compare_one, comparisons))

    def _compare_one(self, comparison: Comparison) -> Verdict:
        request = self.request_for(comparison)
        key = self.cache.key(request)
        hit = self.cache.get(key)
        if hit is not None:
            self._count("cache_hits")
            return self._verdict(hit, cached=True)
        answer = self._ask(request)
        if isinstance(answer, str):  # failed after the retries
            self._count("failed")
            return Verdict(None, error=f"failed: {answer}")
        self.cache.put(key, answer)
        return self._verdict(answer, cached=False)

    def _verdict(self, answer: dict[str, Any], cached: bool) -> Verdict:
        text = answer.get("text")
        winner, parsed = parse_verdict(text)
        n_in, n_out = int(answer.get("input_tokens") or 0), int(answer.get("output_tokens") or 0)
        return Verdict(winner, p_first=None if not parsed or winner is None else float(winner == "first"),
                       raw=text, tokens=n_in + n_out, cached=cached, input_tokens=n_in, output_tokens=n_out,
                       error=None if parsed else "unparseable")

    def _ask(self, request: dict[str, Any]) -> dict[str, Any] | str:
        """The answer {text, input_tokens, output_tokens}, or why it failed (a short string)."""
        import openai

        reason = "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._count("retries")
            self._count("requests")
            wait = self.retry_backoff_s * (2 ** attempt)
            try:
                response = self.client.chat.completions.create(**request)
            except openai.APIStatusError as exc:
                status = exc.status_code
                self._count_error(str(status))
                if status in FATAL_STATUSES:
                    raise EndpointFatalError(
                        f"judge: the endpoint {self.base_url} answered {status} "
                        f"({'check judge.api_key_env' if status in (401, 403) else 'check judge.endpoint_model and judge.base_url'})"
                    ) from None
                reason = f"HTTP {status}"
                if status != 429 and status < 500:
                    return reason  # a bad request is not fixed by asking again
                wait = _retry_after(exc, wait)
            except (openai.APIResponseValidationError, ValueError):
                self._count_error("malformed")
                return {"text": None, "input_tokens": 0, "output_tokens": 0}  # 200, but no chat completion in it
            except openai.APITimeoutError:
                self._count_error("timeout")
                reason = "timeout"
            except openai.APIConnectionError as exc:
                self._count_error("connection")
                reason = f"connection error ({type(exc.__cause__).__name__ if exc.__cause__ else 'no answer'})"
            else:
                return _answer(response)
            if attempt < self.max_retries:
                time.sleep(wait * (1.0 + 0.1 * random.random()))
        return reason

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.client.close()


def _retry_after(exc, default: float) -> float:
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    try:
        return min(float(headers.get("retry-after")), RETRY_AFTER_CAP_S)
    except (TypeError, ValueError):
        return default


def _answer(response) -> dict[str, Any]:
    """Text and token counts of a chat completion; a malformed body gives text None (unparseable)."""
    text = None
    try:
        text = response.choices[0].message.content
    except (AttributeError, IndexError, TypeError):
        pass
    usage = getattr(response, "usage", None)
    return {
        "text": text if isinstance(text, str) else None,
        "input_tokens": getattr(usage, "prompt_tokens", 0) or 0,
        "output_tokens": getattr(usage, "completion_tokens", 0) or 0,
    }
