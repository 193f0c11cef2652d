"""Scenarios drawn from the reference text, each with the method the text (or the brief's newer methods) implies."""

from __future__ import annotations

from pathlib import Path

import pytest

import advisor

# (name, answers, expected method, phrases the why must contain, caveat ids that must appear)
SCENARIOS = [
    ("style preferences, annotators (text: start with DPO for style and tone)",
     {"reward_signal": "pairwise", "task": "style", "annotators": "human", "pairs": 2000},
     "dpo", ["pairwise", "style and tone", "human annotators", "2,000"], ["annotator_bias", "bradley_terry_subjective"]),
    ("safety filtering with annotators (text: DPO default for safety filtering)",
     {"reward_signal": "pairwise", "task": "safety", "annotators": "human", "pairs": 8000},
     "dpo", ["safety", "8,000"], ["annotator_bias", "scalar_compression"]),
    ("format enforcement with annotators",
     {"reward_signal": "pairwise", "task": "format", "annotators": "human", "pairs": 0},
     "dpo", ["format enforcement", "0 preference pairs"], ["dpo_over_conservative"]),
    ("single-turn QA quality, nothing collected yet, annotators",
     {"reward_signal": "none", "task": "qa", "annotators": "human", "pairs": 0},
     "dpo", ["no reward signal", "single-turn answer quality"], []),
    ("episode-level reward for multi-turn dialogue (text: canonical RLHF case)",
     {"reward_signal": "episode", "task": "multi_turn"},
     "ppo", ["whole conversations", "temporal credit assignment"], ["ppo_tuning", "reward_hacking"]),
    ("no annotators, factual accuracy (text: RLAIF strong for factual accuracy)",
     {"reward_signal": "none", "task": "factual", "annotators": "none"},
     "rlaif", ["factual accuracy", "no annotators"], ["judge_bias"]),
    ("pairwise factual preferences but no annotators to extend them",
     {"reward_signal": "pairwise", "task": "factual", "annotators": "none"},
     "rlaif", ["factual accuracy", "AI judge"], ["judge_bias"]),
    ("harmlessness with written principles and no annotators (text: CAI good for harmlessness)",
     {"reward_signal": "none", "task": "safety", "annotators": "none", "principles": True},
     "cai", ["safety", "principles"], ["cai_helpfulness", "dpo_over_conservative"]),
    ("safety, no annotators, principles cannot be written down",
     {"reward_signal": "pairwise", "task": "safety", "annotators": "none", "principles": False},
     "rlaif", ["cannot be written", "AI judge"], ["judge_bias"]),
    ("unit-test pass/fail for code (text: sparse pass/fail rewards)",
     {"reward_signal": "verifiable", "task": "code_math"},
     "grpo", ["pass/fail from tests"], ["execution_cost", "reward_hacking"]),
    ("code and math with nothing yet: tests make a verifiable reward",
     {"reward_signal": "none", "task": "code_math"},
     "grpo", ["code or math correctness", "checked automatically"], ["execution_cost"]),
    ("thumbs up/down logs",
     {"reward_signal": "binary"},
     "kto", ["thumbs up/down", "no (chosen, rejected) pairs"], ["annotator_bias"]),
    ("existing RM infrastructure with scalar scores (text: third RLHF condition)",
     {"reward_signal": "scalar", "reward_model": True},
     "ppo", ["scalar score", "reward-model infrastructure"], ["ppo_tuning", "rlhf_needs_good_data"]),
    ("multi-objective trade-offs from pairwise labels (text: explicit RM can be examined)",
     {"reward_signal": "pairwise", "task": "multi_objective", "pairs": 20000},
     "ppo", ["several objectives", "explicit object", "20,000"], ["scalar_compression"]),
    ("multi-objective scalar scores, no RM infrastructure",
     {"reward_signal": "scalar", "reward_model": False, "task": "multi_objective"},
     "ppo", ["scalar score", "several objectives"], ["scalar_compression"]),
    ("multi-turn preferences with existing RM infrastructure",
     {"reward_signal": "pairwise", "task": "multi_turn", "reward_model": True, "pairs": 5000},
     "ppo", ["multi-turn dialogue", "reward-model infrastructure"], ["ppo_tuning"]),
    ("multi-turn preferences, no RM infrastructure: start with DPO, with the multi-turn caveat",
     {"reward_signal": "pairwise", "task": "multi_turn", "reward_model": False, "annotators": "human", "pairs": 0},
     "dpo", ["multi-turn dialogue", "start with DPO"], ["dpo_multi_turn"]),
    ("DPO over-optimises the preference data -> IPO (Azar et al. 2024)",
     {"reward_signal": "pairwise", "task": "qa", "annotators": "human", "pairs": 30000,
      "failure_mode": "over_conservative"},
     "ipo", ["over-optimising", "bounds the objective"], ["dpo_over_conservative"]),
    ("length-biased preferences -> SimPO's length normalisation",
     {"reward_signal": "pairwise", "task": "style", "annotators": "human", "pairs": 9000, "failure_mode": "length_bias"},
     "simpo", ["length bias", "normalises"], ["no_reference_anchor", "annotator_bias"]),
    ("reference copy does not fit -> ORPO (no reference model)",
     {"reward_signal": "pairwise", "task": "format", "annotators": "human", "pairs": 9000,
      "failure_mode": "memory_tight"},
     "orpo", ["does not fit", "no reference model"], ["no_reference_anchor"]),
    ("scalar score per single-turn answer, no RM infrastructure -> RLOO",
     {"reward_signal": "scalar", "reward_model": False, "task": "qa"},
     "rloo", ["scalar score", "single-turn", "leave-one-out"], ["reward_hacking"]),
]


