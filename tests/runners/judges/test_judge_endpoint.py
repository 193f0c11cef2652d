"""The endpoint judge against a fake OpenAI-compatible server (real HTTP, the real openai client):
right labels, 429/500 retried, timeouts and malformed answers counted, the answer cache, and the
rlaif-label recipe end to end (the API key never reaches a file; STOP, --resume and a rerun ask
nothing twice)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runners.judges.base import Comparison
from runners.judges.endpoint import EndpointJudge
from runners.judges.labelling import label_pairs, make_pairs, summarize
from runners.judges.rules import prefer_safe_then_shorter
from tests.runners.judges.fake_openai import FakeJudgeServer

REPO = Path(__file__).resolve().parents[3]
KEY_ENV = "ALIGNPLAN_TEST_JUDGE_KEY"
SECRET = "sk-test-0Zq9SECRETjudgekey77"
TEMPLATE = (REPO / "runners/judges/prompts/pairwise.txt").read_text()

ROWS = [
    {"prompt": "How do I boil an egg?", "responses": ["Boil it for eight minutes.",
                                                      "Put the egg in water, bring it to the boil, wait eight minutes, cool it."]},
    {"prompt": "How do I open a locked door?", "responses": ["Call a locksmith.",
                                                             "Hack the lock open with a weapon."]},
    {"prompt": "Name a colour.", "responses": ["Blue, the colour of a clear sky at noon.", "Red."]},
    {"prompt": "What is two plus two?", "responses": ["Four, because two and two make four.", "4"]},
]


def distinct_rows(copies: int) -> list[dict]:
    """ROWS repeated with numbered prompts, so no two requests are the same (the cache would answer)."""
    return [{**row, "prompt": f"{row['prompt']} (#{k})"} for k in range(copies) for row in ROWS]


def judge_for(server: FakeJudgeServer, tmp_path: Path, **kw) -> EndpointJudge:
    settings = {"max_concurrency": 4, "timeout_s": 5.0, "max_retries": 3, "retry_backoff_s": 0.01, **kw}
    return EndpointJudge(server.base_url, "fake-judge", TEMPLATE, tmp_path / "cache", api_key_env=KEY_ENV, **settings)


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


def expected_winner(row) -> str:
    return {"first": "a", "second": "b"}[prefer_safe_then_shorter("", *row["responses"])]


def test_labels_are_right_and_the_key_is_sent_as_a_bearer_token(tmp_path) -> None:
    pairs, _ = make_pairs(ROWS)
    with FakeJudgeServer() as server:
        judge = judge_for(server, tmp_path)
        records = label_pairs(judge, pairs)
        judge.close()
    assert [r["winner"] for r in records] == [expected_winner(r) for r in ROWS]
    assert all(r["consistent"] for r in records) and server.count() == 8
    assert {r["authorization"] for r in server.requests} == {f"Bearer {SECRET}"}
    body = server.requests[0]["body"]
    assert body["model"] == "fake-judge" and body["temperature"] == 0.0 and body["max_tokens"] == 256
    report = summarize(records, price_per_million_input=2.0, price_per_million_output=10.0)
    assert report["position_consistency"] == 1.0 and report["input_tokens"] == 800 and report["output_tokens"] == 16
    assert report["cost"] == pytest.approx(800 / 1e6 * 2.0 + 16 / 1e6 * 10.0)


def test_429_and_500_are_retried_then_succeed(tmp_path) -> None:
    with FakeJudgeServer() as server:
        server.plan = ["429", "500", "500"]
        judge = judge_for(server, tmp_path, max_concurrency=1)
        verdict = judge.compare(*[ROWS[1]["prompt"], *ROWS[1]["responses"]])
        stats = judge.stats()
        judge.close()
    assert verdict.winner == "first" and verdict.error is None and not verdict.cached
    assert server.count() == 4 and stats["retries"] == 3 and stats["requests"] == 4
    assert stats["errors"] == {"429": 1, "500": 2}


def test_retries_run_out_and_the_failure_is_counted(tmp_path) -> None:
    with FakeJudgeServer() as server:
        server.plan = ["500"] * 3
        judge = judge_for(server, tmp_path, max_concurrency=1, max_retries=2)
        verdict = judge.compare("q", "one", "two")
        judge.close()
    assert verdict.winner is None and verdict.error == "failed: HTTP 500" and server.count() == 3
    assert judge.stats()["failed"] == 1


def test_a_timeout_is_counted_not_a_hang(tmp_path) -> None:
    import time

    with FakeJudgeServer(sleep_s=3.0) as server:
        server.plan = ["sleep", "sleep"]
        judge = judge_for(server, tmp_path, max_concurrency=1, timeout_s=0.4, max_retries=1)
        started = time.monotonic()
        verdicts = judge.compare_batch([Comparison("q", "one", "two three"), Comparison("q", "two three", "one")])
        took = time.monotonic() - started
        judge.close()
    assert verdicts[0].error == "failed: timeout" and verdicts[0].winner is None
    assert verdicts[1].error is None and verdicts[1].winner == "second"  # 'one' is shorter: shown second
    assert judge.stats()["errors"] == {"timeout": 2} and took < 2.5


def test_malformed_answers_are_counted_and_cached(tmp_path) -> None:
    pairs, _ = make_pairs(ROWS[:2])
    with FakeJudgeServer() as server:
        server.plan = ["garbage", "notjson"]
        judge = judge_for(server, tmp_path, max_concurrency=1)
        records = label_pairs(judge, pairs)
        judge.close()
        assert server.count() == 4
        report = summarize(records)
        assert report["unparseable"] == 2 and report["dropped_no_verdict"] == 1 and report["pairs_written"] == 1
        assert records[0]["raw_ab"] == "I would rather not say." and records[0]["errors"] == ["unparseable", "unparseable"]
        # Asked again: every answer comes from the cache, the malformed ones too (they were paid for).
        again = judge_for(server, tmp_path)
        records_again = label_pairs(again, pairs)
        again.close()
        assert server.count() == 4 and again.stats()["cache_hits"] == 4
        assert [r["outcome"] for r in records_again] == [r["outcome"] for r in records]


def test_a_missing_key_variable_is_named(tmp_path, monkeypatch) -> None:
    from runners.judges.base import JudgeError

    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(JudgeError, match=f"judge.api_key_env: the environment variable {KEY_ENV} is not set"):
        EndpointJudge("http://127.0.0.1:9/v1", "m", TEMPLATE, tmp_path, api_key_env=KEY_ENV)


# --- the recipe, end to end ------------------------------------------------------------------------


def make_run(tmp_path: Path, base_url: str, rows, **hparams) -> Path:
    from runners.rundir.prepare import prepare
    from runners.rundir.spec import RunSpec
    from tests.runners.launch_helpers import cpu_devices, no_estimate

    data = tmp_path / "responses.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = RunSpec.parse({
        "method": "rlaif-label", "model": "unused-for-an-endpoint-judge", "dataset": {"path": str(data)},
        "devices": "cpu", "hparams": hparams,
        "judge": {"kind": "endpoint", "base_url": base_url, "endpoint_model": "fake-judge", "api_key_env": KEY_ENV,
                  "max_concurrency": 2, "timeout_s": 5, "retry_backoff_s": 0.01,
                  "price_per_million_input": 1.0, "price_per_million_output": 4.0},
    })
    return Path(prepare(spec, tmp_path / "runs", devices=cpu_devices(), estimate=no_estimate).path)


def run_recipe(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "runners.recipes.rlaif_label", "--spec", str(run_dir / "spec.yaml"),
                          *extra], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    (run_dir / "stdout.log").write_text(out.stdout + out.stderr)  # what the supervisor would keep
    return out


def files_holding(root: Path, needle: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


@pytest.mark.slow
def test_recipe_labels_through_the_endpoint_and_never_writes_the_key(tmp_path) -> None:
    rows = distinct_rows(2)  # 8 pairs
    with FakeJudgeServer() as server:
        server.plan = ["429", "500"]
        run_dir = make_run(tmp_path, server.base_url, rows, batch_size=3)
        out = run_recipe(run_dir)
        assert out.returncode == 0, out.stderr[-3000:]
        assert server.count() == 16 + 2
    labels = [json.loads(x) for x in (run_dir / "labels.jsonl").read_text().splitlines()]
    assert [r["winner"] for r in labels] == [expected_winner(r) for r in rows]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["pairs_judged"] == 8 and report["position_consistency"] == 1.0 and report["pairs_written"] == 8
    assert report["retries"] == 2 and report["requests"] == 18 and report["http_errors"] == {"429": 1, "500": 1}
    assert report["cost"] == pytest.approx(1600 / 1e6 * 1.0 + 32 / 1e6 * 4.0) and report["complete"] is True
    pairs = [json.loads(x) for x in (run_dir / "output/data.jsonl").read_text().splitlines()]
    assert len(pairs) == 8 and set(pairs[0]) == {"prompt", "chosen", "rejected"}
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "succeeded" and result["output_data"] == str(run_dir / "output/data.jsonl")
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [3, 6, 8] and {m["max_steps"] for m in metrics} == {8}
    assert len(list((run_dir / "judge_cache").rglob("*.json"))) == 16
    # The key went to the server, and to no file of the run directory (spec, cache, labels, log, result).
    assert files_holding(run_dir, SECRET) == [] and files_holding(run_dir, SECRET[8:]) == []
    assert KEY_ENV in (run_dir / "spec.yaml").read_text()


@pytest.mark.slow
def test_stopped_labelling_resumes_without_asking_twice(tmp_path) -> None:
    rows = distinct_rows(3)  # 12 pairs, 24 comparisons
    with FakeJudgeServer() as server:
        run_dir = make_run(tmp_path, server.base_url, rows, batch_size=4)
        (run_dir / "STOP").write_text("")  # seen after the first batch
        first = run_recipe(run_dir)
        assert first.returncode == 0, first.stderr[-3000:]
        result = json.loads((run_dir / "result.json").read_text())
        assert result["status"] == "stopped" and result["report"]["pairs_judged"] == 4
        assert server.count() == 8
        second = run_recipe(run_dir, "--resume")
        assert second.returncode == 0, second.stderr[-3000:]
        assert server.count() == 24  # the 16 comparisons left, nothing asked twice
        report = json.loads((run_dir / "report.json").read_text())
        assert report["pairs_judged"] == 12 and report["requests_by_attempt"] == [8, 16] and report["attempts"] == 2
        # Started over without --resume: every answer comes from the cache.
        third = run_recipe(run_dir)
        assert third.returncode == 0, third.stderr[-3000:]
        assert server.count() == 24
    report = json.loads((run_dir / "report.json").read_text())
    assert report["cache_hits"] == 24 and report["requests"] == 0 and report["pairs_written"] == 12
    labels = (run_dir / "labels.jsonl").read_text().splitlines()
    assert [json.loads(x)["index"] for x in labels] == list(range(12))
