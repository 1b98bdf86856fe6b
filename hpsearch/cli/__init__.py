"""The ``hpsearch`` command line: each command parses, makes one library call, prints, exits.

No ``from __future__ import annotations`` here: Typer reads the option annotations at runtime,
and the training options are shared by ``train`` and ``run`` through a signature of real objects.
"""

import functools
import inspect
import json
import math
import os
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from hpsearch.choices import Feed, Metric, Optimizer, Precision, Pruner, Schedule, Strategy
from hpsearch.engine.config import TrainConfig
from hpsearch.engine.task import ADAM_BETAS
from hpsearch.errors import HPSearchError
from hpsearch.process import prepare_process
from hpsearch.search.space import DEFAULT_SPACE
from hpsearch.search.spec import DEFAULT_TRIALS, CoarseToFine, StudySpec
from hpsearch.search.storages import DEFAULT_HEARTBEAT, DEFAULT_MAX_RETRIES, DEFAULT_STORAGE

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


app = typer.Typer(cls=_OneLineErrors, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
# Piped (not a terminal, no COLUMNS), rich would cut tables and wrap lines at 80 columns: wide and unwrapped
# instead, so that every column of a table survives `| less -S`, a file or grep, and a line stays one line.
_PIPE_WIDTH = 1000


def _console() -> Console:
    """Rich's console on stdout, as wide as the terminal, or wide and unwrapped when stdout is piped."""
    console = Console()
    if console.is_terminal or "COLUMNS" in os.environ:
        return console
    return Console(width=_PIPE_WIDTH, soft_wrap=True)


console = _console()


@app.callback()
def _root() -> None:
    """Hyperparameter search for PyTorch training, built on Optuna."""


# --- shared options ---------------------------------------------------------------------------

_DATA, _MODEL, _OPTIM, _RUN = "Data", "Model and loss", "Optimization", "Run"
_TRAIN_OPTIONS: dict[str, tuple[Any, str, str]] = {
    "dataset": (str, "digits, mnist, fashion-mnist, cifar10, npz:PATH, synthetic[:n=,d=,classes=,noise=], or your "
                     "load() as module:attr or file.py:attr.", _DATA),
    "data_dir": (str, "Folder of MNIST/Fashion-MNIST/CIFAR-10 files.", _DATA),
    "download": (bool, "Fetch MNIST/CIFAR-10 files into --data-dir.", _DATA),
    "subset": (int, "Train on only the first N training samples.", _DATA),
    "val_fraction": (float, "Share of the data held out for validation (built-in datasets).", _DATA),
    "num_classes": (int, "Classes, where a split may lack the top label.", _DATA),
    "feed": (Feed, "auto (tensors on the device when they fit, else streamed), device or stream.", _DATA),
    "num_workers": (int, "DataLoader worker processes of a streamed dataset.", _DATA),
    "model": (str, "mlp, cnn, or your factory f(input_shape, outputs, **model_args) as module:attr or "
                   "file.py:attr.", _MODEL),
    "model_arg": (list, "NAME=VALUE passed to the model factory (repeatable; int, float, bool or string).", _MODEL),
    "hidden": (str, "Hidden layer widths of the mlp, e.g. 256,128.", _MODEL),
    "loss": (str, "cross-entropy (classification), mse (regression) or your f(output, target) as module:attr.",
             _MODEL),
    "label_smoothing": (float, "Label smoothing of cross-entropy.", _MODEL),
    "epochs": (int, "Passes over the training data.", _OPTIM),
    "batch_size": (int, "Samples per optimizer step.", _OPTIM),
    "optimizer": (Optimizer, "The torch optimizer.", _OPTIM),
    "lr": (float, "Peak learning rate.", _OPTIM),
    "weight_decay": (float, "Weight decay (decoupled for AdamW, L2 for Adam and SGD).", _OPTIM),
    "momentum": (float, "SGD's momentum.", _OPTIM),
    "nesterov": (bool, "SGD with Nesterov momentum.", _OPTIM),
    "beta1": (float, "Adam/AdamW's first-moment decay.", _OPTIM),
    "beta2": (float, "Adam/AdamW's second-moment decay.", _OPTIM),
    "precision": (Precision, "Autocast precision of the forward pass (fp16 needs a GPU).", _RUN),
    "schedule": (Schedule, "Learning-rate schedule, stepped per batch.", _OPTIM),
    "warmup": (float, "Warmup as a fraction of all steps.", _OPTIM),
    "min_lr_ratio": (float, "Floor of cosine and wsd decay, as a fraction of the peak.", _OPTIM),
    "step_size": (int, "Epochs between step-schedule decays.", _OPTIM),
    "gamma": (float, "Step-schedule decay factor.", _OPTIM),
    "decay_fraction": (float, "Share of steps in the wsd final decay.", _OPTIM),
    "clip": (float, "Clip the global gradient norm to this value.", _OPTIM),
    "device": (str, "auto, cpu, cuda, cuda:N or mps.", _RUN),
}


# Flags are None when left out ("not given"), so that a config file, a spec and a stored spec keep their
# precedence; --help shows what a left-out flag stands for, read from the dataclasses, as text only.
# What a TrainConfig field's None stands for:
_UNSET_MEANS = {"subset": "all", "num_classes": "from the labels", "momentum": "0", "clip": "off",
                "beta1": format(ADAM_BETAS[0], "g"), "beta2": format(ADAM_BETAS[1], "g")}


def _shown(value: Any) -> str:
    """A default as it is typed on the command line: ``256,128`` for a tuple, ``0.001`` for a float."""
    if isinstance(value, tuple):
        return ",".join(_shown(item) for item in value)
    return format(value, "g") if isinstance(value, float) else str(value)


def _with_default(help_text: str, default: str | None) -> str:
    """``help_text`` and ``[default: …]`` after it, as Typer shows an option's own default."""
    return help_text if default is None else f"{help_text} [dim]\\[default: {escape(default)}][/dim]"


def _train_default(name: str) -> str | None:
    """``--help``'s default of a TrainConfig flag (None: none to show, as for --data-dir and --model-arg)."""
    if name in _UNSET_MEANS:
        return _UNSET_MEANS[name]
    value = getattr(TrainConfig, name, None)
    if isinstance(value, bool):  # as Typer shows a flag pair's default
        return ("" if value else "no-") + name.replace("_", "-")
    return None if value is None else _shown(value)


def _range_default(name: str) -> str:
    """LOW HIGH of ``name`` in the default search space."""
    param = next(param for param in DEFAULT_SPACE.params if param.name == name)
    return f"{_shown(param.low)} {_shown(param.high)}"


def _trials_default() -> str:
    """The trials a study holds when --n-trials is left out: by strategy."""
    plan = CoarseToFine().total_trials
    by_strategy = f", coarse-to-fine {plan}" if plan != DEFAULT_TRIALS else ""
    return f"{DEFAULT_TRIALS}{by_strategy}; grid: all its points"


def _pruner_default() -> str:
    """The pruner when --pruner is left out: the study's, and coarse-to-fine's in its stages."""
    coarse, fine = CoarseToFine.coarse_pruner, CoarseToFine.fine_pruner
    return f"{StudySpec.pruner}; coarse-to-fine: " + (coarse if coarse == fine else f"{coarse}, then {fine}")


def _train_parameter(name: str, kind: Any, help_text: str, panel: str) -> inspect.Parameter:
    flag, help_text = "--" + name.replace("_", "-"), _with_default(help_text, _train_default(name))
    if kind is bool:
        option = typer.Option(f"{flag}/--no-{flag[2:]}", help=help_text, rich_help_panel=panel)
    elif kind is list:
        option, kind = typer.Option(flag, help=help_text, rich_help_panel=panel, metavar="NAME=VALUE"), list[str]
    else:
        option = typer.Option(help=help_text, rich_help_panel=panel)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[kind | None, option])


