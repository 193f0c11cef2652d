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
    ({"given": {"ppo": "x"}}, "given.ppo: stage ppo of rlhf cannot be replaced by a model; stages that can: sft, rm"),
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


def test_rlaif_generates_labels_then_trains_dpo_on_the_judged_pairs():
    judge = {"kind": "function", "function": "runners.judges.rules:prefer_safe_then_shorter"}
    spec = PipelineSpec.parse({"method": "rlaif", "model": "/m/policy", "data": {"prompts": {"path": "/d/p.jsonl"}},
                               "stages": {"label": {"judge": judge}}})
    specs = stage_specs(spec, "R", ROOT)
    assert [(s.name, r.method) for s, r, _ in specs] == [("generate", "generate"), ("label", "rlaif-label"),
                                                          ("dpo", "dpo")]
    (_, gen, _), (_, label, _), (_, dpo, _) = specs
    assert gen.dataset.path == "/d/p.jsonl" and gen.model == "/m/policy"
    assert label.dataset.path == "/runs/R.generate/output/data.jsonl" and label.judge.function == judge["function"]
    assert dpo.dataset.path == "/runs/R.label/output/data.jsonl" and dpo.model == "/m/policy"


def test_rlaif_with_responses_in_hand_skips_generation():
    spec = PipelineSpec.parse({"method": "rlaif", "model": "/m/policy", "data": {"responses": {"path": "/d/r.jsonl"}},
                               "stages": {"label": {"judge": {"kind": "local"}}}})
    specs = stage_specs(spec, "R", ROOT)
    assert [s.name for s, _, _ in specs] == ["label", "dpo"] and specs[0][1].dataset.path == "/d/r.jsonl"


def test_cai_critiques_fine_tunes_on_revisions_then_judges_the_sl_cai_model():
    spec = PipelineSpec.parse({"method": "cai", "model": "/m/base", "data": {"prompts": {"path": "/d/red.jsonl"}}})
    specs = {s.name: r for s, r, _ in stage_specs(spec, "C", ROOT)}
    assert list(specs) == ["critique", "sft", "generate", "label", "dpo"]
    assert specs["sft"].dataset.path == "/runs/C.critique/output/data.jsonl"
    assert specs["generate"].model == specs["dpo"].model == "/runs/C.sft/checkpoints/final"
    assert specs["generate"].dataset.path == "/d/red.jsonl"
    assert specs["dpo"].dataset.path == "/runs/C.label/output/data.jsonl"
    assert specs["label"].judge.kind == "local" and specs["label"].constitution.endswith("harmless.yaml")
    given = PipelineSpec.parse({"method": "cai", "model": "/m/base", "data": {"prompts": {"path": "/d/red.jsonl"}},
                                "given": {"sft": "/m/sl-cai"}})
    assert [s.name for s in stages_to_run(given)] == ["generate", "label", "dpo"]


def test_rlaif_without_a_judge_is_one_line_naming_the_stage():
    spec = PipelineSpec.parse({"method": "rlaif", "model": "/m/p", "data": {"prompts": {"path": "/d/p.jsonl"}}})
    with pytest.raises(SpecError) as err:
        stage_specs(spec, "R", ROOT)
    assert str(err.value).startswith("stages.label: judge: rlaif-label needs a judge")
