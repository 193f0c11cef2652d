"""Column mapping on the Launch form: data whose columns are not named as the method expects is renamed
with the Rename columns field (the run's dataset.columns), and errors point at that field."""

from __future__ import annotations

import json

import pytest
import yaml

from alignplan import launch_form


def _upload(at, rows):
    at.radio(key="launch_data_source").set_value("Upload a file").run()
    at.file_uploader(key="launch_upload").set_value(
        ("pairs.jsonl", "\n".join(json.dumps(r) for r in rows).encode(), "application/jsonl")).run()
    return at


ROWS = [{"question": f"q{i}", "good": f"yes {i}", "bad": f"no {i}"} for i in range(4)]


def test_renamed_columns_make_the_data_usable_and_reach_the_spec(app, runs_dir):
    at = _upload(app.run().switch_page("pages/launch.py").run(), ROWS)
    assert not at.exception
    first = [e.value for e in at.error]
    assert first and "dataset.columns" not in " ".join(first) and "pairs.jsonl" in first[0]
    assert str(runs_dir) not in " ".join(first) and "uploads/" not in " ".join(first)  # the upload's name, not where it was saved
    assert at.button(key="launch_go_disabled").disabled
    at.text_input(key="launch_data_columns").set_value("question=prompt, good=chosen, bad=rejected").run()
    assert not at.exception and not at.error, [e.value for e in at.error] + [c.value for c in at.code if "Error" in c.value]
    assert any("4 rows" in s.value for s in at.success)
    spec = yaml.safe_load(next(c.value for c in at.code if c.value.startswith("method: dpo")))
    assert spec["dataset"]["columns"] == {"question": "prompt", "good": "chosen", "bad": "rejected"}


def test_a_mapped_column_that_is_missing_names_the_field(app, runs_dir):
    at = _upload(app.run().switch_page("pages/launch.py").run(), ROWS)
    at.text_input(key="launch_data_columns").set_value("query=prompt").run()
    assert not at.exception
    message = " ".join(e.value for e in at.error)
    assert "Rename columns maps ['query']" in message and "dataset.columns" not in message


def test_a_malformed_mapping_is_one_line_naming_the_field(app, runs_dir):
    at = app.run().switch_page("pages/launch.py").run()
    at.text_input(key="launch_data_columns").set_value("question").run()
    assert not at.exception
    assert any("Rename columns" in e.value and "old=new" in e.value for e in at.error)
    assert at.button(key="launch_go_disabled").disabled


@pytest.mark.parametrize(("text", "expected"), [
    ("", {}), ("a=b", {"a": "b"}), (" a = b ,c=d,", {"a": "b", "c": "d"}), ("a=b\nc=d", {"a": "b", "c": "d"})])
def test_parse_columns(text, expected):
    assert launch_form.parse_columns(text) == expected


def test_data_errors_speak_of_the_field():
    said = launch_form.page_words("x.jsonl: column 'promt' is not known; map it with dataset.columns {'promt': 'prompt'}")
    assert said.endswith("the Rename columns field: promt=prompt")