def with_train_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add every TrainConfig flag to ``command``, which receives the given ones as ``train_flags``."""
    extra = [_train_parameter(name, *details) for name, details in _TRAIN_OPTIONS.items()]
    own = [p for p in inspect.signature(command).parameters.values() if p.name != "train_flags"]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        from hpsearch.engine.config import parse_model_arg

        flags = {name: kwargs.pop(name) for name in _TRAIN_OPTIONS if kwargs.get(name) not in (None, [])}
        for name in _TRAIN_OPTIONS:
            kwargs.pop(name, None)
        if "model_arg" in flags:  # --model-arg NAME=VALUE, repeated: one model_args table
            flags["model_args"] = dict(parse_model_arg(text) for text in flags.pop("model_arg"))
        return command(train_flags=flags, **kwargs)

    wrapper.__signature__ = inspect.Signature([*own, *extra])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *extra]}
    return wrapper


StorageOption = Annotated[str | None, typer.Option(help=_with_default("Optuna storage URL.", DEFAULT_STORAGE))]
HeartbeatOption = Annotated[int, typer.Option(help="Seconds between a running trial's heartbeats; a trial silent for three is failed and retried (0: off).", rich_help_panel=_RUN)]  # noqa: E501
DurableOption = Annotated[bool, typer.Option("--durable", help="fsync every storage write (journal line, SQLite commit), so it survives a power cut, not only a killed process; about 0.4 ms a write.", rich_help_panel=_RUN)]  # noqa: E501
MaxRetriesOption = Annotated[int, typer.Option(help="Times a trial of a killed worker is run again.", rich_help_panel=_RUN)]  # noqa: E501
CheckpointDirOption = Annotated[Path | None, typer.Option(help="Save each trial's state every epoch under this folder; a retried trial continues from it.", rich_help_panel=_RUN)]  # noqa: E501
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar, only the result.")]
ArtifactDirOption = Annotated[Path | None, typer.Option(help="Folder of Optuna artifacts (learning curves, checkpoints) for optuna-dashboard; default beside a file storage, else ./hpsearch-artifacts.", rich_help_panel=_RUN)]  # noqa: E501


# --- train ------------------------------------------------------------------------------------

@app.command()
@with_train_options
def train(
    train_flags: dict[str, Any],
    config: Annotated[Path | None, typer.Option(help="JSON or TOML file of settings (or an export); flags override it.")] = None,  # noqa: E501
    seed: Annotated[int | None, typer.Option(help=_with_default("Seed of initialization and shuffling.", _shown(TrainConfig.seed)), rich_help_panel=_RUN)] = None,  # noqa: E501
    checkpoint: Annotated[Path | None, typer.Option(help="Save state here each epoch; resume from it when it exists.", rich_help_panel=_RUN)] = None,  # noqa: E501
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of a table.")] = False,
) -> None:
    """Train one configuration and print its per-epoch metrics."""
    from hpsearch.engine.training import train as run_training
    from hpsearch.presentation.progress import EpochTable

    train_config, data = _train_config_and_data(config, train_flags, seed)
    if as_json:
        typer.echo(json.dumps(run_training(train_config, data, checkpoint=checkpoint).to_dict(), indent=2))
        return
    with EpochTable(console) as table:
        result = run_training(train_config, data, checkpoint=checkpoint, reporter=table.add)
    accuracy = "" if math.isnan(result.val_acc) else f"val_acc {result.val_acc:.4f}, "  # NaN: a regression
    console.print(f"{result.status}: {len(result.history)}/{train_config.epochs} epochs in {result.seconds:.1f}s "
                  f"on {result.device}; {accuracy}val_loss {result.val_loss:.4g}"
                  + (f" ({result.reason})" if result.reason else ""))


# --- lr-find ----------------------------------------------------------------------------------

@app.command("lr-find")
@with_train_options
def lr_find(
    train_flags: dict[str, Any],
    config: Annotated[Path | None, typer.Option(help="JSON or TOML file of settings; flags override it.")] = None,
    seed: Annotated[int | None, typer.Option(help=_with_default("Seed of initialization and shuffling.", _shown(TrainConfig.seed)), rich_help_panel=_RUN)] = None,  # noqa: E501
    start_lr: Annotated[float, typer.Option(help="First learning rate of the sweep.")] = 1e-7,
    end_lr: Annotated[float, typer.Option(help="Last learning rate of the sweep.")] = 1.0,
    steps: Annotated[int, typer.Option(help="Batches in the sweep (at least 10).")] = 100,
    smoothing: Annotated[float, typer.Option(help="EMA factor of the loss for the early stop.")] = 0.9,
    method: Annotated[str, typer.Option(help="Suggestion to use: valley, divergence or steepest.")] = "valley",
    plot: Annotated[Path | None, typer.Option(help="Save the curve with the suggestions marked (PNG, SVG, PDF).")] = None,  # noqa: E501
    as_json: Annotated[bool, typer.Option("--json", help="Print the curve and suggestions as JSON.")] = False,
) -> None:
    """LR range test: sweep the learning rate over a few batches and suggest one, and a search range."""
    from hpsearch.engine.lr_finder import lr_range_test

    train_config, data = _train_config_and_data(config, train_flags, seed)
    result = lr_range_test(train_config, data, start_lr=start_lr, end_lr=end_lr, steps=steps, smoothing=smoothing,
                           method=method)
    if plot is not None:
        from hpsearch.presentation.figures import plot_lr_range_test, save_figure

        save_figure(plot_lr_range_test(result), plot)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    found = result.suggestions
    for name in ("steepest", "divergence", "valley"):
        lr = getattr(found, name)
        console.print(f"{name:>10}: {lr:.3g}" if lr is not None else f"{name:>10}: -")
    low, high = result.prior()
    stop = f"diverged at lr {result.diverged_at:.3g}" if result.diverged_at else "never diverged"
    suggestion = f"{result.suggestion:.3g} ({result.method})" if result.suggestion is not None else "none"
    console.print(f"suggested lr {suggestion}; search range {low:.3g} to {high:.3g}; {len(result.lrs)} steps, {stop}"
                  + (f"; plot in {plot}" if plot else ""))


# --- check ------------------------------------------------------------------------------------

@app.command()
@with_train_options
def check(
    train_flags: dict[str, Any],
    config: Annotated[Path | None, typer.Option(help="JSON or TOML file of settings; flags override it.")] = None,
    seed: Annotated[int | None, typer.Option(help=_with_default("Seed of initialization.", _shown(TrainConfig.seed)), rich_help_panel=_RUN)] = None,  # noqa: E501
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Pre-flight checks: data, initial loss, weight decay, gradients, overfitting one batch, update size.

    Exit code 0 when nothing fails, 1 when a check fails.
    """
    from hpsearch.engine.checks import FAIL, run_checks
    from hpsearch.presentation.progress import print_checks

    train_config, data = _train_config_and_data(config, train_flags, seed)
    results = run_checks(train_config, data)
    if as_json:
        typer.echo(json.dumps([result.to_dict() for result in results], indent=2))
    else:
        print_checks(console, results)
    if any(result.outcome == FAIL for result in results):
        raise typer.Exit(1)


