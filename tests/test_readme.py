"""Every ``hpsearch`` command shown in README.md runs as written."""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import fresh_postgres_database
from typer.testing import CliRunner

from hpsearch.cli import app

README = Path(__file__).resolve().parent.parent / "README.md"
README_POSTGRES = "postgresql://postgres@127.0.0.1:5432/hpsearch"


def readme_commands() -> list[str]:
    blocks = re.findall(r"^```bash\n(.*?)^```", README.read_text(), flags=re.M | re.S)
    lines = [line.split("   #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("hpsearch ")]


def test_readme_opens_with_the_install_and_the_test_command() -> None:
    blocks = re.findall(r"^```bash\n(.*?)^```", README.read_text(), flags=re.M | re.S)
    assert "pip install -e ." in blocks[0] and "hpsearch " in blocks[0]
    assert "pytest" in blocks[1]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for the whole tour, as a reader would use: later commands read what earlier ones wrote."""
    path = tmp_path_factory.mktemp("readme")
    shutil.copytree(README.parent / "studies", path / "studies")
    shutil.copytree(README.parent / "examples", path / "examples")  # the entry points studies/ and README name
    return path


@pytest.fixture(scope="module")
def readme_postgres() -> Iterator[str]:
    """The tour's PostgreSQL database, made fresh for it (README's names one created by hand)."""
    with fresh_postgres_database() as url:
        yield url


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_runs(command: str, workdir: Path, monkeypatch: pytest.MonkeyPatch,
                             request: pytest.FixtureRequest) -> None:
    monkeypatch.chdir(workdir)
    if README_POSTGRES in command:
        command = command.replace(README_POSTGRES, request.getfixturevalue("readme_postgres"))
    result = CliRunner().invoke(app, shlex.split(command)[1:])
    assert result.exit_code == 0, result.output + result.stderr
