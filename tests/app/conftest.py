"""Shared fixtures for the app tests: AppTest over app.py with a private runs directory."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _navigation_like_the_server(monkeypatch):
    """Make AppTest run app.py on every rerun, as the server does.

    AppTest resets PagesManager.uses_pages_directory before each run; with a pages/ folder beside
    app.py it then takes the old pages-directory path and runs the page file alone, skipping
    app.py (its sidebar and st.navigation). The server sets the flag once, and st.navigation turns
    it off on the first run; this does the same for every AppTest run.
    """
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    path = tmp_path / "runs"
    monkeypatch.setenv("ALIGNPLAN_RUNS_DIR", str(path))
    monkeypatch.chdir(ROOT)
    return path


@pytest.fixture
def app(runs_dir):
    """A fresh AppTest of app.py (the Plan page is the default page)."""
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