# --- run --------------------------------------------------------------------------------------

@app.command()
@with_train_options
def run(
    train_flags: dict[str, Any],
    strategy: Annotated[Strategy | None, typer.Option(help=_with_default("How trials are chosen.", StudySpec.strategy))] = None,  # noqa: E501
    study: Annotated[str | None, typer.Option(help="Study name; default <dataset>-<strategy>.")] = None,
    storage: StorageOption = None,
    n_trials: Annotated[int | None, typer.Option(help=_with_default("Finished trials the study should hold (a re-run resumes).", _trials_default()))] = None,  # noqa: E501
    timeout: Annotated[float | None, typer.Option(help=_with_default("Stop starting trials after this many seconds.", "no limit"))] = None,  # noqa: E501
    metric: Annotated[Metric | None, typer.Option(help=_with_default("val_loss (minimized) or val_acc (maximized).", StudySpec.metric))] = None,  # noqa: E501
    pruner: Annotated[Pruner | None, typer.Option(help=_with_default("Optuna pruner that stops bad trials early.", _pruner_default()))] = None,  # noqa: E501
    pruner_warmup: Annotated[int | None, typer.Option(help="Epochs every trial trains before the pruner may stop it; default 1, or for median the first epoch at which the complete trials ranked as they finished.")] = None,  # noqa: E501
    seed: Annotated[int | None, typer.Option(help=_with_default("Seed of the sampler and of every trial's training.", _shown(StudySpec.seed)))] = None,  # noqa: E501
    lr_range: Annotated[tuple[float, float] | None, typer.Option(help=_with_default("LOW HIGH of the learning rate (log scale).", _range_default("lr")))] = None,  # noqa: E501
    wd_range: Annotated[tuple[float, float] | None, typer.Option(help=_with_default("LOW HIGH of the weight decay (log scale).", _range_default("weight_decay")))] = None,  # noqa: E501
    grid_points: Annotated[int | None, typer.Option(help=_with_default("Grid values per parameter (grid strategy).", _shown(StudySpec.grid_points)))] = None,  # noqa: E501
    lr_find: Annotated[bool | None, typer.Option("--lr-find/--no-lr-find", help=_with_default("Take the lr range from an LR range test (stored with the study).", "lr-find" if StudySpec.lr_find else "no-lr-find"))] = None,  # noqa: E501
    spec: Annotated[Path | None, typer.Option(help="TOML study spec; flags override it.")] = None,
    batch: Annotated[str | None, typer.Option(help="Train K trials at once as one stacked model (a number, or auto).", rich_help_panel=_RUN)] = None,  # noqa: E501
    jobs: Annotated[int, typer.Option(help="Worker processes sharing the storage (CPU threads are split between them).", rich_help_panel=_RUN)] = 1,  # noqa: E501
    devices: Annotated[str | None, typer.Option(help="Devices for the workers, round-robin, e.g. cuda:0,cuda:1.", rich_help_panel=_RUN)] = None,  # noqa: E501
    heartbeat: HeartbeatOption = DEFAULT_HEARTBEAT,
    max_retries: MaxRetriesOption = DEFAULT_MAX_RETRIES,
    durable: DurableOption = False,
    checkpoint_dir: CheckpointDirOption = None,
    artifacts: Annotated[bool, typer.Option("--artifacts/--no-artifacts", help="Store each completed trial's learning-curve PNG (and final checkpoint) as Optuna artifacts, about 0.1 s a trial.", rich_help_panel=_RUN)] = False,  # noqa: E501
    artifact_dir: ArtifactDirOption = None,
    preflight: Annotated[bool, typer.Option("--check/--no-check", help="Run the quick pre-flight checks (hpsearch check) before the first trial.", rich_help_panel=_RUN)] = True,  # noqa: E501
    quiet: QuietOption = False,
) -> None:
    """Search learning rate and weight decay (or a spec's space) with an Optuna study."""
    from hpsearch.presentation.dashboard import artifact_folder
    from hpsearch.presentation.notes import study_diagnosis
    from hpsearch.presentation.progress import StudyProgress, format_params, print_trials
    from hpsearch.presentation.run import run_study
    from hpsearch.search.objective import TrialFiles
    from hpsearch.search.pool import WorkerPool
    from hpsearch.search.runner import finished_in_family
    from hpsearch.search.space import DEFAULT_SPACE
    from hpsearch.search.spec import StudySpec, load_spec_file
    from hpsearch.search.storages import open_storage
    from hpsearch.search.summary import best_with_study, find_family, load_family

    connect = functools.partial(open_storage, storage, heartbeat=heartbeat, max_retries=max_retries, durable=durable)
    optuna_storage = connect() if spec is None and study is not None else None
    tables = load_spec_file(spec) if spec is not None else _stored_tables(study, pruner, optuna_storage)
    study_table = {**tables.get("study", {}), **_given(name=study, strategy=strategy, n_trials=n_trials,
                                                        timeout=timeout, metric=metric, pruner=pruner,
                                                        pruner_warmup=pruner_warmup, seed=seed,
                                                        grid_points=grid_points, lr_find=lr_find)}
    train_table = merge_train_tables(tables.get("train", {}), {**train_flags, **_given(seed=seed)})
    # A range flag changes one parameter of the space, the spec's or the default one; the rest is still searched.
    space_table = dict(tables["space"]) if "space" in tables else DEFAULT_SPACE.to_dict()
    for name, bounds in (("lr", lr_range), ("weight_decay", wd_range)):
        if bounds is not None:
            space_table[name] = {"low": bounds[0], "high": bounds[1], "log": True}
    study_spec = StudySpec.from_mapping({**tables, "study": study_table, "train": train_table,
                                         **({"space": space_table} if space_table else {})},
                                        source=str(spec) if spec else "flags")
    optuna_storage = optuna_storage if optuna_storage is not None else connect()
    files = TrialFiles(checkpoint_dir, artifact_folder(storage, artifact_dir) if artifacts else None)
    device_list = tuple(d.strip() for d in devices.split(",") if d.strip()) if devices else ()
    pool = None
    if jobs != 1 or device_list:
        pool = WorkerPool(storage=storage or DEFAULT_STORAGE, jobs=jobs, devices=device_list, heartbeat=heartbeat,
                          max_retries=max_retries, durable=durable, files=files)
    _quiet_optuna()
    stored = find_family(study_spec.study_name, optuna_storage)
    held, total = finished_in_family(stored), study_spec.total_trials
    with StudyProgress(console, study_spec, enabled=not quiet and held < total, stored=stored) as progress:
        run_study(study_spec, optuna_storage, callbacks=[progress.on_trial], files=files, pool=pool, batch=batch,
                  preflight=preflight)
    family = load_family(study_spec.study_name, optuna_storage)
    best = best_with_study(family, 5)
    if held >= total:  # nothing ran: say so, and how to run more
        console.print(_held_line(study_spec, held, best[0][1] if best else None, storage), highlight=False,
                      soft_wrap=True)  # a command to copy: never broken over lines
    for line in study_diagnosis(family):
        console.print(line, highlight=False)
    if not quiet:
        print_trials(console, family, best, title=f"study {study_spec.study_name}: top {len(best)}")
    if best:
        best_study, best_trial = best[0]
        where = f" of {best_study.study_name}" if len(family) > 1 else ""
        console.print(f"best {study_spec.metric} {best_trial.value:.4g} (trial {best_trial.number}{where}): "
                      + format_params(best_trial.params))
        if not quiet:
            console.print(f"full config: hpsearch export {study_spec.study_name} --out best.json"
                          + (f" --storage {storage}" if storage else ""))
    else:
        console.print("no trial completed")


