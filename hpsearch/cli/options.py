"""Every option of the ``hpsearch`` commands, declared once, and the console they print to.

No ``from __future__ import annotations`` here: Typer reads the option annotations at runtime, and the training
options are shared by ``train``, ``lr-find``, ``check`` and ``run`` through a signature of real objects.
"""

import functools
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from hpsearch.choices import Direction, Feed, Precision, Pruner, Schedule, Strategy
from hpsearch.engine.config import TrainConfig
from hpsearch.engine.task import ADAM_BETAS
from hpsearch.search.space import DEFAULT_SPACE
from hpsearch.search.spec import DEFAULT_METRIC, DEFAULT_TRIALS, OBJECTIVE_METRIC, CoarseToFine, StudySpec
from hpsearch.search.storages import DEFAULT_STORAGE

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


# --- the training options: every TrainConfig field -------------------------------------------------

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
    "optimizer": (str, "adamw, adam, sgd, or your factory f(params, lr, weight_decay, **optimizer_args) -> "
                       "torch.optim.Optimizer as module:attr or file.py:attr.", _OPTIM),
    "optimizer_arg": (list, "NAME=VALUE passed to your optimizer factory (repeatable; int, float, bool or string).",
                      _OPTIM),
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
    "metrics": (str, "Your f(outputs, targets) -> dict of name to number, on the whole validation set each epoch, "
                     "as module:attr or file.py:attr.", _MODEL),
    "device": (str, "auto, cpu, cuda, cuda:N or mps.", _RUN),
}


# Flags are None when left out ("not given"), so that a config file, a spec and a stored spec keep their
# precedence; --help shows what a left-out flag stands for, read from the dataclasses, as text only.
# What a TrainConfig field's None stands for:
_UNSET_MEANS = {"subset": "all", "num_classes": "from the labels", "momentum": "0", "clip": "off", "metrics": "none",
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
        from hpsearch.engine.config import parse_arg

        flags = {name: kwargs.pop(name) for name in _TRAIN_OPTIONS if kwargs.get(name) not in (None, [])}
        for name in _TRAIN_OPTIONS:
            kwargs.pop(name, None)
        for flag in ("model_arg", "optimizer_arg"):  # --model-arg NAME=VALUE, repeated: one model_args table
            if flag in flags:
                flags[f"{flag}s"] = dict(parse_arg(text, flag.replace("_", "-")) for text in flags.pop(flag))
        return command(train_flags=flags, **kwargs)

    wrapper.__signature__ = inspect.Signature([*own, *extra])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *extra]}
    return wrapper


def _option(help_text: str, *flags: str, default: str | None = None, panel: str | None = None, **kwargs: Any) -> Any:
    """A Typer option with ``help_text`` (and ``[default: …]`` after it when given), in ``panel`` if any."""
    return typer.Option(*flags, help=_with_default(help_text, default), rich_help_panel=panel, **kwargs)


# --- options of several commands ---------------------------------------------------------------

StudyArgument = Annotated[str, typer.Argument(help="Study name (or a coarse-to-fine family's).")]
StorageOption = Annotated[str | None, _option("Optuna storage URL.", default=DEFAULT_STORAGE)]
JsonOption = Annotated[bool, _option("Print JSON instead of a table.", "--json")]
QuietOption = Annotated[bool, _option("No progress bar, only the result.", "--quiet", "-q")]
ConfigOption = Annotated[Path | None, _option("JSON or TOML file of settings (or an export); flags override it.")]
SeedOption = Annotated[int | None, _option("Seed of initialization and shuffling.", default=_shown(TrainConfig.seed),
                                           panel=_RUN)]
TimeoutOption = Annotated[float | None, _option("Stop starting trials after this many seconds.", default="no limit")]
HeartbeatOption = Annotated[int, _option("Seconds between a running trial's heartbeats; a trial silent for three is "
                                         "failed and retried (0: off).", panel=_RUN)]
DurableOption = Annotated[bool, _option("fsync every storage write (journal line, SQLite commit), so it survives a "
                                        "power cut, not only a killed process; about 0.4 ms a write.", "--durable",
                                        panel=_RUN)]
MaxRetriesOption = Annotated[int, _option("Times a trial of a killed worker is run again.", panel=_RUN)]
CheckpointDirOption = Annotated[Path | None, _option("Save each trial's state every epoch under this folder; a "
                                                     "retried trial continues from it.", panel=_RUN)]
ArtifactDirOption = Annotated[Path | None, _option(
    "Folder of the trials' Optuna artifacts (learning curves, checkpoints) for optuna-dashboard; run --artifacts and "
    "dashboard default to one beside a file storage, else ./hpsearch-artifacts.", panel=_RUN)]
BatchOption = Annotated[str | None, _option("Train K trials at once as one stacked model (a number, or auto).",
                                            panel=_RUN)]

# --- train -------------------------------------------------------------------------------------

CheckpointOption = Annotated[Path | None, _option("Save state here each epoch; resume from it when it exists.",
                                                  panel=_RUN)]

# --- lr-find -----------------------------------------------------------------------------------

