"""Presets: the Launch form saved under a name (runs/presets/<name>.yaml) and set back in a new session."""

from __future__ import annotations

import pytest
import yaml

from alignplan import presets


def _launch_page(app):
    return app.run().switch_page("pages/launch.py").run()


def test_a_preset_saves_the_form_and_loads_it_in_a_new_session(app, runs_dir):
    from streamlit.testing.v1 import AppTest

    at = _launch_page(app)
    at.selectbox(key="launch_method").set_value("ipo").run()
    at.text_input(key="launch_name").set_value("my-ipo-run").run()
    at.toggle(key="launch_lora").set_value(True).run()
    at.number_input(key="launch_hp_ipo_tiny_beta").set_value(0.25).run()
    at.text_input(key="preset_name").set_value("ipo lora").run()
    at.button(key="preset_save").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    saved = yaml.safe_load((runs_dir / "presets" / "ipo lora.yaml").read_text())
    assert saved["launch_method"] == "ipo" and saved["launch_name"] == "my-ipo-run" and saved["launch_lora"] is True
    assert "launch_go" not in saved and "preset_name" not in saved

    fresh = _launch_page(AppTest.from_file(app._script_path, default_timeout=60))
    assert fresh.selectbox(key="launch_method").value == "dpo"
    fresh.selectbox(key="preset_choice").set_value("ipo lora").run()
    fresh.button(key="preset_load").click().run()
    assert not fresh.exception and not fresh.error, [e.value for e in fresh.error]
    assert fresh.selectbox(key="launch_method").value == "ipo"
    assert fresh.text_input(key="launch_name").value == "my-ipo-run"
    assert fresh.toggle(key="launch_lora").value is True
    assert fresh.number_input(key="launch_hp_ipo_tiny_beta").value == pytest.approx(0.25)
    assert not any("Session State" in w.value for w in fresh.warning)
    assert any("Loaded preset **ipo lora**" in i.value for i in fresh.info)


@pytest.mark.parametrize("bad", ["../escape", "a/b", "", ".hidden", "x" * 65])
def test_preset_names_cannot_leave_the_presets_folder(runs_dir, bad):
    with pytest.raises(presets.PresetError, match="Preset name"):
        presets.save(bad, {"launch_method": "dpo"})
    assert not (runs_dir / "escape.yaml").exists()


def test_a_bad_name_on_the_page_is_one_error_line(app, runs_dir):
    at = _launch_page(app)
    at.text_input(key="preset_name").set_value("../../etc/x").run()
    at.button(key="preset_save").click().run()
    assert not at.exception
    assert any("Preset name" in e.value for e in at.error)
    assert not (runs_dir / "presets").exists()