def _stored_tables(study: str | None, pruner: Pruner | None, storage: Any) -> dict[str, Any]:
    """The spec tables of ``run --study NAME`` without --spec: the stored study's, so that it goes on as it was
    asked with the flags given over them; none for a new study."""
    from hpsearch.search.runner import resume_tables
    from hpsearch.search.summary import find_family

    if study is None:
        return {}
    tables = resume_tables(study, find_family(study, storage))
    if pruner is not None:  # the flag sets a coarse-to-fine family's fine pruner, as on a first run
        tables.get("coarse_to_fine", {}).pop("fine_pruner", None)
    return tables


def _held_line(spec: Any, held: int, best: Any, storage: str | None) -> str:
    """What a re-run of a study that holds its trials already says: how many, the best, how to run more."""
    name, total = spec.study_name, spec.total_trials
    found = f" (best {spec.metric} {best.value:.4g})" if best is not None else ""
    count = f"its {held} trials" if held == total else f"{held} finished trials ({total} asked)"
    if spec.strategy == "grid" and total == spec.replace(n_trials=None).total_trials:
        return f"study {name} already holds {count}{found}, every point of its grid"
    more = shlex.join(["hpsearch", "run", "--study", name, "--n-trials", str(total + 10),
                       *(["--storage", storage] if storage else [])])
    return f"study {name} already holds {count}{found}; run more with: {more}"


