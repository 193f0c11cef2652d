"""The planner's inference stage profiles (generate, rlaif-label, cai-generate) against the code the
recipes run, traced on CPU (bench/stage_trace.py at test size): each phase within 10%."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

_PATH = Path(__file__).resolve().parents[2] / "bench" / "stage_trace.py"
_spec = importlib.util.spec_from_file_location("stage_trace", _PATH)
stage_trace = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stage_trace)


@pytest.fixture(autouse=True)
def _two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.parametrize("stage", stage_trace.STAGES)
def test_each_stage_phase_within_ten_percent(stage):
    row = stage_trace.compare("tiny-llama", stage, stage_trace.TINY_SHAPE)
    assert row["phases"], row
    for p in row["phases"]:
        assert 0.9 <= p["ratio"] <= 1.1, (stage, p["phase"], p["traced_bytes"], p["planned_bytes"], p["planned"])
        assert p["traced"]["grad"] == 0  # inference only


def test_rlaif_label_is_one_forward_with_its_kv_cache_and_logits():
    """The judge's phase is a no-grad forward over both orders of each pair: logits at every position
    (no log-softmax) beside the KV cache of its own use_cache, no generation."""
    import planner
    from planner import terms

    spec = planner.load_model("Qwen/Qwen2.5-0.5B")
    plan = planner.estimate(planner.PlanRequest(spec, method="rlaif-label", seq_len=1000, completion_len=300,
                                                batch_size=4, precision="bf16"), with_min_gpus=False)
    (phase,) = plan.phases
    assert phase["name"] == "scoring"
    tokens = 4 * 2 * (1000 + 300)  # pairs x both orders x (prompt + both responses)
    assert phase["components"]["logits"] == tokens * spec.vocab_size * 2
    assert phase["components"]["kv_cache"] == terms.kv_cache_bytes(spec, tokens, 1, 2)


def test_rlaif_label_request_is_the_label_config():
    """runners/rundir/decide.py plan_request for rlaif-label: LabelConfig's batch_size (pairs) and its
    max_length, the cap of the judge's input, as the planner's context (seq_len + completion_len)."""
    from types import SimpleNamespace

    from runners.rundir.decide import plan_request

    spec = SimpleNamespace(method="rlaif-label", model="gpt2", hparams={"batch_size": 4, "max_length": 1500},
                           lora=None, gradient_checkpointing=False, reward=None)
    req = plan_request(spec, precision="bf16", zero=0, gpus=1, gpu=None)
    assert req["batch_size"] == 4 and req["seq_len"] + req["completion_len"] == 1500
    default = plan_request(SimpleNamespace(**{**vars(spec), "hparams": {}}), precision="bf16", zero=0, gpus=1, gpu=None)
    assert default["batch_size"] == 8 and default["seq_len"] + default["completion_len"] == 2048
