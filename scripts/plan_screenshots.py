"""Screenshots of the Plan page for docs/screenshots/: the chart and the "Fits on" tab, opened from
the share link that docs/app.md documents, in Debian's Chromium (/usr/bin/chromium) via Playwright.

    .venv/bin/python scripts/plan_screenshots.py [--prefix before-] [--out docs/screenshots]

Writes <prefix>plan.png (the page), <prefix>plan-chart.png (its chart) and <prefix>plan-fits.png (the
tabs, "Fits on" open), and
prints every line of the server's log that holds a traceback (none expected). Exit code 1 when the
link opens "Page not found" or the log holds a traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
# The link docs/app.md shows, with the case: DPO and PPO of Llama-3.1-8B on one H100.
LINK = "/plan?methods=dpo,ppo,grpo"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settle(page) -> None:
    page.wait_for_timeout(500)
    page.wait_for_function(
        "() => (!document.querySelector('[data-testid=\"stStatusWidget\"]') || "
        "!document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')) && "
        "!document.querySelector('[data-stale=\"true\"]')", timeout=180_000)
    page.wait_for_timeout(500)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prefix", default="")
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    ap.add_argument("--link", default=LINK)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log_path = Path(f"/tmp/plan-shots-{port}.log")  # the server's own output, read back at the end
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.headless", "true", "--server.fileWatcherType", "none"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    url = f"http://127.0.0.1:{port}"
    failed = False
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.set_default_timeout(180_000)
            page.goto(url + args.link)
            page.get_by_role("heading", name="Plan GPU memory").wait_for()
            _settle(page)
            page.locator(".js-plotly-plot").first.wait_for()
            page.wait_for_timeout(1500)
            if page.get_by_text("Page not found").count():
                print("the link opened 'Page not found'")
                failed = True
            page.screenshot(path=str(out / f"{args.prefix}plan.png"))
            page.locator('[data-testid="stPlotlyChart"]').first.screenshot(path=str(out / f"{args.prefix}plan-chart.png"))
            page.get_by_role("tab", name="Fits on").click()
            page.wait_for_timeout(1500)
            page.locator('[data-testid="stTabs"]').first.screenshot(path=str(out / f"{args.prefix}plan-fits.png"))
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    text = log_path.read_text(errors="replace")
    tracebacks = [line for line in text.splitlines() if "Traceback" in line]
    for line in tracebacks:
        print("server log:", line)
    print(f"server log {log_path}: {len(tracebacks)} traceback(s)")
    return 1 if failed or tracebacks else 0


if __name__ == "__main__":
    sys.exit(main())