# --- worker -------------------------------------------------------------------------------------

@app.command()
def worker(
    study: Annotated[str, typer.Argument(help="Study (or coarse-to-fine family) to work on.")],
    storage: StorageOption = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N or mps; default the study's.", rich_help_panel=_RUN)] = None,  # noqa: E501
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch in this worker.", rich_help_panel=_RUN)] = None,  # noqa: E501
    timeout: Annotated[float | None, typer.Option(help="Stop starting trials after this many seconds.")] = None,
    heartbeat: HeartbeatOption = DEFAULT_HEARTBEAT,
    max_retries: MaxRetriesOption = DEFAULT_MAX_RETRIES,
    durable: DurableOption = False,
    checkpoint_dir: CheckpointDirOption = None,
    artifact_dir: Annotated[Path | None, typer.Option(help="Store each completed trial's learning curve and final checkpoint as Optuna artifacts in this folder.", rich_help_panel=_RUN)] = None,  # noqa: E501
    batch: Annotated[str | None, typer.Option(help="Train K trials at once as one stacked model (a number, or auto).", rich_help_panel=_RUN)] = None,  # noqa: E501
    index: Annotated[int | None, typer.Option(hidden=True, help="Worker number, to seed its sampler apart.")] = None,
    trust: Annotated[list[str] | None, typer.Option(help="A package (or file) whose entry points the stored spec may name; files inside the working directory are trusted already (repeatable).", rich_help_panel=_RUN)] = None,  # noqa: E501
    quiet: QuietOption = False,
) -> None:
    """Join a stored study from any machine and run its trials until the study holds its budget.

    The stored spec may name entry points (the user's model, data, loss): the worker imports only files
    inside its working directory and modules of packages named with --trust.
    """
    from hpsearch.presentation.progress import StudyProgress
    from hpsearch.presentation.run import with_curve_writer
    from hpsearch.search.objective import TrialFiles
    from hpsearch.search.storages import open_storage
    from hpsearch.search.summary import load_family
    from hpsearch.search.worker import join_study, stored_spec

    if threads is not None and threads < 1:
        raise typer.BadParameter(f"must be >= 1, got {threads}", param_hint="--threads")
    _quiet_optuna()
    optuna_storage = open_storage(storage, heartbeat=heartbeat, max_retries=max_retries, durable=durable)
    first = load_family(study, optuna_storage)[0]
    files = with_curve_writer(TrialFiles(checkpoint_dir, artifact_dir))
    files.prepare(study)
    with StudyProgress(console, stored_spec(first, optuna_storage), enabled=not quiet) as progress:
        last = join_study(study, optuna_storage, device=device, threads=threads,
                          files=files,
                          callbacks=[progress.on_trial], worker=index, timeout=timeout, trust=trust or (),
                          batch=batch)
    if not quiet:
        console.print(f"worker done: {last.study_name} holds its budget")


