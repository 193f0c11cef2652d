"""planner.parsing.parse_bool: the one true/false parser (app links, advisor answers, run hparams)."""

from __future__ import annotations

import pytest

from planner.parsing import parse_bool


@pytest.mark.parametrize("value", [True, "true", "TRUE", " Yes ", "on", "1", 1])
def test_true_values(value):
    assert parse_bool(value, "f") is True


@pytest.mark.parametrize("value", [False, "false", "No", "OFF", "0", 0])
def test_false_values(value):
    assert parse_bool(value, "f") is False


@pytest.mark.parametrize("value", ["maybe", "", "2", 2, 1.0, None, ["true"]])
def test_anything_else_names_the_field_and_the_accepted_values(value):
    with pytest.raises(ValueError) as err:
        parse_bool(value, "hparams.precompute_ref_log_probs")
    message = str(err.value)
    assert message.startswith("hparams.precompute_ref_log_probs: expected true or false")
    assert "yes/no" in message and "on/off" in message and "1/0" in message and repr(value) in message
