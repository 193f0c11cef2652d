"""The planner's parameter counts equal what transformers builds from the same config.json.

Every catalogue entry is built on the meta device (no memory, no weights) and its parameters are
summed; `parameters()` yields a tied embedding/LM head once, as the planner counts it.
"""

from __future__ import annotations

import copy
from functools import cache

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import planner  # noqa: E402
from planner import terms  # noqa: E402

PUBLISHED = {
    # Counts published on the models' hub pages / papers, rounded there; exact here.
    "meta-llama/Llama-3.1-8B": 8_030_261_248,
    "Qwen/Qwen2.5-0.5B": 494_032_768,
    "mistralai/Mixtral-8x7B-v0.1": 46_702_792_704,
}


@cache
def _hf_config(model_id: str):
    cfg = dict(planner.load_model(model_id).config)
    return transformers.AutoConfig.for_model(cfg.pop("model_type"), **cfg)


def _meta_param_count(model_id: str, auto_class=None, **overrides) -> int:
    config = copy.deepcopy(_hf_config(model_id))
    for key, value in overrides.items():
        setattr(config, key, value)
    auto_class = auto_class or transformers.AutoModelForCausalLM
    with torch.device("meta"):
        model = auto_class.from_config(config)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("model_id", planner.catalogue_ids())
def test_catalogue_param_count_matches_transformers(model_id):
    spec = planner.load_model(model_id)
    assert _meta_param_count(model_id) == spec.params_total


@pytest.mark.parametrize("model_id,expected", sorted(PUBLISHED.items()))
def test_published_param_counts(model_id, expected):
    assert planner.load_model(model_id).params_total == expected


@pytest.mark.parametrize("model_id", ["HuggingFaceTB/SmolLM2-135M", "meta-llama/Llama-3.1-8B", "Qwen/Qwen3-0.6B"])
def test_scalar_head_params_match_sequence_classification(model_id):
    """A reward/value model is AutoModelForSequenceClassification with num_labels=1: the LM head
    (untied) or nothing (tied) replaced by an h x 1 score head."""
    spec = planner.load_model(model_id)
    n = _meta_param_count(model_id, transformers.AutoModelForSequenceClassification, num_labels=1)
    assert n == terms.scalar_head_params(spec)
    assert n != spec.params_total
