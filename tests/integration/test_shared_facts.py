"""One source of truth per fact: where two packages must agree, a test says so."""

import typing

import planner
from planner.estimate import PlanRequest
from runners.rundir.decide import DEFAULT_BATCH_SIZE, DEFAULT_MAX_LENGTH
from runners.rundir.spec import RECIPE_METHODS, RunSpec


def test_runner_precisions_are_the_planners():
    assert set(typing.get_args(RunSpec.model_fields["precision"].annotation.__args__[0])) == set(planner.PRECISIONS)


def test_every_recipe_method_is_a_planner_method():
    from planner.methods import STAGES

    # A pipeline stage's recipe (rlaif-label) is planned as one of the planner's STAGES.
    assert set(RECIPE_METHODS) <= set(planner.METHOD_IDS) | set(STAGES)


def test_run_defaults_are_the_planners_and_trls():
    from trl import DPOConfig

    trl = DPOConfig(output_dir="/tmp/x", use_cpu=True, bf16=False)
    assert DEFAULT_MAX_LENGTH == PlanRequest.__dataclass_fields__["seq_len"].default == trl.max_length
    assert DEFAULT_BATCH_SIZE == PlanRequest.__dataclass_fields__["batch_size"].default == (
        trl.per_device_train_batch_size)


def test_advisor_outcomes_are_planner_methods():
    import advisor

    outcomes = set(advisor.framework().outcomes)
    assert outcomes <= set(planner.METHOD_IDS)
