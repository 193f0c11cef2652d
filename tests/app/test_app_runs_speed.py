"""The Runs page's speed section (issue 14): predicted vs measured step time, tokens/s and MFU."""

from __future__ import annotations

import json

from runners.demo import tiny
from runners.launch.launch import prepare_and_register
from runners.registry.store import Registry
from runners.rundir.devices import discover
from runners.rundir.spec import RunSpec


def test_run_detail_shows_predicted_and_measured_speed(app, runs_dir):
    spec = RunSpec.parse({"method": "dpo", "model": "Qwen/Qwen2.5-0.5B", "max_steps": 5,
                          "dataset": {"path": str(tiny.demo_data_paths()["preference"])}})
    run = prepare_and_register(spec, runs_dir, devices=discover(gpus=[]))
    launch = json.loads(run.plan_path.read_text())["time"]
    assert launch["device"] == "cpu" and launch["step_time_s"] > 0  # predicted at prepare, for this CPU
    predicted = {**launch, "seq_len": 40, "step_time_s": 0.5}
    run.result_path.write_text(json.dumps({"status": "succeeded", "throughput": {
        "steps_measured": 3, "warmup_steps_excluded": 2, "step_time_s": 2.0, "predicted": predicted,
        "predicted_at_launch": launch}}))
    reg = Registry.for_runs_root(runs_dir)
    reg.update(run.id, device_type="cpu", predicted_step_seconds=0.5, measured_step_seconds=2.0,
               predicted_tokens_per_second=4000.0, measured_tokens_per_second=1000.0, predicted_mfu=0.35,
               measured_mfu=0.0875)
    at = app.run().switch_page("pages/runs.py").run()
    assert not at.exception and not at.error
    section = next(e for e in at.expander if e.label == "Speed: predicted vs measured")
    table = section.dataframe[0].value
    assert list(table[""]) == ["step time (s)", "tokens/s", "MFU"]
    assert list(table["predicted"]) == ["0.5", "4,000", "0.35"]
    assert list(table["measured"]) == ["2", "1,000", "0.0875"]
    assert list(table["measured / predicted"]) == ["4.00", "0.25", "0.25"]
    caption = section.caption[0].value
    assert "medians of 3 steps after 2 warm-up steps" in caption and "mean length of 40 tokens" in caption
    assert "MFU 0.35: default" in caption
