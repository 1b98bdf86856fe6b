"""The ``hpsearch`` command line: each command parses, makes one library call, prints, exits.

The commands live by noun (train: train, lr-find, check; search: run, worker; studies: studies, show, export,
report, dashboard), every option is declared once in options, and this module turns them into one Typer app
whose errors are one line each.
"""

import shlex
import sys
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from hpsearch.cli import search, studies, train
from hpsearch.errors import HPSearchError
from hpsearch.process import prepare_process

__all__ = ["app", "main"]


class _OneLineErrors(TyperGroup):
    """Turn user mistakes, ours or Click's, into one ``error: …`` line and exit code 2, no traceback."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except HPSearchError as exc:
            typer.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except typer.TyperException as exc:  # Click's usage errors: bad option, bad value, no command
            if type(exc).__name__ == "NoArgsIsHelpError":
                typer.echo(exc.format_message(), err=True)
            else:
                typer.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except (typer.Abort, KeyboardInterrupt):
            result = 130
        if result == 130:
            typer.echo(f"error: interrupted; resume with: {_command_line()}", err=True)
        sys.exit(result if isinstance(result, int) else 0)

    def get_help_option(self, ctx: Any) -> Any:
        return _bare(super().get_help_option(ctx))


class _Command(TyperCommand):
    """A command whose flags (``--json``, ``--quiet``, ``--help``) show no type in ``--help``, as Typer's own
    examples read: the type column says what value an option takes, and a flag takes none."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if getattr(param, "is_flag", False):
                _bare(param)

    def get_help_option(self, ctx: Any) -> Any:
        return _bare(super().get_help_option(ctx))


def _bare(option: Any) -> Any:
    if option is not None:
        option.metavar = ""
    return option


app = typer.Typer(cls=_OneLineErrors, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def _root() -> None:
    """Hyperparameter search for PyTorch training, built on Optuna."""


for name, command in (("train", train.train), ("lr-find", train.lr_find), ("check", train.check),
                      ("run", search.run), ("worker", search.worker), ("studies", studies.studies),
                      ("show", studies.show), ("export", studies.export), ("report", studies.report),
                      ("dashboard", studies.dashboard)):
    app.command(name, cls=_Command)(command)


def _command_line() -> str:
    """The command as typed, quoted for a shell, to tell the user how to resume."""
    return shlex.join(["hpsearch", *sys.argv[1:]])


def main() -> None:
    """Console-script entry point (hpsearch.process.prepare_process: warnings as lines, SIGTERM as Ctrl-C)."""
    prepare_process()
    app()
