"""Issue 14: `alignplan calibrate` fits the efficiency factors from the registry's runs, writes them where
the planner reads them, and the plan says which factors it used and where they came from."""

from __future__ import annotations

import json
import time

import pytest

from planner import calibration, timecost
from planner.errors import PlannerError
from planner.estimate import PlanRequest


@pytest.fixture
def cal_file(tmp_path, monkeypatch):
    path = tmp_path / "calibration.yaml"
    monkeypatch.setenv(calibration.CALIBRATION_ENV, str(path))
    return path


def _seed(runs_dir, runs: list[tuple[str, str, dict]]):
    from runners.registry.store import Registry

    reg = Registry.for_runs_root(runs_dir)
    for run_id, status, speed in runs:
        reg.add(run_id=run_id, method="dpo", model="m", dataset="d", run_dir=runs_dir / run_id)
        reg.transition(run_id, "running")
        reg.transition(run_id, status, **speed)
    return reg


# Three finished runs on H100s with known predicted and measured times (and the factors the predictions used):
#   a: 0.35 x 1.0 / 2.0 = 0.175;  b: 0.35 x 1.0 / 1.25 = 0.28;
#   c: trained 2.0 - 0.5 predicted, 2.5 - 1.0 measured at MFU 0.30 -> 0.30; generated 0.5 predicted at
#      bandwidth fraction 0.5, 1.0 measured -> 0.25.
# Median MFU 0.28 from 3 runs; decode bandwidth 0.25 from 1. A failed run and a CPU run are left out.
RUNS = [
    ("a", "succeeded", dict(device_type="H100-80GB", predicted_mfu=0.35, predicted_step_seconds=1.0,
                            measured_step_seconds=2.0, measured_mfu=0.17)),
    ("b", "stopped", dict(device_type="H100-80GB", predicted_mfu=0.35, predicted_step_seconds=1.0,
                          measured_step_seconds=1.25, measured_mfu=0.27)),
    ("c", "succeeded", dict(device_type="H100-80GB", predicted_mfu=0.30, predicted_step_seconds=2.0,
                            measured_step_seconds=2.5, predicted_generation_seconds=0.5,
                            measured_generation_seconds=1.0, predicted_decode_bw_fraction=0.5, measured_mfu=0.2)),
    ("d", "failed", dict(device_type="H100-80GB", predicted_mfu=0.35, predicted_step_seconds=1.0,
                         measured_step_seconds=0.4)),
    ("e", "succeeded", dict(device_type="cpu", predicted_mfu=0.35, predicted_step_seconds=0.01,
                            measured_step_seconds=1.0)),
]


def _cli(capsys, *argv):
    from alignplan.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_fit_factor_is_the_median_of_per_run_fits():
    fit = calibration.fit_factor([(0.35, 1.0, 2.0), (0.35, 1.0, 1.25), (0.30, 1.5, 1.5), (0.35, 0.0, 1.0)])
    assert (fit.value, fit.runs, fit.low, fit.high) == (pytest.approx(0.28), 3, pytest.approx(0.175),
                                                        pytest.approx(0.30))
    assert calibration.fit_factor([]) is None


def test_calibrate_fits_seeded_runs_writes_them_and_the_plan_uses_them(capsys, runs_dir, cal_file):
    _seed(runs_dir, RUNS)
    code, out, err = _cli(capsys, "calibrate", "--device-type", "h100", "--json")
    assert code == 0, err
    fit = json.loads(out)
    assert fit["device_type"] == "H100-80GB" and sorted(fit["runs"]) == ["a", "b", "c"]
    assert fit["mfu"] == {"value": pytest.approx(0.28), "runs": 3, "spread": [pytest.approx(0.175), pytest.approx(0.30)]}
    assert fit["decode_bw_fraction"] == {"value": pytest.approx(0.25), "runs": 1,
                                         "spread": [pytest.approx(0.25), pytest.approx(0.25)]}
    assert fit["written"] is None and not cal_file.exists()

    code, out, err = _cli(capsys, "calibrate", "--device-type", "H100-80GB", "--write")
    assert code == 0, err
    assert "training MFU: 0.28 (median of 3 runs; single-run fits 0.175 to 0.3; default 0.35)" in out
    assert "decode bandwidth fraction: 0.25 (median of 1 run" in out
    assert f"written to {cal_file}" in out
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert calibration.load_calibration(cal_file)["H100-80GB"]["mfu"] == pytest.approx(0.28)

    code, out, err = _cli(capsys, "plan", "--model", "llama-3.1-8b", "--method", "dpo", "--gpu", "H100",
                          "--tokens", "10000000", "--json")
    assert code == 0, err
    t = json.loads(out)["time"]
    assert t["mfu"] == pytest.approx(0.28)
    assert t["mfu_source"] == f"calibrated from 3 runs on H100-80GB, {today} ({cal_file})"
    assert t["decode_bw_fraction"] == pytest.approx(0.25)
    assert t["decode_bw_source"].startswith(f"calibrated from 1 run on H100-80GB, {today}")
    # the calibrated MFU is the MFU the times are computed with
    req = PlanRequest(model="llama-3.1-8b", method="dpo", gpu="H100-80GB")
    work = timecost.work_from_tokens(10_000_000, req)
    assert t["wall_seconds"] == pytest.approx(timecost.estimate_time(req, work, mfu=0.28)["wall_seconds"])
    assert timecost.estimate_time(req, work, mfu=0.28)["mfu_source"] == "given (--mfu)"
    # another GPU type has no calibration: defaults, said so
    other = timecost.estimate_time(req.replace(gpu="A100-80GB"), work)
    assert (other["mfu"], other["mfu_source"], other["decode_bw_source"]) == (0.35, "default", "default")

    code, out, _ = _cli(capsys, "plan", "--model", "llama-3.1-8b", "--method", "dpo", "--gpu", "H100",
                        "--tokens", "10000000")
    assert f"MFU 0.28: calibrated from 3 runs on H100-80GB, {today}" in out