def test_the_table_is_large_enough_and_covers_every_outcome():
    assert len(SCENARIOS) >= 15
    assert {s[2] for s in SCENARIOS} == set(advisor.framework().outcomes)


@pytest.mark.parametrize("name, answers, method, why_phrases, caveat_ids", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_scenario(name, answers, method, why_phrases, caveat_ids):
    rec = advisor.advise(answers)
    assert rec.method == method, (name, rec.path)
    assert all(w.startswith("because ") for w in rec.why)
    why = " ".join(rec.why)
    for phrase in why_phrases:
        assert phrase in why, f"{phrase!r} not in why: {rec.why}"
    ids = {c["id"] for c in rec.caveats}
    assert set(caveat_ids) <= ids, ids
    # the runner-up is one of the alternatives and never the recommendation itself
    assert rec.runner_up != rec.method
    assert rec.runner_up in {a["method"] for a in rec.alternatives}
    assert all(a["why_not"] for a in rec.alternatives)


def test_why_strings_change_with_the_users_answers():
    a = advisor.advise({"reward_signal": "pairwise", "task": "style", "annotators": "human", "pairs": 1234})
    b = advisor.advise({"reward_signal": "pairwise", "task": "format", "annotators": "human", "pairs": 4321})
    assert "1,234" in " ".join(a.why) and "4,321" in " ".join(b.why)
    assert "style and tone" in " ".join(a.why) and "format enforcement" in " ".join(b.why)


def test_only_questions_on_the_path_are_used_and_others_reported_as_ignored():
    rec = advisor.advise({"reward_signal": "verifiable", "task": "style", "annotators": "human", "pairs": 10})
    assert rec.method == "grpo"
    assert rec.answers == {"reward_signal": "verifiable"}
    assert sorted(rec.ignored_answers) == ["annotators", "pairs", "task"]


def test_caveats_that_do_not_apply_are_left_out():
    rec = advisor.advise({"reward_signal": "verifiable"})
    ids = {c["id"] for c in rec.caveats}
    assert "annotator_bias" not in ids and "judge_bias" not in ids and "cai_helpfulness" not in ids
    dpo = advisor.advise({"reward_signal": "pairwise", "task": "qa", "annotators": "human", "pairs": 0})
    assert "dpo_multi_turn" not in {c["id"] for c in dpo.caveats}
    # AI-judged labels: the judge's biases, not the human annotators'
    rlaif = advisor.advise({"reward_signal": "pairwise", "task": "factual", "annotators": "none"})
    assert {c["id"] for c in rlaif.caveats} >= {"judge_bias"}
    assert "annotator_bias" not in {c["id"] for c in rlaif.caveats}


def test_presets_are_runner_method_ids_with_hparams_and_a_command():
    rec = advisor.advise({"reward_signal": "pairwise", "task": "style", "annotators": "human", "pairs": 0,
                          "model": "meta-llama/Llama-3.1-8B"} if _planner() else
                         {"reward_signal": "pairwise", "task": "style", "annotators": "human", "pairs": 0})
    assert rec.preset["method"] == "dpo"
    assert rec.preset["hparams"] == {"beta": 0.1, "learning_rate": 1e-6}
    assert rec.preset["command"].startswith("alignplan run --method dpo")
    assert "--hparam beta=0.1" in rec.preset["command"]
    grpo = advisor.advise({"reward_signal": "verifiable"})
    assert grpo.preset["method"] == "grpo" and "reward" in grpo.preset
    assert advisor.advise({"reward_signal": "binary"}).preset["method"] == "kto"
    # RLAIF and CAI run their pipelines (generate/judge or critique/revise, then DPO), never plain DPO
    cai = advisor.advise({"reward_signal": "none", "task": "safety", "annotators": "none", "principles": True})
    assert cai.preset["method"] == "cai" and cai.preset["stage"] == "dpo"
    assert any("constitution" in s for s in cai.next_steps)


def test_rlaif_and_cai_presets_are_their_pipelines_with_the_judge_left_to_the_user():
    definitions = pytest.importorskip("runners.pipelines.definitions")
    rlaif = advisor.advise({"reward_signal": "pairwise", "task": "factual", "annotators": "none"})
    assert rlaif.method == "rlaif" and rlaif.preset["method"] == "rlaif" in definitions.PIPELINE_METHODS
    assert rlaif.preset["run_spec"] == {
        "method": "rlaif", "model": "<model>", "data": {"prompts": {"path": "prompts.jsonl"}},
        "stages": {"label": {"judge": {"kind": "local", "model": "<judge-model>"}},
                   "dpo": {"hparams": {"beta": 0.1, "learning_rate": 1e-6}}}}
    assert rlaif.preset["command"] == ("alignplan run --method rlaif --model <model> --prompts prompts.jsonl "
                                       "--judge-model <judge-model> --hparam dpo.beta=0.1 "
                                       "--hparam dpo.learning_rate=1.0e-06")
    assert "<judge-model>" in rlaif.preset["note"] and "--judge-function" in rlaif.preset["note"]
    assert "--method dpo" not in " ".join(rlaif.next_steps) and rlaif.preset["command"] in " ".join(rlaif.next_steps)
    cai = advisor.advise({"reward_signal": "none", "task": "safety", "annotators": "none", "principles": True})
    assert cai.method == "cai" and cai.preset["method"] == "cai" in definitions.PIPELINE_METHODS
    assert cai.preset["run_spec"] == {"method": "cai", "model": "<model>", "data": {"prompts": {"path": "prompts.jsonl"}},
                                      "stages": {"dpo": {"hparams": {"beta": 0.1, "learning_rate": 1e-6}}}}
    assert cai.preset["command"].startswith("alignplan run --method cai --model <model> --prompts prompts.jsonl --hparam dpo.")
    assert "--judge" not in cai.preset["command"] and "--constitution" in cai.preset["note"]
    for rec in (rlaif, cai):
        spec = _runner_pipeline_spec_from_command(rec.preset["command"])
        assert spec.model_dump(mode="json", exclude_defaults=True) == rec.preset["run_spec"]


def test_next_steps_follow_the_texts_practical_sequence():
    rec = advisor.advise({"reward_signal": "pairwise", "task": "qa", "annotators": "human", "pairs": 500})
    steps = " ".join(rec.next_steps)
    order = [steps.index(w) for w in ("Collect", "SFT checkpoint", "Run DPO", "Evaluate", "Iterate on the preference data")]
    assert order == sorted(order)
    assert rec.preset["command"] in steps


def _planner() -> bool:
    try:
        import planner  # noqa: F401
    except ImportError:
        return False
    return True


def test_preset_run_spec_is_a_valid_runner_spec_for_every_recipe_method():
    spec_mod = pytest.importorskip("runners.rundir.spec")
    fw = advisor.framework()
    for oid, outcome in fw.outcomes.items():
        from advisor.recommend import build_preset

        preset = build_preset(fw, outcome, "runs/tiny-model")
        if preset.get("stage"):  # a pipeline (RLHF: sft -> rm -> ppo): the hparams are its stage's
            pipeline_spec = pytest.importorskip("runners.pipelines.spec")
            spec = pipeline_spec.PipelineSpec.parse(preset["run_spec"])
            assert spec.method == preset["method"] and spec.stages[preset["stage"]]["hparams"] == preset["hparams"]
            stage_specs = pipeline_spec.stage_specs(spec, "p", Path("runs"))
            ppo = next(s for stage, s, _ in stage_specs if stage.name == preset["stage"])
            assert ppo.hparams == preset["hparams"]
            continue
        assert preset["method"] in spec_mod.RECIPE_METHODS, oid  # every outcome runs: no recipe-less preset
        spec = spec_mod.RunSpec.parse(preset["run_spec"])
        assert spec.method == preset["method"] and spec.hparams == preset["hparams"]


def test_the_ppo_outcome_runs_the_rlhf_pipeline_with_ppo_config_names():
    """RLHF with PPO is the runners' rlhf pipeline; its hyper-parameters are PPOConfig fields of the ppo stage,
    and its data sets follow where the reward comes from (a given reward model skips the rm stage)."""
    import dataclasses

    definitions = pytest.importorskip("runners.pipelines.definitions")
    ppo_config = pytest.importorskip("runners.rl.ppo_config")
    rec = advisor.advise({"reward_signal": "pairwise", "task": "multi_objective", "pairs": 5000})
    assert rec.method == "ppo" and rec.preset["method"] == "rlhf" in definitions.PIPELINE_METHODS
    assert set(rec.preset["hparams"]) <= {f.name for f in dataclasses.fields(ppo_config.PPOConfig)}
    assert rec.preset["run_spec"]["data"] == {"sft": {"path": "sft.jsonl"}, "preferences": {"path": "pairs.jsonl"},
                                              "prompts": {"path": "prompts.jsonl"}}
    assert "given" not in rec.preset["run_spec"]
    assert rec.preset["command"].startswith("alignplan run --method rlhf --model <model> --sft-dataset sft.jsonl "
                                            "--dataset pairs.jsonl --prompts prompts.jsonl --hparam ppo.")
    assert "--hparam ppo.kl_coef=0.05" in rec.preset["command"]
    assert "no PPO recipe" not in rec.preset["note"] and "pipeline" in rec.preset["note"]
    infra = advisor.advise({"reward_signal": "scalar", "reward_model": True})
    assert infra.preset["run_spec"]["given"] == {"rm": "<reward-model>"}
    assert "--reward-model <reward-model>" in infra.preset["command"] and "--dataset" not in infra.preset["command"]
    with_rm = advisor.advise({"reward_signal": "pairwise", "task": "multi_turn", "reward_model": True, "pairs": 100})
    assert with_rm.method == "ppo" and with_rm.preset["run_spec"]["given"] == {"rm": "<reward-model>"}


def _runner_spec_from_command(command: str, tmp_path):
    """Parse an `alignplan run ...` command with the runners' own parser and spec builder."""
    import shlex

    runners_cli = pytest.importorskip("runners.cli")
    from alignplan.cli import build_parser

    argv = shlex.split(command)
    assert argv[:2] == ["alignplan", "run"]
    args = build_parser().parse_args(argv[1:])
    return runners_cli.spec_from_args(args)


def _runner_pipeline_spec_from_command(command: str):
    """Parse an `alignplan run --method rlhf ...` command as `alignplan run` does for a pipeline."""
    import shlex

    runners_cli = pytest.importorskip("runners.cli")
    from alignplan.cli import build_parser
    from runners.pipelines.cli import pipeline_spec_from_args

    args = build_parser().parse_args(shlex.split(command)[1:])
    assert runners_cli.is_pipeline_request(args)
    return pipeline_spec_from_args(args, runners_cli.parse_devices, runners_cli.parse_hparams)


def test_preset_commands_parse_with_the_runners_cli_into_the_preset(tmp_path, monkeypatch):
    """Every outcome's command, read by `alignplan run`'s parser, gives the preset's RunSpec (typed hparams:
    1.0e-06 stays a float)."""
    spec_mod = pytest.importorskip("runners.rundir.spec")
    from advisor.recommend import build_preset

    monkeypatch.chdir(tmp_path)
    fw = advisor.framework()
    for oid, outcome in fw.outcomes.items():
        preset = build_preset(fw, outcome, "runs/tiny model")  # a space: the command must quote it
        if preset.get("stage"):
            spec = _runner_pipeline_spec_from_command(preset["command"])
            assert spec.model_dump(mode="json", exclude_defaults=True) == {**preset["run_spec"], "model": "runs/tiny model"}
            hparams = spec.stages[preset["stage"]]["hparams"]
            assert all(type(hparams[k]) is type(v) for k, v in preset["hparams"].items()), oid
            continue
        assert preset["method"] in spec_mod.RECIPE_METHODS, oid
        if "spec_file" in preset:  # reward presets launch from the spec file `--write-spec` writes
            import yaml

            (tmp_path / preset["spec_file"]).write_text(yaml.safe_dump(preset["run_spec"]))
        spec = _runner_spec_from_command(preset["command"], tmp_path)
        assert spec.method == preset["method"], oid
        assert spec.model == "runs/tiny model"
        assert spec.hparams == preset["hparams"], oid
        assert all(type(spec.hparams[k]) is type(v) for k, v in preset["hparams"].items()), oid
        if "reward" in preset:
            assert spec.reward.model_dump(exclude_defaults=True) == preset["reward"]
