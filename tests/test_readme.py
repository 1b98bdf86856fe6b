"""Every ``hpsearch`` command shown in README.md and docs/*.md runs as written.

Each ```bash block line that starts with ``hpsearch `` is one test. A file's commands run in order in one folder
of their own, as a reader would run them: later commands read what earlier ones wrote. A command that cannot run
here (a server that never returns, a download) carries ``# skip-ci: <why>`` on its line and is reported as
skipped, not dropped. Each command is written in one place only (README.md's tour is included into the docs
site, not copied), so the documentation costs CI each command once.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import fresh_postgres_database
from typer.testing import CliRunner

from hpsearch.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
DOCS_POSTGRES = "postgresql://postgres@127.0.0.1:5432/hpsearch"  # the docs name one created by hand
BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```", flags=re.M | re.S)
SKIP_MARK = re.compile(r"#\s*skip-ci:\s*(?P<why>.+)$")


@dataclass(frozen=True)
class DocCommand:
    """One ``hpsearch`` line of a ```bash block: where it is, what it runs, and why CI skips it (if it does)."""

    file: str  # relative to the repository root, e.g. docs/storage.md
    line: int
    command: str  # without its comment
    skip: str | None

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line} {self.command}"


def documented_files() -> list[Path]:
    """README.md first, then the docs pages in name order (cli.md is generated and shows no bash blocks)."""
    return [README, *sorted(DOCS.glob("*.md"))]


def bash_blocks(path: Path) -> list[str]:
    return BASH_BLOCK.findall(path.read_text())


def doc_commands(path: Path) -> list[DocCommand]:
    """The ``hpsearch`` lines of ``path``'s ```bash blocks, in order, with their line numbers."""
    text = path.read_text()
    commands = []
    for block in BASH_BLOCK.finditer(text):
        first_line = text.count("\n", 0, block.start(1)) + 1
        for offset, raw in enumerate(block.group(1).splitlines()):
            if not raw.strip().startswith("hpsearch "):
                continue
            skip = SKIP_MARK.search(raw)
            command = shlex.join(shlex.split(raw, comments=True))
            commands.append(DocCommand(str(path.relative_to(ROOT)), first_line + offset, command,
                                       skip["why"].strip() if skip else None))
    return commands


def all_doc_commands() -> list[DocCommand]:
    return [command for path in documented_files() for command in doc_commands(path)]


def as_param(command: DocCommand) -> object:
    marks = [pytest.mark.skip(reason=f"skip-ci: {command.skip}")] if command.skip else []
    return pytest.param(command, id=command.id, marks=marks)


def test_readme_opens_with_the_install_and_the_test_command() -> None:
    blocks = bash_blocks(README)
    assert "pip install -e ." in blocks[0] and "hpsearch " in blocks[0]
    assert "pytest" in blocks[1]


def test_readme_says_how_a_machine_without_a_gpu_avoids_the_cuda_build() -> None:
    """From PyPI, pip takes torch's CUDA build (a venv of ~6 GB); the CPU-only index is named before the install."""
    text = README.read_text()
    cpu_index = text.find("--index-url https://download.pytorch.org/whl/cpu")
    assert 0 <= cpu_index < text.find("Install the development tools"), "README must name the CPU-only torch install"


def test_the_docs_show_commands_and_mark_the_skipped_ones() -> None:
    """The parser finds the docs' commands, and a skip-ci mark is read as one (not run, not lost)."""
    commands = all_doc_commands()
    files = {command.file for command in commands}
    assert {"README.md", "docs/own-model.md", "docs/storage.md"} <= files
    skipped = {command.command: command.skip for command in commands if command.skip}
    assert skipped.get("hpsearch dashboard", "").startswith("a server")


def test_each_command_is_shown_once() -> None:
    """A command written twice would run twice in CI: include README.md's section instead (--8<--)."""
    counts = Counter(command.command for command in all_doc_commands())
    assert [command for command, n in counts.items() if n > 1] == []


@pytest.fixture(scope="module")
def workdir_for(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """One folder per documented file, made on its first command, with the studies/ and examples/ it names."""
    folders: dict[str, Path] = {}

    def workdir(file: str) -> Path:
        if file not in folders:
            path = tmp_path_factory.mktemp(Path(file).stem)
            shutil.copytree(ROOT / "studies", path / "studies")
            shutil.copytree(ROOT / "examples", path / "examples")
            folders[file] = path
        return folders[file]

    return workdir


@pytest.fixture(scope="module")
def postgres_for() -> Iterator[Callable[[str], str]]:
    """A fresh PostgreSQL database per documented file, made on its first command that names one."""
    with ExitStack() as stack:
        databases: dict[str, str] = {}

        def database(file: str) -> str:
            if file not in databases:
                databases[file] = stack.enter_context(fresh_postgres_database())
            return databases[file]

        yield database


@pytest.mark.parametrize("doc", [as_param(command) for command in all_doc_commands()])
def test_doc_command_runs(doc: DocCommand, workdir_for: Callable[[str], Path],
                          postgres_for: Callable[[str], str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir_for(doc.file))
    command = doc.command
    if DOCS_POSTGRES in command:
        command = command.replace(DOCS_POSTGRES, postgres_for(doc.file))
    result = CliRunner().invoke(app, shlex.split(command)[1:])
    assert result.exit_code == 0, f"{doc.file}:{doc.line}: {doc.command}\n{result.output}{result.stderr}"
