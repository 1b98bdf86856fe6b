"""The documentation site: its CLI reference is the one Typer generates from the app, and it builds strictly.

(The commands shown in README.md and docs/*.md run in test_readme.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.cli import app as typer_cli
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
CLI_REFERENCE = ROOT / "docs" / "cli.md"
REGENERATE = "typer hpsearch.cli utils docs --name hpsearch --output docs/cli.md"


def test_cli_reference_is_generated_from_the_app(tmp_path: Path) -> None:
    generated = tmp_path / "cli.md"
    result = CliRunner().invoke(typer_cli, ["hpsearch.cli", "utils", "docs", "--name", "hpsearch",
                                            "--output", str(generated)])
    assert result.exit_code == 0, result.output
    assert generated.read_text() == CLI_REFERENCE.read_text(), (
        f"docs/cli.md is not what the CLI says of itself; regenerate it: {REGENERATE}")


def test_docs_site_builds_strictly(tmp_path: Path) -> None:
    """mkdocs --strict fails on a broken link or anchor, a page missing from the nav, a missing README section."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(tmp_path / "site")],
        capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "digits-random" in (tmp_path / "site" / "index.html").read_text()  # README's tour, included
