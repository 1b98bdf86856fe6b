"""The real optuna-dashboard, started by `hpsearch dashboard`, in a real headless browser: the study,
its trials, its note and a trial's artifact are all there.

Drives Debian's Chromium (/usr/bin/chromium) through Playwright for Python, which downloads no
browser. Skipped without them, except on CI (CI=true), whose .ci/run installs them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import matplotlib.image
import pytest
from typer.testing import CliRunner

from hpsearch.cli import app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Screenshots land here, for a person (or CI) to look at after the run.
ARTIFACTS = Path(os.environ.get("HPSEARCH_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not Path(CHROMIUM).is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A small study with its note and artifacts, served by `hpsearch dashboard` on a free port: the URL
    of its page."""
    missing = _browser_missing()
    if missing and os.environ.get("CI") != "true":
        pytest.skip(missing)
    from test_dashboard import free_port, get_json

    folder = tmp_path_factory.mktemp("browser")
    storage = f"sqlite:///{folder / 'hp.db'}"
    done = CliRunner().invoke(app, ["run", "--strategy", "random", "--study", "browsed", "--n-trials", "4",
                                    "--epochs", "2", "--hidden", "16", "--pruner", "none", "--artifacts",
                                    "--storage", storage, "--quiet"])
    assert done.exit_code == 0, done.output
    assert len(list((folder / "hp-artifacts").iterdir())) == 4  # one learning curve per completed trial
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "hpsearch", "dashboard", "--storage", storage, "--port",
                               str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        import time

        studies = get_json(f"http://127.0.0.1:{port}/api/studies", time.monotonic() + 60)
        assert isinstance(studies, dict)
        yield f"http://127.0.0.1:{port}/dashboard/studies/{studies['study_summaries'][0]['study_id']}"
    finally:
        server.terminate()
        server.communicate(timeout=10)


def test_the_dashboard_shows_the_study_its_trials_note_and_artifact(dashboard: str) -> None:
    home = dashboard.partition("/studies/")[0]
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(home, wait_until="networkidle")
        expect(page.get_by_text("browsed").first).to_be_visible()

        page.goto(f"{dashboard}/trials", wait_until="networkidle")
        expect(page.get_by_text("4 Trials")).to_be_visible()
        image = page.locator("img[src*='/artifacts/']").first
        expect(image).to_be_visible()
        artifact = page.request.get(image.evaluate("element => element.src"))
        assert artifact.status == 200 and artifact.body()[:8] == b"\x89PNG\r\n\x1a\n"

        page.goto(f"{dashboard}/note", wait_until="networkidle")
        expect(page.get_by_text("Best: trial")).to_be_visible()
        expect(page.get_by_text("strategy random", exact=False)).to_be_visible()

        page.goto(dashboard, wait_until="networkidle")
        expect(page.get_by_text("Best Trial")).to_be_visible()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[1] == 1280 and pixels.std() > 0.05  # drawn, not one flat colour
    assert (pixels.mean(axis=2) < 0.9).mean() > 0.02  # more than a blank page's worth of ink
