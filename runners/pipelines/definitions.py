"""Pipelines as data: the stages each pipeline method runs, and which earlier stage feeds each one.

A stage is an ordinary run (its own spec, plan, metrics, checkpoints and registry row, run id
``<pipeline id>.<stage name>``). What a stage hands on is its final model (``checkpoints/final``).
A new pipeline (RLAIF, Constitutional AI) is a new entry in PIPELINES, not new control flow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runners.judges.constitution import DEFAULT_CONSTITUTION


@dataclass(frozen=True)
class StageDefinition:
    """One stage of a pipeline.

    name: short and unique within the pipeline; the stage's run id is "<pipeline id>.<name>".
    method: the recipe that runs the stage (a runners.rundir RECIPE_METHODS id, planned by the
        planner's profile of the same id).
    data: which of the pipeline's data sets the stage trains on (a key of PipelineDefinition.data).
    model_from: the earlier stage whose final model this stage starts from; None: the base model.
    reward_from: the earlier stage whose final model scores this stage's rollouts (spec.reward.model).
    data_from: the earlier stage whose output data this stage reads instead of `data` (a generation
        or labelling stage writes <run dir>/output/data.jsonl; see output_data_path).
    """

    name: str
    method: str
    data: str | None = None
    model_from: str | None = None
    reward_from: str | None = None
    data_from: str | None = None
    review_after: bool = False  # with the pipeline's review: true, pause after this stage for a person
    defaults: dict = field(default_factory=dict)  # RunSpec fields the stage gets unless the spec sets them
    summary: str = ""

    def consumes(self) -> tuple[str, ...]:
        return tuple(s for s in (self.model_from, self.reward_from, self.data_from) if s)


@dataclass(frozen=True)
class PipelineDefinition:
    """A method made of stages run in order.

    data: the data sets the pipeline takes, name -> what it holds (shown in errors and help).
    data_fallback: a data set that may be left out because another serves it, e.g. PPO's prompts
        are taken from the preference pairs when no prompt file is given.
    given_help: what an existing model given in place of a stage must be, per stage name.
    """

    id: str
    name: str
    stages: tuple[StageDefinition, ...]
    data: dict[str, str]
    data_fallback: dict[str, str] = field(default_factory=dict)
    given_help: dict[str, str] = field(default_factory=dict)
    main_data: str = ""  # the data set `alignplan run --dataset` names
    source: str = ""

    def stage(self, name: str) -> StageDefinition:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)


RLHF = PipelineDefinition(
    id="rlhf",
    name="RLHF with PPO",
    stages=(
        StageDefinition("sft", "sft", data="sft",
                        summary="supervised fine-tuning on demonstrations: the policy PPO starts from"),
        StageDefinition("rm", "rm", data="preferences", model_from="sft",
                        summary="reward model trained on preference pairs, initialised from the SFT model"),
        StageDefinition("ppo", "ppo", data="prompts", model_from="sft", reward_from="rm",
                        summary="PPO against the reward model; policy and reference from SFT, value from the reward model"),
    ),
    data={
        "sft": "demonstrations (prompt/completion or messages) for the SFT stage",
        "preferences": "preference pairs (prompt/chosen/rejected) for the reward model",
        "prompts": "prompts the policy answers during PPO (default: the preference pairs' prompts)",
    },
    data_fallback={"prompts": "preferences"},
    given_help={
        "sft": "an instruction-tuned (SFT) causal LM: skips the SFT stage",
        "rm": "a reward model (sequence classifier with one output): skips the reward-model stage",
    },
    main_data="preferences",
    source="Ouyang et al. 2022 (InstructGPT): SFT, reward model, PPO",
)

RLAIF = PipelineDefinition(
    id="rlaif",
    name="RLAIF (AI-judged preferences, then DPO)",
    stages=(
        StageDefinition("generate", "generate", data="prompts",
                        summary="the policy answers each prompt K times (sampling, KV cache)"),
        StageDefinition("label", "rlaif-label", data="responses", data_from="generate", review_after=True,
                        summary="a judge compares the answers in both orders; consistent verdicts become pairs"),
        StageDefinition("dpo", "dpo", data_from="label",
                        summary="DPO on the judged pairs, from the same policy"),
    ),
    data={
        "prompts": "prompts the policy answers (prompt-only rows, or the prompts of preference pairs)",
        "responses": "answers already in hand ({prompt, responses} or {prompt, response_a, response_b}): "
                     "skips the generation stage",
    },
    given_help={},
    main_data="prompts",
    source="Bai et al. 2022 (AI feedback); Lee et al. 2023 (RLAIF)",
)

CAI = PipelineDefinition(
    id="cai",
    name="Constitutional AI",
    stages=(
        StageDefinition("critique", "cai-generate", data="prompts",
                        summary="the policy answers, critiques its answer against a principle and revises it"),
        StageDefinition("sft", "sft", data_from="critique",
                        summary="SL-CAI: supervised fine-tuning on the final revisions"),
        StageDefinition("generate", "generate", data="prompts", model_from="sft",
                        summary="the SL-CAI model answers each prompt twice"),
        StageDefinition("label", "rlaif-label", data_from="generate", review_after=True,
                        # CAI's feedback model is a language model asked about one principle at a time: by
                        # default the base model itself, with the bundled constitution
                        defaults={"judge": {"kind": "local"}, "constitution": str(DEFAULT_CONSTITUTION)},
                        summary="RL-CAI: a judge compares the answers against the constitution's principles"),
        StageDefinition("dpo", "dpo", data_from="label", model_from="sft",
                        summary="DPO on the judged pairs, from the SL-CAI model"),
    ),
    data={"prompts": "prompts to answer, typically red-team prompts"},
    given_help={"sft": "an SL-CAI model: skips critique/revision and its SFT stage"},
    main_data="prompts",
    source="Bai et al. 2022 (Constitutional AI: SL-CAI then RL-CAI)",
)

PIPELINES: dict[str, PipelineDefinition] = {p.id: p for p in (RLHF, RLAIF, CAI)}
PIPELINE_METHODS = tuple(PIPELINES)


def get_pipeline(method: str) -> PipelineDefinition:
    if method not in PIPELINES:
        raise KeyError(method)
    return PIPELINES[method]
