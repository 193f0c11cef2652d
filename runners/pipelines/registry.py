"""Registering a prepared pipeline: one row for the pipeline, one per stage (pipeline_id set)."""

from __future__ import annotations

from runners.pipelines.pipeline_dir import PipelineDir
from runners.pipelines.prepare import PreparedStage
from runners.pipelines.spec import PipelineSpec
from runners.registry.store import Registry


def register_pipeline(reg: Registry, pipeline: PipelineDir, spec: PipelineSpec, stages: list[PreparedStage]) -> None:
    first_data = next(iter(spec.data.values()), None)
    reg.add(
        run_id=pipeline.id,
        name=spec.name,
        method=spec.method,
        model=spec.model,
        dataset=first_data.path if first_data else "-",
        run_dir=pipeline.path,
        predicted_peak_bytes=pipeline.run.plan().get("predicted_peak_bytes"),
    )
    for item in stages:
        reg.add(
            run_id=item.run.id,
            name=item.spec.name,
            method=item.spec.method,
            model=item.spec.model,
            dataset=item.spec.dataset.path,
            run_dir=item.run.path,
            predicted_peak_bytes=item.run.plan().get("predicted_peak_bytes"),
            pipeline_id=pipeline.id,
        )
