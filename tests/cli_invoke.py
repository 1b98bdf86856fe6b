"""Run the ``hpsearch`` CLI in this process, as the tests of its commands do: exit code, stdout and stderr."""

from __future__ import annotations

from typer.testing import CliRunner

from hpsearch.cli import app


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr
