"""The Plan page's time and cost say which efficiency factors they used and where they came from."""

from __future__ import annotations

from planner import calibration


def _factors_caption(at) -> str:
    return next(c.value for c in at.caption if c.value.startswith("Indicative prices"))


def test_time_caption_names_default_then_calibrated_factors(app, tmp_path, monkeypatch):
    path = tmp_path / "calibration.yaml"
    monkeypatch.setenv(calibration.CALIBRATION_ENV, str(path))
    at = app.run()
    assert not at.exception
    assert "MFU 0.35: default; decode bandwidth 50%: default" in _factors_caption(at)
    before = _wall_hours(at)
    # the sidebar's default GPU is the H100: a calibration for it changes the page's times and says so
    calibration.write_calibration("H100-80GB", calibration.Fit(0.3, 4, 0.28, 0.33), None, "2026-11-28", path)
    at = app.run()
    assert f"MFU 0.3: calibrated from 4 runs on H100-80GB, 2026-11-28 ({path})" in _factors_caption(at)
    after = _wall_hours(at)
    assert after["dpo"] > before["dpo"] and after["ppo"] > before["ppo"]  # a lower MFU: longer


def _wall_hours(at) -> dict[str, float]:
    table = next(d.value for d in at.dataframe if "wall (h)" in d.value.columns)
    return dict(zip(table["method"], table["wall (h)"], strict=True))
