"""Pipeline specs: which stages run, what each stage gets from an earlier one, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from runners.pipelines.spec import PipelineSpec, stage_specs, stages_to_run
from runners.rundir.spec import SpecError

ROOT = Path("/runs")


def rlhf(**overrides) -> PipelineSpec:
    data = {
        "method": "rlhf",
        "model": "/models/base",
        "data": {"sft": {"path": "/d/sft.jsonl"}, "preferences": {"path": "/d/pairs.jsonl"}},
        **overrides,
    }
    return PipelineSpec.parse(data)


def test_rlhf_runs_sft_then_rm_then_ppo_each_fed_by_the_stage_before():
    specs = stage_specs(rlhf(common={"max_steps": 3, "devices": "cpu"}), "P", ROOT)
    assert [(s.name, r.method) for s, r, _ in specs] == [("sft", "sft"), ("rm", "rm"), ("ppo", "ppo")]
    (_, sft, sft_dir), (_, rm, rm_dir), (_, ppo, ppo_dir) = specs
    assert (sft_dir, rm_dir, ppo_dir) == (ROOT / "P.sft", ROOT / "P.rm", ROOT / "P.ppo")
    assert sft.model == "/models/base" and sft.dataset.path == "/d/sft.jsonl"
    assert rm.model == "/runs/P.sft/checkpoints/final" and rm.dataset.path == "/d/pairs.jsonl"
    assert ppo.model == "/runs/P.sft/checkpoints/final"
    assert ppo.reward.model == "/runs/P.rm/checkpoints/final"
    assert ppo.dataset.path == "/d/pairs.jsonl"  # prompts fall back to the preference pairs' prompts
    assert {s.max_steps for _, s, _ in specs} == {3} and {s.devices for _, s, _ in specs} == {"cpu"}
    assert [s.name for _, s, _ in specs] == ["P · sft", "P · rm", "P · ppo"]


def test_a_given_model_replaces_its_stage():
    spec = rlhf(given={"sft": "/models/my-sft"}, data={"preferences": {"path": "/d/pairs.jsonl"}})
    specs = stage_specs(spec, "P", ROOT)
    assert [s.name for s, _, _ in specs] == ["rm", "ppo"]
    assert specs[0][1].model == "/models/my-sft" and specs[1][1].model == "/models/my-sft"
    spec = rlhf(given={"rm": "/models/my-rm"})
    assert [s.name for s in stages_to_run(spec)] == ["sft", "ppo"]
    assert stage_specs(spec, "P", ROOT)[-1][1].reward.model == "/models/my-rm"


def test_a_reward_function_for_ppo_drops_the_reward_model_stage():
    spec = rlhf(stages={"ppo": {"reward": {"function": "runners.recipes.rewards:marker_reward"}}})
    assert [s.name for s in stages_to_run(spec)] == ["sft", "ppo"]
    assert stage_specs(spec, "P", ROOT)[-1][1].reward.function == "runners.recipes.rewards:marker_reward"


def test_stage_fields_override_common_ones_and_lora_stages_feeding_others_merge():
    spec = rlhf(common={"max_steps": 5, "lora": {"r": 4}}, stages={"ppo": {"max_steps": 9, "hparams": {"kl_coef": 0.1}}})
    by_name = {s.name: r for s, r, _ in stage_specs(spec, "P", ROOT)}
    assert (by_name["sft"].max_steps, by_name["ppo"].max_steps) == (5, 9)
    assert by_name["ppo"].hparams == {"kl_coef": 0.1} and by_name["sft"].hparams == {}
    assert by_name["sft"].merge_lora and by_name["rm"].merge_lora and not by_name["ppo"].merge_lora


@pytest.mark.parametrize(("overrides", "message"), [
    ({"method": "rlhff"}, "method: unknown pipeline 'rlhff'; accepted: rlhf"),
    ({"data": {"sft": {"path": "a"}, "pairs": {"path": "b"}}}, "data.pairs: not a data set of rlhf"),
    ({"given": {"reward": "x"}}, "given.reward: not a stage of rlhf; stages: sft, rm, ppo"),
    ({"given": {"ppo": "x"}}, "given.ppo: the last stage cannot be replaced"),
    ({"common": {"model": "x"}}, "common.model: set by the pipeline for each stage"),
    ({"common": {"hparams": {"beta": 1}}}, "common: hparams and reward differ per stage"),
    ({"data": {"preferences": {"path": "b"}}}, "data.sft: stage sft needs demonstrations"),
    ({"stages": {"ppo": {"max_steps": 0}}}, "stages.ppo: max_steps: a positive step count"),
])
def test_bad_pipeline_specs_fail_with_one_line_naming_the_field(overrides, message):
    with pytest.raises(SpecError) as err:
        stage_specs(rlhf(**overrides), "P", ROOT)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
