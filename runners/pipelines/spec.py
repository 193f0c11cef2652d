"""PipelineSpec: one pipeline run (RLHF, ...), written to runs/<id>/pipeline.yaml, and the stage
RunSpecs it expands to.

Each stage's RunSpec is the pipeline's shared fields (``common``), then the stage's own fields
(``stages.<name>``), then what the pipeline decides: the stage's method, its data set, its model
(the base model or an earlier stage's final model) and its reward model. A stage is left out when
an existing model is given in its place (``given.<name>``) or when no later stage needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from runners.pipelines.definitions import PIPELINE_METHODS, PIPELINES, PipelineDefinition, StageDefinition
from runners.rundir.spec import DatasetSpec, RunSpec, SpecError, read_spec_file

# RunSpec fields the pipeline sets for each stage: not accepted in `common` or `stages.<name>`.
PIPELINE_OWNED = ("method", "model", "dataset", "name", "output_dir")


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: str = Field(description=f"The pipeline: {', '.join(PIPELINE_METHODS)}.")
    model: str = Field(description="Base model (hub id or local directory) the first stage starts from.")
    data: dict[str, DatasetSpec] = Field(
        default_factory=dict, description="The pipeline's data sets by name (rlhf: sft, preferences, prompts)."
    )
    given: dict[str, str] = Field(
        default_factory=dict,
        description="Existing models that replace stages, by stage name, e.g. {sft: path/to/sft-model}.",
    )
    common: dict[str, Any] = Field(
        default_factory=dict,
        description="RunSpec fields every stage shares: precision, devices, num_processes, lora, seed, "
        "save_steps, logging_steps, gradient_checkpointing, trust_remote_code, ...",
    )
    stages: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="RunSpec fields for one stage, over `common`: hparams, max_steps, num_train_epochs, reward, ...",
    )
    name: str | None = Field(None, description="A label for the registry; stages are named '<name> · <stage>'.")
    review: bool = Field(
        False, description="Pause after the labelling stage so a person can read the judged pairs; resume "
        "to continue, delete to stop.",
    )

    @model_validator(mode="after")
    def _check(self) -> PipelineSpec:
        if self.method not in PIPELINES:
            raise ValueError(f"method: unknown pipeline {self.method!r}; accepted: {', '.join(PIPELINE_METHODS)}")
        definition = PIPELINES[self.method]
        names = definition.stage_names
        for key in self.data:
            if key not in definition.data:
                raise ValueError(f"data.{key}: not a data set of {self.method}; accepted: {', '.join(definition.data)}")
        for field_name, keys in (("given", self.given), ("stages", self.stages)):
            for key in keys:
                if key not in names:
                    raise ValueError(f"{field_name}.{key}: not a stage of {self.method}; stages: {', '.join(names)}")
        for key in self.given:
            if key not in definition.given_help:
                accepted = ", ".join(definition.given_help) or "none"
                raise ValueError(f"given.{key}: stage {key} of {self.method} cannot be replaced by a model; "
                                 f"stages that can: {accepted}")
        for where, fields in [("common", self.common), *((f"stages.{k}", v) for k, v in self.stages.items())]:
            for key in PIPELINE_OWNED:
                if key in fields:
                    raise ValueError(f"{where}.{key}: set by the pipeline for each stage; not accepted here")
        if "hparams" in self.common or "reward" in self.common:
            raise ValueError("common: hparams and reward differ per stage; set them under stages.<name>")
        for stage in stages_to_run(self, definition):
            if stage.data_from is None and data_for(self, definition, stage) is None:
                raise ValueError(f"data.{stage.data}: stage {stage.name} needs {definition.data[stage.data]}")
        return self

    # --- io -------------------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: dict[str, Any]) -> PipelineSpec:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            lines = []
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"]) or "pipeline"
                msg = err["msg"].removeprefix("Value error, ")
                lines.append(msg if where == "pipeline" else f"{where}: {msg}")
            raise SpecError("; ".join(lines)) from None

    @classmethod
    def load(cls, path: str | Path) -> PipelineSpec:
        data = read_spec_file(path, "pipeline", "PipelineSpec")
        data.pop("stage_runs", None)  # written by prepare for readers; derived, not input
        return cls.parse(data)

    @property
    def definition(self) -> PipelineDefinition:
        return PIPELINES[self.method]


def output_data_path(run_dir: Path) -> Path:
    """Where a stage that makes data (generation, labelling, critique and revision) writes it, one JSON
    object per line; the stage that reads it (data_from) gets this path as its dataset."""
    return run_dir / "output" / "data.jsonl"


def data_for(spec: PipelineSpec, definition: PipelineDefinition, stage: StageDefinition) -> DatasetSpec | None:
    if stage.data is None:
        return None
    if stage.data in spec.data:
        return spec.data[stage.data]
    fallback = definition.data_fallback.get(stage.data)
    return spec.data.get(fallback) if fallback else None


def stages_to_run(spec: PipelineSpec, definition: PipelineDefinition | None = None) -> list[StageDefinition]:
    """The stages that run, in order: the last stage, and every earlier stage a running stage
    consumes, unless a model is given in its place. A stage whose reward comes from the spec
    (stages.<name>.reward) does not consume its reward stage."""
    definition = definition or PIPELINES[spec.method]
    needed: set[str] = {definition.stages[-1].name}
    for stage in reversed(definition.stages):
        if stage.name not in needed:
            continue
        for source in stage.consumes():
            if source == stage.reward_from and "reward" in spec.stages.get(stage.name, {}):
                continue
            if source == stage.data_from and stage.data is not None and stage.data in spec.data:
                continue  # the data is given: the stage that would make it is not needed
            if source not in spec.given:
                needed.add(source)
    return [s for s in definition.stages if s.name in needed and s.name not in spec.given]


def stage_run_id(pipeline_id: str, stage: StageDefinition) -> str:
    return f"{pipeline_id}.{stage.name}"


def final_model_dir(run_dir: Path, output_dir: str | None = None) -> Path:
    """Where a recipe saves its final model (recipes.common.start's rule for output_dir)."""
    out = Path(output_dir).expanduser() if output_dir else run_dir / "checkpoints"
    if not out.is_absolute():
        out = run_dir / out
    return out / "final"


def stage_specs(spec: PipelineSpec, pipeline_id: str, root: Path) -> list[tuple[StageDefinition, RunSpec, Path]]:
    """(stage, its RunSpec, its run directory) for every stage that runs, in order.

    An earlier stage's final model is referred to by the path it will have: its run directory is
    known before it runs. Stages whose model another stage loads save LoRA runs merged
    (merge_lora), so the next stage loads a whole model."""
    definition = spec.definition
    running = stages_to_run(spec, definition)
    run_names = {s.name for s in running}
    consumed = {src for s in running for src in s.consumes()}
    produced: dict[str, str] = dict(spec.given)
    produced_data: dict[str, str] = {}
    out: list[tuple[StageDefinition, RunSpec, Path]] = []
    for stage in running:
        run_dir = root / stage_run_id(pipeline_id, stage)
        fields: dict[str, Any] = {**stage.defaults, **spec.common, **spec.stages.get(stage.name, {})}
        fields.update(
            method=stage.method,
            model=produced[stage.model_from] if stage.model_from else spec.model,
            dataset=(data_for(spec, definition, stage).model_dump(mode="json")
                     if stage.data_from is None or stage.data_from not in produced_data
                     else {"path": produced_data[stage.data_from]}),
            name=f"{spec.name or pipeline_id} · {stage.name}",
        )
        if stage.reward_from and "reward" not in fields:
            fields["reward"] = {"model": produced[stage.reward_from]}
        if stage.name in consumed and fields.get("lora"):
            fields["merge_lora"] = True
        try:
            run_spec = RunSpec.parse(fields)
        except SpecError as exc:
            raise SpecError(f"stages.{stage.name}: {str(exc).removeprefix('spec: ')}") from None
        if stage.name in run_names:
            produced[stage.name] = str(final_model_dir(run_dir, run_spec.output_dir))
            produced_data[stage.name] = str(output_data_path(run_dir))
        out.append((stage, run_spec, run_dir))
    return out
