"""``hpsearch train``, ``lr-find`` and ``check``: one configuration, from a settings file and flags."""

import json
import math
from pathlib import Path
from typing import Any

import typer

from hpsearch.cli.options import (
    CheckpointOption,
    ConfigOption,
    EndLrOption,
    JsonOption,
    MethodOption,
    PlotOption,
    SeedOption,
    SmoothingOption,
    StartLrOption,
    StepsOption,
    console,
    with_train_options,
)

__all__ = ["check", "lr_find", "train"]


@with_train_options
def train(train_flags: dict[str, Any], config: ConfigOption = None, seed: SeedOption = None,
          checkpoint: CheckpointOption = None, as_json: JsonOption = False) -> None:
    """Train one configuration and print its per-epoch metrics; an export of a study of your objective runs the
    objective again with the exported params and prints its value."""
    from hpsearch.engine.training import train as run_training
    from hpsearch.presentation.progress import EpochTable

    if config is not None and _rerun_objective(config, train_flags, seed, checkpoint, as_json):
        return
    train_config, data = _config_and_data(config, train_flags, seed)
    if as_json:
        typer.echo(json.dumps(run_training(train_config, data, checkpoint=checkpoint).to_dict(), indent=2))
        return
    with EpochTable(console) as table:
        result = run_training(train_config, data, checkpoint=checkpoint, reporter=table.add)
    accuracy = "" if math.isnan(result.val_acc) else f"val_acc {result.val_acc:.4f}, "  # NaN: a regression
    user_metrics = result.final.user_metrics if result.final else {}
    yours = "".join(f", {name} {value:.4g}" for name, value in user_metrics.items())
    console.print(f"{result.status}: {len(result.history)}/{train_config.epochs} epochs in {result.seconds:.1f}s "
                  f"on {result.device}; {accuracy}val_loss {result.val_loss:.4g}{yours}"
                  + (f" ({result.reason})" if result.reason else ""))


@with_train_options
def lr_find(train_flags: dict[str, Any], config: ConfigOption = None, seed: SeedOption = None,
            start_lr: StartLrOption = 1e-7, end_lr: EndLrOption = 1.0, steps: StepsOption = 100,
            smoothing: SmoothingOption = 0.9, method: MethodOption = "valley", plot: PlotOption = None,
            as_json: JsonOption = False) -> None:
    """LR range test: sweep the learning rate over a few batches and suggest one, and a search range."""
    from hpsearch.engine.lr_finder import lr_range_test
    from hpsearch.presentation.tables import print_lr_range_test

    train_config, data = _config_and_data(config, train_flags, seed)
    result = lr_range_test(train_config, data, start_lr=start_lr, end_lr=end_lr, steps=steps, smoothing=smoothing,
                           method=method)
    if plot is not None:
        from hpsearch.presentation.figures import plot_lr_range_test, save_figure

        save_figure(plot_lr_range_test(result), plot)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        print_lr_range_test(console, result, plot)


@with_train_options
def check(train_flags: dict[str, Any], config: ConfigOption = None, seed: SeedOption = None,
          as_json: JsonOption = False) -> None:
    """Pre-flight checks: data, initial loss, weight decay, gradients, overfitting one batch, update size.

    Exit code 0 when nothing fails, 1 when a check fails.
    """
    from hpsearch.engine.checks import FAIL, run_checks
    from hpsearch.presentation.tables import print_checks

    train_config, data = _config_and_data(config, train_flags, seed)
    results = run_checks(train_config, data)
    if as_json:
        typer.echo(json.dumps([result.to_dict() for result in results], indent=2))
    else:
        print_checks(console, results)
    if any(result.outcome == FAIL for result in results):
        raise typer.Exit(1)


def _rerun_objective(path: Path, train_flags: dict[str, Any], seed: int | None, checkpoint: Path | None,
                     as_json: bool) -> bool:
    """Run the objective of an export of its study with the exported params, and print its value; False when
    ``path`` is no such export. Flags of hpsearch's loop do not apply to it, and are refused."""
    from hpsearch.errors import ConfigError
    from hpsearch.presentation.export import objective_export, rerun_objective

    exported = objective_export(path)
    if exported is None:
        return False
    given = [name for name in train_flags] + ["seed"] * (seed is not None) + ["checkpoint"] * (checkpoint is not None)
    if given:
        raise ConfigError(f"--{given[0].replace('_', '-')} sets hpsearch's training loop; {path} runs objective "
                          f"{exported.objective!r} with its exported params, which trains itself")
    value = rerun_objective(exported)
    if as_json:
        typer.echo(json.dumps({"objective": exported.objective, "params": exported.params, exported.metric: value,
                               "exported": exported.value}, indent=2))
        return True
    scored = f" (the study's trial: {exported.value:.6g})" if exported.value is not None else ""
    console.print(f"objective {exported.objective} with the exported params: {exported.metric} {value:.6g}{scored}",
                  highlight=False)
    return True


def _config_and_data(path: Path | None, train_flags: dict[str, Any], seed: int | None) -> tuple[Any, Any]:
    """The config of ``train``, ``lr-find`` and ``check`` (the file, flags over it) and its data on its device, with
    the model checked on one batch (a wrong output shape is one error line before anything runs)."""
    from hpsearch.engine.config import TrainConfig
    from hpsearch.engine.task import load_checked

    config = TrainConfig.from_sources(path, **train_flags, seed=seed)
    return config, load_checked(config)
