"""The Data page (the data doctor in the app): the bundled demo data, a generated biased file, and the
hand-over from Launch."""

from __future__ import annotations

import json


def _data_page(app):
    at = app.run()
    return at.switch_page("pages/data.py").run()


def test_data_page_reports_the_demo_data(app):
    at = _data_page(app)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    labels = {m.label: m.value for m in at.metric}
    assert labels["Pairs"] == "240" and labels["Distinct prompts"] == "240"
    assert any("whitespace-separated words" in c.value for c in at.caption)  # no tokenizer: said so
    assert any(list(d.value.columns)[:2] == ["field", "mean"] and d.value.shape[0] == 4 for d in at.dataframe)


def test_data_page_finds_a_length_bias_and_duplicates(app, tmp_path):
    rows = [{"prompt": f"Question {i} about topic {i * 7}?", "chosen": f" Answer {i}: " + "word " * 30,
             "rejected": f" No {i}."} for i in range(60)]
    rows += rows[:3]
    path = tmp_path / "biased.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    at = _data_page(app)
    at.radio(key="data_source").set_value("Local path or hub dataset id").run()
    at.text_input(key="data_path").set_value(str(path)).run()
    assert not at.exception, at.exception
    warnings = [w.value for w in at.warning]
    assert any("length_bias" in w and "100%" in w for w in warnings), warnings
    assert any("exact_duplicates" in w and "3 pair(s)" in w for w in warnings), warnings
    assert {m.label: m.value for m in at.metric}["Pairs"] == "63"


def test_data_page_opens_on_the_data_set_handed_over_by_launch(app, tmp_path):
    path = tmp_path / "handed.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"p{i} x", "chosen": f" c{i} y z", "rejected": f" r{i} q w"}) + "\n"
                            for i in range(20)), encoding="utf-8")
    at = app.run()
    at.session_state["data_doctor_from_launch"] = str(path)
    at = at.switch_page("pages/data.py").run()
    assert not at.exception, at.exception
    assert at.text_input(key="data_path").value == str(path)
    assert {m.label: m.value for m in at.metric}["Pairs"] == "20"


def test_launch_shows_the_doctor_summary_and_links_to_the_data_page(app):
    at = app.run().switch_page("pages/launch.py").run()
    assert not at.exception, at.exception
    assert any(c.value.startswith("Data doctor: 240 pairs") for c in at.caption), [c.value for c in at.caption]
    assert at.session_state["data_doctor_from_launch"].endswith("demo_preferences.jsonl")
