"""The Runs page over a registry of prepared (not launched) runs: table, filters, detail, delete."""

from __future__ import annotations

import pytest

from runners.demo import tiny
from runners.launch.launch import prepare_and_register
from runners.rundir.devices import discover
from runners.rundir.spec import RunSpec


@pytest.fixture
def two_runs(runs_dir):
    ids = []
    for method, data in (("dpo", "preference"), ("sft", "sft")):
        spec = RunSpec.parse({"method": method, "model": "Qwen/Qwen2.5-0.5B", "name": f"{method}-trial",
                              "dataset": {"path": str(tiny.demo_data_paths()[data])}, "max_steps": 5})
        ids.append(prepare_and_register(spec, runs_dir, devices=discover(gpus=[])).id)
    return ids


def _runs_page(app):
    at = app.run()
    return at.switch_page("pages/runs.py").run()


def test_runs_table_filters_and_detail(app, two_runs):
    at = _runs_page(app)
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    assert sorted(table["id"]) == sorted(two_runs)
    assert set(table["status"]) == {"prepared"} and set(table["model"]) == {"Qwen/Qwen2.5-0.5B"}
    assert all(v > 0 for v in table["predicted peak (GiB)"])  # the planner's estimate, recorded at prepare
    at.multiselect(key="runs_method").set_value(["sft"]).run()
    assert list(at.dataframe[0].value["method"]) == ["sft"]
    assert at.selectbox(key="runs_selected").value == two_runs[1]
    assert any(m.label == "Status" and m.value == "prepared" for m in at.metric)
    assert any(c.value.startswith("method: sft") for c in at.code)  # its spec.yaml
    at.text_input(key="runs_search").set_value("no-such-run").run()
    assert any("No run matches" in i.value for i in at.info)


def test_delete_asks_first(app, two_runs, runs_dir):
    at = _runs_page(app)
    at.selectbox(key="runs_selected").set_value(two_runs[0]).run()
    at.button(key="runs_delete").click().run()
    assert any("Delete **" in w.value for w in at.warning)
    at.button(key="runs_delete_no").click().run()
    assert len(at.dataframe[0].value) == 2  # cancelled: nothing removed
    at.button(key="runs_delete").click().run()
    at.button(key="runs_delete_yes").click().run()
    assert not at.exception
    assert list(at.dataframe[0].value["id"]) == [two_runs[1]]
    assert not (runs_dir / two_runs[0]).exists()


def test_compare_tab_lists_both_runs(app, two_runs):
    at = _runs_page(app)
    assert at.selectbox(key="runs_cmp_a").value == two_runs[1]  # newest first
    assert at.selectbox(key="runs_cmp_b").value == two_runs[0]
    assert at.selectbox(key="runs_cmp_metric").value == "loss"
    at.selectbox(key="runs_cmp_b").set_value(two_runs[1]).run()  # the same run twice: one curve set
    assert not at.exception and not at.error


def test_the_detail_shows_the_setup_and_what_each_process_held(app, two_runs, runs_dir):
    import json

    run_dir = runs_dir / two_runs[1]
    (run_dir / "result.json").write_text(json.dumps(
        {"status": "succeeded", "parameters_held": {"this_process": 247_016_384, "total": 494_032_768,
                                                    "sharded": True}}))
    at = _runs_page(app)
    assert not at.exception
    assert any(m.label == "Setup" and m.value == "cpu × 1" for m in at.metric)
    assert any("Each process held its shard: 247,016,384 of 494,032,768 parameters (50%)" in c.value
               for c in at.caption)


def test_malformed_plan_and_result_files_do_not_break_the_detail(app, two_runs, runs_dir):
    import json

    run_dir = runs_dir / two_runs[1]
    (run_dir / "plan.json").write_text(json.dumps({"decision": "ddp"}))
    (run_dir / "result.json").write_text(json.dumps({"status": "succeeded", "parameters_held": {"total": "10"}}))
    at = _runs_page(app)
    assert not at.exception and not at.error
    assert any(m.label == "Setup" and m.value == "? × ?" for m in at.metric)
    assert not any("Each process held" in c.value for c in at.caption)
