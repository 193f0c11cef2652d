"""Reading a pipeline run directory.

runs/<id>/                 the pipeline (its registry row has the pipeline's method, e.g. rlhf)
    pipeline.yaml          PipelineSpec, plus stage_runs: the stages that run, in order
    plan.json              every stage's plan and the largest peak
    command.sh/.json       runs the driver (python -m runners.pipelines.drive)
    metrics.jsonl          every stage's rows, tagged with stage, stage_index and stages
    result.json            succeeded | stopped | failed, naming the stage where it ended
runs/<id>.<stage>/         each stage: an ordinary run directory
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PIPELINE_FILE = "pipeline.yaml"


def is_pipeline_dir(path: str | Path) -> bool:
    return (Path(path) / PIPELINE_FILE).is_file()


@dataclass(frozen=True)
class StageRun:
    index: int  # 1-based position among the stages that run
    name: str
    method: str
    run_id: str
    run_dir: Path

    @property
    def run(self):
        from runners.rundir.reader import RunDir

        return RunDir(self.run_dir)


class PipelineDir:
    """A pipeline's directory; most of it is an ordinary run directory (RunDir) too."""

    def __init__(self, path: str | Path) -> None:
        from runners.rundir.reader import RunDir

        self.path = Path(path)
        self.run = RunDir(self.path)

    @property
    def id(self) -> str:
        return self.path.name

    pipeline_path = property(lambda self: self.path / PIPELINE_FILE)
    review_pending_path = property(lambda self: self.path / "REVIEW_PENDING")  # paused for a person
    review_approved_path = property(lambda self: self.path / "REVIEW_APPROVED")  # resumed after the pause
    stop_path = property(lambda self: self.path / "STOP")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")

    def document(self) -> dict[str, Any]:
        try:
            data = yaml.safe_load(self.pipeline_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, yaml.YAMLError):
            return {}
        return data if isinstance(data, dict) else {}

    def definition(self):
        """The pipeline's definition (its stages as data), or None for an unknown method."""
        from runners.pipelines.definitions import PIPELINES

        return PIPELINES.get(str(self.document().get("method")))

    def spec(self):
        from runners.pipelines.spec import PipelineSpec

        return PipelineSpec.load(self.pipeline_path)

    def stage_runs(self) -> list[StageRun]:
        out = []
        for i, item in enumerate(self.document().get("stage_runs") or [], 1):
            if not isinstance(item, dict):
                continue
            run_id = str(item.get("run_id"))
            out.append(StageRun(i, str(item.get("stage")), str(item.get("method")), run_id,
                                self.path.parent / run_id))
        return out

    def copied_metrics_counts(self) -> dict[str, int]:
        """How many rows of each stage the pipeline's metrics.jsonl holds already."""
        counts: dict[str, int] = {}
        for row in self.run.metrics():
            stage = row.get("stage")
            if isinstance(stage, str):
                counts[stage] = counts.get(stage, 0) + 1
        return counts

    def copy_stage_metrics(self, stage: StageRun, total: int, seen: int) -> int:
        """Append the stage's rows past ``seen`` to the pipeline's metrics.jsonl; returns the new count.
        A stage started over (its metrics.jsonl begun again) is copied from its first row."""
        rows = stage.run.metrics()
        if len(rows) < seen:
            seen = 0
        new = rows[seen:]
        if new:
            with open(self.metrics_path, "a", encoding="utf-8") as fh:
                for row in new:
                    tagged = {**row, "stage": stage.name, "stage_index": stage.index, "stages": total}
                    fh.write(json.dumps(tagged) + "\n")
        return seen + len(new)