def _train_config_and_data(path: Path | None, train_flags: dict[str, Any], seed: int | None) -> tuple[Any, Any]:
    """The config of ``train``, ``lr-find`` and ``check``, and its data on its device, with the model checked on
    one batch (a wrong output shape is one error line before anything runs)."""
    from hpsearch.engine.config import TrainConfig, load_config_file
    from hpsearch.engine.task import load_checked

    values = load_config_file(path) if path is not None else {}  # a file (or export), flags over it
    train_config = TrainConfig.from_mapping(merge_train_tables(values, {**train_flags, **_given(seed=seed)}),
                                            source=str(path) if path else "flags")
    data = load_checked(train_config)
    return train_config, data


def merge_train_tables(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``, model_args merged key by key rather than replaced."""
    merged = {**base, **override}
    if isinstance(base.get("model_args"), dict) and "model_args" in override:
        merged["model_args"] = {**base["model_args"], **override["model_args"]}
    return merged


def _given(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


# --- studies, show, export, dashboard -----------------------------------------------------------

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.command()
def studies(storage: StorageOption = None, as_json: JsonOption = False) -> None:
    """List the studies in the storage with their trial counts and best values."""
    from hpsearch.presentation.progress import print_studies
    from hpsearch.search.storages import open_storage
    from hpsearch.search.summary import list_studies, study_row_json

    _quiet_optuna()
    rows = list_studies(open_storage(storage))
    if as_json:
        typer.echo(json.dumps([study_row_json(row) for row in rows], indent=2))
        return
    print_studies(console, rows)


@app.command()
def show(
    study: Annotated[str, typer.Argument(help="Study name.")],
    storage: StorageOption = None,
    top: Annotated[int, typer.Option(help="How many trials to show.")] = 10,
    trial: Annotated[int | None, typer.Option(help="Show this trial in full: config, epochs, status and reason (of the last stage of a coarse-to-fine family unless STUDY names a stage).")] = None,  # noqa: E501
    as_json: JsonOption = False,
) -> None:
    """Print a study's best trials, or one trial in full."""
    from hpsearch.presentation.progress import print_trial, print_trials
    from hpsearch.search.storages import open_storage
    from hpsearch.search.summary import best_with_study, load_family, trial_json

    _quiet_optuna()
    family = load_family(study, open_storage(storage))
    if trial is not None:
        trials = family[-1].get_trials(deepcopy=False)
        if not 0 <= trial < len(trials):
            raise typer.BadParameter(f"study {family[-1].study_name!r} has {len(trials)} trials (0 to "
                                     f"{len(trials) - 1}), got {trial}", param_hint="--trial")
        if as_json:
            typer.echo(json.dumps(trial_json(trials[trial], full=True), indent=2))
        else:
            print_trial(console, family[-1], trials[trial])
        return
    best = best_with_study(family, top)
    if as_json:
        typer.echo(json.dumps([{"study": its.study_name, **trial_json(t)} for its, t in best], indent=2))
        return
    print_trials(console, family, best, title=f"study {study}: top {top}")
    if len(family) > 1 and best:  # --trial alone reads the last stage: name the stage of the trial wanted
        best_study, best_trial = best[0]
        console.print(f"one in full: hpsearch show {best_study.study_name} --trial {best_trial.number}",
                      highlight=False)


@app.command()
def export(
    study: Annotated[str, typer.Argument(help="Study name.")],
    out: Annotated[Path, typer.Option(help="JSON file to write.")] = Path("best.json"),
    storage: StorageOption = None,
    top: Annotated[int, typer.Option(help="Also list the best K trials under 'top'.")] = 1,
) -> None:
    """Write the best trial's complete config to JSON; `hpsearch train --config FILE` runs it again."""
    from hpsearch.presentation.export import export_best, write_export
    from hpsearch.search.storages import open_storage

    _quiet_optuna()
    record = export_best(study, open_storage(storage), top=top)
    write_export(record, out)
    console.print(f"wrote {out}: trial {record['trial']}, {record['metric']} {record['value']:.4g}")


@app.command()
def report(
    study: Annotated[str, typer.Argument(help="Study name (or coarse-to-fine family).")],
    out: Annotated[Path, typer.Option(help="Folder for the PNGs and index.md.")] = Path("report"),
    storage: StorageOption = None,
) -> None:
    """Draw a study's history, lr x weight-decay landscape, learning curves, importances and LR test."""
    from hpsearch.presentation.report import write_report
    from hpsearch.search.storages import open_storage

    _quiet_optuna()
    written = write_report(study, open_storage(storage), out)
    console.print(f"wrote {written.index} with {len(written.figures)} figures"
                  + (f"; not drawn: {', '.join(written.missing)}" if written.missing else ""))


@app.command()
def dashboard(
    storage: StorageOption = None,
    host: Annotated[str, typer.Option(help="Interface to bind; 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    artifact_dir: ArtifactDirOption = None,
) -> None:
    """Serve optuna-dashboard on the storage, with the trials' artifacts, until interrupted."""
    from hpsearch.presentation.dashboard import artifact_folder, check_port, serve_dashboard
    from hpsearch.search.storages import open_storage

    check_port(host, port)
    optuna_storage = open_storage(storage, heartbeat=None)
    # A server has nothing to save: SIGTERM ends it at once. Raised as KeyboardInterrupt (what a run needs), it
    # could land in a finalizer of the web or SQL stack, which swallows it, and the server would serve on.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    typer.echo(f"optuna-dashboard on http://{host}:{port}/ (Ctrl-C to stop)")
    serve_dashboard(optuna_storage, host=host, port=port, artifacts=artifact_folder(storage, artifact_dir))


def _command_line() -> str:
    """The command as typed, quoted for a shell, to tell the user how to resume."""
    return shlex.join(["hpsearch", *sys.argv[1:]])


def main() -> None:
    """Console-script entry point (hpsearch.process.prepare_process: warnings as lines, SIGTERM as Ctrl-C)."""
    prepare_process()
    app()