def test_calibrate_cpu_leaves_other_devices_in_the_file(capsys, runs_dir, cal_file):
    _seed(runs_dir, RUNS)
    assert _cli(capsys, "calibrate", "--device-type", "H100-80GB", "--write")[0] == 0
    code, out, err = _cli(capsys, "calibrate", "--device-type", "cpu", "--write", "--json")
    assert code == 0, err
    assert json.loads(out)["mfu"]["value"] == pytest.approx(0.0035)  # 0.35 x 0.01 / 1.0
    both = calibration.load_calibration(cal_file)
    assert both["cpu"]["mfu"] == pytest.approx(0.0035) and both["H100-80GB"]["mfu"] == pytest.approx(0.28)


@pytest.mark.parametrize("argv, message", [
    (["--device-type", "Z80"], "device-type: unknown device type 'Z80'; accepted: cpu, T4-16GB"),
    (["--device-type", "A100-80GB"], "no finished run with measured speed on A100-80GB in the registry; "
                                     "device types with runs: H100-80GB, cpu"),
    ([], "give one of the device types with finished runs: H100-80GB, cpu"),
])
def test_unknown_device_or_no_runs_is_one_line_exit_2(capsys, runs_dir, cal_file, argv, message):
    _seed(runs_dir, RUNS)
    code, out, err = _cli(capsys, "calibrate", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_empty_registry_is_one_line_exit_2(capsys, runs_dir, cal_file):
    code, _, err = _cli(capsys, "calibrate")
    assert code == 2 and "no run registry here" in err and len(err.strip().splitlines()) == 1
    _seed(runs_dir, [])
    code, _, err = _cli(capsys, "calibrate", "--device-type", "cpu")
    assert code == 2 and "no finished run with measured speed on cpu" in err


def test_a_broken_calibration_file_is_named(cal_file):
    cal_file.write_text("devices:\n  H100-80GB: {mfu: 3}\n")
    with pytest.raises(PlannerError, match=r"calibration\.yaml: H100-80GB\.mfu must be in \(0, 1\], got 3"):
        timecost.estimate_time(PlanRequest(model="llama-3.2-1b", method="sft", gpu="H100-80GB"),
                               timecost.Work(examples=100))


def test_cpu_device_times_with_its_peak(monkeypatch):
    monkeypatch.setenv("ALIGNPLAN_CPU_PEAK_GFLOPS", "100")
    monkeypatch.setenv("ALIGNPLAN_CPU_MEM_GBPS", "10")
    req = PlanRequest(model="llama-3.2-1b", method="sft", precision="fp32", seq_len=256, batch_size=4)
    t = timecost.estimate_time(req, timecost.Work(examples=8), "cpu")
    assert t["gpu"] == "cpu" and t["peak_flops"] == 100e9 and t["memory_bandwidth"] == 10e9
    assert t["fits"] is None and t["price_per_gpu_hour"] is None
    fb = next(p for p in t["stages"][0]["phases"] if p["name"] == "forward_backward")
    assert fb["seconds"] == pytest.approx(fb["flops"] / (100e9 * 0.35))
    assert t["stages"][0]["optimizer_steps"] == 2


def test_host_cpu_peak_is_cores_times_clock_times_flops_per_cycle(monkeypatch):
    from planner import hardware

    monkeypatch.delenv("ALIGNPLAN_CPU_PEAK_GFLOPS", raising=False)
    cpu = hardware.host_cpu()
    assert cpu.id == "cpu" and cpu.bf16_tflops > 0 and cpu.memory_bytes > 0
    assert hardware._cpu_flops_per_cycle({"avx2", "fma", "avx512f"}) == 32
    assert hardware._cpu_flops_per_cycle({"sse2"}) == 8
    monkeypatch.setenv("ALIGNPLAN_CPU_PEAK_GFLOPS", "-1")
    with pytest.raises(PlannerError, match="ALIGNPLAN_CPU_PEAK_GFLOPS: must be a positive number"):
        hardware.host_cpu()
