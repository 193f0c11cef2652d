"""End to end in a real browser: plan a model, answer the advisor, launch the tiny demo DPO run, close
the tab and restart the app mid-run, and watch the run succeed on the new app's Runs page.

Drives Debian's Chromium (/usr/bin/chromium, installed by `scripts/setup.sh --browser`) with
Playwright; skipped when it is absent. Screenshots of each page go to artifacts/e2e/.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts" / "e2e"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout}s")


E2E_STEPS = 150


@pytest.fixture
def start_server(tmp_path):
    """Starts `streamlit run app.py` on a free port over one private runs directory; returns
    (base URL, stop function). Every server still running is stopped at the end."""
    started: list[tuple[subprocess.Popen, object]] = []
    env = dict(os.environ, ALIGNPLAN_RUNS_DIR=str(tmp_path / "runs"), PYTHONPATH=str(ROOT))
    env.pop("ALIGNPLAN_TINY_MODEL", None)
    log_path = tmp_path / "streamlit.log"

    def stop(proc: subprocess.Popen) -> None:
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)

    def start():
        port = _free_port()
        log = open(log_path, "ab")  # noqa: SIM115 - closed at the end
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.headless", "true", "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        started.append((proc, log))
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc)
        return url, lambda: stop(proc)

    try:
        yield start
    finally:
        for proc, log in started:
            stop(proc)
            log.close()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        if log_path.exists():
            (ARTIFACTS / "streamlit.log").write_bytes(log_path.read_bytes())


@pytest.fixture
def browser_page():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (install Debian's chromium: scripts/setup.sh --browser)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1500})
        page.set_default_timeout(60_000)
        try:
            yield page
        finally:
            browser.close()


def _settle(page) -> None:
    """Wait until Streamlit has finished the rerun the last action started."""
    page.wait_for_timeout(300)
    # Widgets of the previous run stay on screen, marked stale, until the rerun ends: wait for
    # those to go as well, or a locator can match the old widget and the new one.
    page.wait_for_function(
        "() => (!document.querySelector('[data-testid=\"stStatusWidget\"]') || "
        "!document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')) && "
        "!document.querySelector('[data-stale=\"true\"]')",
        timeout=120_000,
    )
    page.wait_for_timeout(300)


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _wait_for_charts(page, count: int) -> None:
    """Wait until `count` plotly charts are drawn (the live monitor redraws them every refresh)."""
    page.wait_for_function(
        "n => [...document.querySelectorAll('.js-plotly-plot')].filter(e => e.querySelector('.main-svg')).length >= n",
        arg=count, timeout=60_000)
    page.wait_for_timeout(200)


def _metric_value(page, label: str) -> str:
    metric = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return metric.locator('[data-testid="stMetricValue"]').inner_text()


def test_plan_advise_launch_runs_in_a_browser(start_server, browser_page, tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=90_000)
    server, stop_server = start_server()
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # --- Plan: a shared link sets the inputs; changing the model changes the plan and the link.
    page.goto(f"{server}/plan?methods=dpo,ppo,grpo&seq=2048")
    expect(page.get_by_role("heading", name="Plan GPU memory")).to_be_visible()
    expect(page.locator('[data-testid="stMetric"]').filter(has_text="dpo peak per GPU")).to_be_visible()
    _settle(page)
    before = _metric_value(page, "dpo peak per GPU")
    model_box = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first
    model_box.click()
    page.keyboard.type("Qwen2.5-7B")
    page.get_by_role("option", name="Qwen/Qwen2.5-7B", exact=True).click()
    _settle(page)
    expect(page.locator('[data-testid="stMetric"]').filter(has_text="dpo peak per GPU")
           .locator('[data-testid="stMetricValue"]')).not_to_have_text(before)
    assert "model=Qwen" in page.url and "methods=dpo%2Cppo%2Cgrpo" in page.url.replace(",", "%2C")
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    page.wait_for_timeout(1000)
    _shot(page, "plan")

    # --- Advise: answer the questions one at a time.
    page.get_by_role("link", name="Advise").click()
    expect(page.get_by_role("heading", name="Choose the method")).to_be_visible()
    _settle(page)
    answers = [
        ("radio", "pairwise preferences"),
        ("radio", "style and tone"),
        ("radio", "yes, human annotators"),
        ("number", "6000"),
    ]
    for kind, value in answers:
        if kind == "radio":
            page.locator('[data-testid="stRadio"]').get_by_text(value, exact=False).first.click()
        else:
            box = page.get_by_label("Your answer")
            box.fill(value)
            box.press("Enter")
        _settle(page)
        page.get_by_role("button", name="Next").click()
        _settle(page)
    # The remaining questions (failure mode, model, GPU, count) are optional: keep their defaults.
    for _ in range(6):
        if page.get_by_text("Recommended:").count():
            break
        page.get_by_role("button", name="Next").click()
        _settle(page)
    expect(page.get_by_role("heading", name=re.compile(r"Recommended: DPO"))).to_be_visible()
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    page.wait_for_timeout(1000)
    _shot(page, "advise")

    # --- Launch: carried over from the advice; use the tiny demo model, then launch.
    page.get_by_role("button", name="Launch it").click()
    expect(page.get_by_role("heading", name="Launch a run")).to_be_visible()
    _settle(page)
    expect(page.get_by_text("Prefilled from the advice")).to_be_visible()
    page.get_by_text("Tiny demo model", exact=True).click()
    _settle(page)
    expect(page.get_by_text("Detected format")).to_be_visible()
    expect(page.locator('[data-testid="stMetric"]').filter(has_text="Predicted peak")).to_be_visible()
    # Long enough that the tab can close while the run is alive (30 demo steps can finish before the
    # monitor's first refresh on an idle machine).
    # The model kind is part of the widget key, so the old "Max steps" box stays on screen (stale)
    # until the rerun ends: wait for the tiny model's own box before typing into it.
    from runners.demo.tiny import DEMO_MAX_STEPS

    max_steps = page.get_by_label("Max steps (-1: epochs)")
    expect(max_steps).to_have_count(1)
    expect(max_steps).to_have_value(str(DEMO_MAX_STEPS))
    max_steps.fill(str(E2E_STEPS))
    max_steps.press("Enter")
    _settle(page)
    _shot(page, "launch-form")
    page.get_by_role("button", name="Launch").click()
    expect(page.get_by_role("heading", name=re.compile(r"Run \d{8}-\d{6}-dpo-"))).to_be_visible(timeout=120_000)
    run_id = page.get_by_role("heading", name=re.compile(r"Run \d{8}")).inner_text().split()[-1]
    # The live monitor refreshes by itself: wait for a few steps of the loss curve.
    step = page.locator('[data-testid="stMetric"]').filter(has_text="Step").locator('[data-testid="stMetricValue"]')
    expect(step).to_have_text(re.compile(rf"^([3-9]|[1-9][0-9]) / {E2E_STEPS}$"), timeout=300_000)
    _wait_for_charts(page, 3)
    _shot(page, "launch")

    # --- The tab closes and the app stops mid-run; the run goes on, and a new app finds it.
    page.goto("about:blank")
    stop_server()
    from runners.registry.store import Registry

    assert Registry.for_runs_root(tmp_path / "runs").get(run_id).status == "running"  # outlived the app
    server, _ = start_server()
    page.goto(f"{server}/runs")
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    _settle(page)
    expect(page.locator('[data-testid="stMain"]')).to_contain_text(run_id)
    status = page.locator('[data-testid="stMetric"]').filter(has_text="Status").locator('[data-testid="stMetricValue"]')
    expect(status).to_have_text("succeeded", timeout=600_000)  # the Runs monitor refreshes by itself too
    _wait_for_charts(page, 3)
    _shot(page, "runs")
    assert not page.locator('[data-testid="stException"]').count()
    assert not errors, errors
    _assert_no_traceback(tmp_path / "streamlit.log")


def _assert_no_traceback(log_path: Path) -> None:
    """The server's log of the whole run: no page may log a traceback (Streamlit logs one, for example,
    for a table column that mixes numbers and text, and then draws the table anyway)."""
    text = log_path.read_text(errors="replace")
    assert "Traceback" not in text, text[text.index("Traceback") - 500:][:3000]


def _documented_share_link() -> str:
    """The /plan?... example docs/app.md gives."""
    found = re.search(r"`(/plan\?[^`]+)`", (ROOT / "docs" / "app.md").read_text())
    assert found, "docs/app.md shows no /plan?... share link"
    return found.group(1)


def test_documented_share_link_opens_plan_and_no_page_logs_a_traceback(start_server, browser_page, tmp_path):
    """The share link of the docs opens the Plan page with its inputs (not "Page not found"); the GPU
    label is the verdict's figure; the Fits-on tab (with a "no fit" cell beside counts) and every other
    page render without a traceback in the server's log."""
    from playwright.sync_api import expect

    expect.set_options(timeout=120_000)
    server, _ = start_server()
    page = browser_page
    link = _documented_share_link()
    page.goto(server + link)
    expect(page.get_by_role("heading", name="Plan GPU memory")).to_be_visible()
    _settle(page)
    expect(page.locator('[data-testid="stMetric"]').filter(has_text="dpo peak per GPU")).to_be_visible()
    assert not page.get_by_text("Page not found").count()
    assert "seq=4096" in link and page.get_by_label("Sequence length (tokens)").input_value() == "4096"
    gpu_box = page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name="GPU type")
    assert "H100-80GB (79.6 GiB)" in gpu_box.aria_snapshot()  # the verdict's figure, not "80 GiB"
    expect(page.locator('[data-testid="stMain"]')).to_contain_text("H100-80GB: 79.6 GiB usable")  # the chart
    # Llama-3.1-70B DPO at 8192 tokens: no 24-GiB GPU holds it even sharded, 32 H100s do, so the
    # Fits-on table holds "no fit" beside counts (the mix that made Streamlit log a traceback)
    page.goto(server + "/plan?model=meta-llama/Llama-3.1-70B&methods=dpo&seq=8192&batch=1")
    _settle(page)
    page.get_by_role("tab", name="Fits on").click()
    _settle(page)
    expect(page.locator('[data-testid="stMain"]')).to_contain_text("Fewest GPUs of each type")
    page.wait_for_timeout(1500)  # the table is drawn (and converted) once the tab opens
    for path in ("/advise", "/data", "/launch", "/runs", "/"):
        page.goto(server + path)
        _settle(page)
        assert not page.get_by_text("Page not found").count(), path
    page.wait_for_timeout(1000)
    _assert_no_traceback(tmp_path / "streamlit.log")
