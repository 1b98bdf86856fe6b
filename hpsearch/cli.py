"""The ``hpsearch`` command line: each command parses, makes one library call, prints, exits."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table
from typer.core import TyperGroup

from hpsearch.errors import HPSearchError

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
            typer.echo("error: interrupted", err=True)
            sys.exit(130)
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(cls=_OneLineErrors, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Hyperparameter search for PyTorch training, built on Optuna.")
console = Console()


@app.callback()
def _root() -> None:
    """Hyperparameter search for PyTorch training, built on Optuna."""

_DATA = "Data"
_OPTIM = "Optimization"
_RUN = "Run"


@app.command()
def train(
    config: Annotated[Path | None, typer.Option(help="JSON or TOML file of settings; flags override it.")] = None,
    dataset: Annotated[str | None, typer.Option(help="digits, mnist, fashion-mnist, npz:PATH or synthetic[:n=,d=,classes=].", rich_help_panel=_DATA)] = None,  # noqa: E501
    data_dir: Annotated[str | None, typer.Option(help="Folder of MNIST/Fashion-MNIST files.", rich_help_panel=_DATA)] = None,  # noqa: E501
    download: Annotated[bool | None, typer.Option("--download/--no-download", help="Fetch MNIST files into --data-dir.", rich_help_panel=_DATA)] = None,  # noqa: E501
    subset: Annotated[int | None, typer.Option(help="Train on only the first N training samples.", rich_help_panel=_DATA)] = None,  # noqa: E501
    val_fraction: Annotated[float | None, typer.Option(help="Share of the data held out for validation.", rich_help_panel=_DATA)] = None,  # noqa: E501
    model: Annotated[str | None, typer.Option(help="Model name (mlp).", rich_help_panel=_OPTIM)] = None,
    hidden: Annotated[str | None, typer.Option(help="Hidden layer widths, e.g. 256,128.", rich_help_panel=_OPTIM)] = None,  # noqa: E501
    epochs: Annotated[int | None, typer.Option(help="Passes over the training data.", rich_help_panel=_OPTIM)] = None,
    batch_size: Annotated[int | None, typer.Option(help="Samples per optimizer step.", rich_help_panel=_OPTIM)] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate of AdamW.", rich_help_panel=_OPTIM)] = None,
    weight_decay: Annotated[float | None, typer.Option(help="AdamW's decoupled weight decay.", rich_help_panel=_OPTIM)] = None,  # noqa: E501
    schedule: Annotated[str | None, typer.Option(help="constant, step, cosine, warmup-cosine or wsd.", rich_help_panel=_OPTIM)] = None,  # noqa: E501
    warmup: Annotated[float | None, typer.Option(help="Warmup as a fraction of all steps.", rich_help_panel=_OPTIM)] = None,  # noqa: E501
    min_lr_ratio: Annotated[float | None, typer.Option(help="Floor of cosine and wsd decay, as a fraction of the peak.", rich_help_panel=_OPTIM)] = None,  # noqa: E501
    step_size: Annotated[int | None, typer.Option(help="Epochs between step-schedule decays.", rich_help_panel=_OPTIM)] = None,  # noqa: E501
    gamma: Annotated[float | None, typer.Option(help="Step-schedule decay factor.", rich_help_panel=_OPTIM)] = None,
    decay_fraction: Annotated[float | None, typer.Option(help="Share of steps in the wsd final decay.", rich_help_panel=_OPTIM)] = None,  # noqa: E501
    clip: Annotated[float | None, typer.Option(help="Clip the global gradient norm to this value.", rich_help_panel=_OPTIM)] = None,  # noqa: E501
    seed: Annotated[int | None, typer.Option(help="Seed of initialization and shuffling.", rich_help_panel=_RUN)] = None,  # noqa: E501
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N or mps.", rich_help_panel=_RUN)] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Save state here each epoch; resume from it when it exists.", rich_help_panel=_RUN)] = None,  # noqa: E501
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of a table.")] = False,
) -> None:
    """Train one configuration and print its per-epoch metrics."""
    flags = {key: value for key, value in locals().items()
             if key not in ("config", "checkpoint", "as_json") and value is not None}
    from hpsearch.config import TrainConfig, load_config_file
    from hpsearch.training import EpochMetrics
    from hpsearch.training import train as run_training

    values = load_config_file(config) if config is not None else {}
    train_config = TrainConfig.from_mapping({**values, **flags}, source=str(config) if config else "flags")

    if as_json:
        result = run_training(train_config, checkpoint=checkpoint)
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return

    table = _epoch_table()
    with Live(table, console=console, auto_refresh=False) as live:
        def show_epoch(epoch: int, metrics: EpochMetrics) -> None:
            _add_epoch_row(table, metrics)
            live.refresh()

        result = run_training(train_config, checkpoint=checkpoint, reporter=show_epoch)
    if not console.is_terminal:
        console.line()  # Live leaves no newline after its last render when output is not a terminal
    console.print(f"{result.status}: {len(result.history)}/{train_config.epochs} epochs in {result.seconds:.1f}s "
                  f"on {result.device}; val_acc {result.val_acc:.4f}, val_loss {result.val_loss:.4g}"
                  + (f" ({result.reason})" if result.reason else ""))


def _epoch_table() -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("epoch", "train_loss", "val_loss", "val_acc", "lr", "grad_norm", "samples/s", "sec"):
        table.add_column(column, justify="right", min_width=len(column))
    return table


def _add_epoch_row(table: Table, m: Any) -> None:
    table.add_row(str(m.epoch), f"{m.train_loss:.4g}", f"{m.val_loss:.4g}", f"{m.val_acc:.4f}", f"{m.lr:.3g}",
                  f"{m.grad_norm:.3g}", f"{m.samples_per_s:,.0f}", f"{m.seconds:.2f}")


def main() -> None:
    """Console-script entry point."""
    app()