StartLrOption = Annotated[float, _option("First learning rate of the sweep.")]
EndLrOption = Annotated[float, _option("Last learning rate of the sweep.")]
StepsOption = Annotated[int, _option("Batches in the sweep (at least 10).")]
SmoothingOption = Annotated[float, _option("EMA factor of the loss for the early stop.")]
MethodOption = Annotated[str, _option("Suggestion to use: valley, divergence or steepest.")]
PlotOption = Annotated[Path | None, _option("Save the curve with the suggestions marked (PNG, SVG, PDF).")]

# --- run ---------------------------------------------------------------------------------------

StrategyOption = Annotated[Strategy | None, _option("How trials are chosen.", default=StudySpec.strategy)]
StudyOption = Annotated[str | None, _option("Study name; default <dataset>-<strategy>.")]
NTrialsOption = Annotated[int | None, _option("Finished trials the study should hold (a re-run resumes).",
                                              default=_trials_default())]
ObjectiveOption = Annotated[str | None, _option(
    "Your Optuna objective fn(trial) -> float as file.py:fn or module:fn, run unchanged as each trial: it suggests "
    "its own params, reports and prunes itself (a spec's \\[space] declares them for grid and coarse-to-fine).")]
MetricOption = Annotated[str | None, _option(
    "val_loss (minimized), val_acc (maximized) or a name your --metrics reports (with --direction); with "
    "--objective, the name of its value.", default=f"{DEFAULT_METRIC}; with --objective {OBJECTIVE_METRIC}")]
DirectionOption = Annotated[Direction | None, _option(
    "Whether --metric (or --objective's value) is maximized or minimized; needed for a metric of your --metrics.",
    default="the built-in metric's own; minimize for --objective")]
PrunerOption = Annotated[Pruner | None, _option("Optuna pruner that stops bad trials early.",
                                                default=_pruner_default())]
PrunerWarmupOption = Annotated[int | None, _option(
    "Epochs every trial trains before the pruner may stop it; default 1, or for median the first epoch at which the "
    "complete trials ranked as they finished.")]
RunSeedOption = Annotated[int | None, _option("Seed of the sampler and of every trial's training.",
                                              default=_shown(StudySpec.seed))]
LrRangeOption = Annotated[tuple[float, float] | None, _option("LOW HIGH of the learning rate (log scale).",
                                                              default=_range_default("lr"))]
WdRangeOption = Annotated[tuple[float, float] | None, _option("LOW HIGH of the weight decay (log scale).",
                                                              default=_range_default("weight_decay"))]
GridPointsOption = Annotated[int | None, _option("Grid values per parameter (grid strategy).",
                                                 default=_shown(StudySpec.grid_points))]
LrFindOption = Annotated[bool | None, _option("Take the lr range from an LR range test (stored with the study).",
                                              "--lr-find/--no-lr-find",
                                              default="lr-find" if StudySpec.lr_find else "no-lr-find")]
SpecOption = Annotated[Path | None, _option("TOML study spec; flags override it.")]
JobsOption = Annotated[int, _option("Worker processes sharing the storage (CPU threads are split between them).",
                                    panel=_RUN)]
DevicesOption = Annotated[str | None, _option("Devices for the workers, round-robin, e.g. cuda:0,cuda:1.", panel=_RUN)]
ArtifactsOption = Annotated[bool, _option("Store each completed trial's learning-curve PNG (and final checkpoint) as "
                                          "Optuna artifacts, about 0.1 s a trial.", "--artifacts/--no-artifacts",
                                          panel=_RUN)]
PreflightOption = Annotated[bool, _option("Run the quick pre-flight checks (hpsearch check) before the first trial.",
                                          "--check/--no-check", panel=_RUN)]

# --- worker ------------------------------------------------------------------------------------

DeviceOption = Annotated[str | None, _option("auto, cpu, cuda, cuda:N or mps; default the study's.", panel=_RUN)]
ThreadsOption = Annotated[int | None, _option("CPU threads for torch in this worker.", panel=_RUN)]
IndexOption = Annotated[int | None, _option("Worker number, to seed its sampler apart.", hidden=True)]
TrustOption = Annotated[list[str] | None, _option(
    "A package (or file) whose entry points the stored spec may name; files inside the working directory are "
    "trusted already (repeatable).", panel=_RUN)]

# --- show, export, report, dashboard -------------------------------------------------------------

TopOption = Annotated[int, _option("How many trials to show.")]
TrialOption = Annotated[int | None, _option(
    "Show this trial in full: config, epochs, status and reason (of the last stage of a coarse-to-fine family "
    "unless STUDY names a stage).")]
OutFileOption = Annotated[Path, _option("JSON file to write.")]
ExportTopOption = Annotated[int, _option("Also list the best K trials under 'top'.")]
OutFolderOption = Annotated[Path, _option("Folder for the PNGs and index.md.")]
HostOption = Annotated[str, _option("Interface to bind; 127.0.0.1 keeps it on this machine.")]
PortOption = Annotated[int, _option("Port to listen on.")]
