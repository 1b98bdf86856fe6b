"""hpsearch report: every figure as a real PNG of a readable size, and an index.md that links them all."""

from __future__ import annotations

import struct
from pathlib import Path

import optuna
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial
from typer.testing import CliRunner

from hpsearch.cli import app
from hpsearch.engine.config import TrainConfig
from hpsearch.engine.data import Data
from hpsearch.presentation import report as study_report
from hpsearch.presentation.figures import StageRange, plot_landscape
from hpsearch.presentation.report import full_length, landscape_axis, study_note, write_report
from hpsearch.search.records import RECORD_ATTR, TrialRecord
from hpsearch.search.runner import run_study
from hpsearch.search.space import SearchSpace
from hpsearch.search.spec import StudySpec
from hpsearch.search.storages import open_storage

FIGURES = ["history.png", "landscape.png", "learning_curves.png", "importances.png", "lr_range_test.png"]


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG header (IHDR)."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory, digits: Data) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'hp.db'}"
    run_study(StudySpec(name="small", strategy="random", n_trials=6, pruner="none", lr_find=True,
                        train=TrainConfig(epochs=3, hidden=(32,))), url, data=digits)
    # Every lr of this one blows up: all its trials end pruned as diverged.
    doomed = SearchSpace.from_mapping({"lr": {"low": 20.0, "high": 50.0, "log": True}})
    run_study(StudySpec(name="doomed", strategy="random", n_trials=3, space=doomed,
                        train=TrainConfig(epochs=3, hidden=(32,))), url, data=digits)
    return url


def test_a_finished_study_gets_every_figure_and_an_index_linking_them(storage: str, tmp_path: Path) -> None:
    report = write_report("small", open_storage(storage), tmp_path / "out")
    assert sorted(path.name for path in report.figures.values()) == sorted(FIGURES) and not report.missing
    for name in FIGURES:
        path = tmp_path / "out" / name
        width, height = png_size(path)
        assert 600 <= width <= 1400 and 300 <= height <= 1000, (name, width, height)
        assert path.stat().st_size > 10_000, name  # a drawn figure, not an empty canvas
    index = (tmp_path / "out" / "index.md").read_text()
    for name in FIGURES:
        assert f"]({name})" in index
    best = min((t for t in optuna.load_study(study_name="small", storage=storage).trials if t.value is not None),
               key=lambda t: t.value)
    assert f"**{best.value:.4g}**" in index and f'"lr": {best.params["lr"]}' in index


def test_a_study_of_only_pruned_trials_reports_and_says_what_is_missing(storage: str, tmp_path: Path) -> None:
    states = {t.state for t in optuna.load_study(study_name="doomed", storage=storage).trials}
    assert states == {optuna.trial.TrialState.PRUNED}
    report = write_report("doomed", open_storage(storage), tmp_path / "out")
    assert {"history", "learning_curves"} <= set(report.figures)
    assert set(report.missing) >= {"importances", "lr_range_test"}
    index = (tmp_path / "out" / "index.md").read_text()
    assert "No trial completed" in index
    assert "- Parameter importances: needs at least 3 complete trials; this study has 0." in index
    for path in report.figures.values():
        assert f"]({path.name})" in index and png_size(path)[0] >= 600


def test_report_command_and_its_bad_input(storage: str, tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["report", "small", "--storage", storage, "--out", str(tmp_path / "r")])
    assert done.exit_code == 0 and "with 5 figures" in done.stdout
    (tmp_path / "file").write_text("x")
    bad = runner.invoke(app, ["report", "small", "--storage", storage, "--out", str(tmp_path / "file")])
    assert bad.exit_code == 2 and bad.stderr.strip() == f"error: not a folder (--out {tmp_path / 'file'})"
    missing = runner.invoke(app, ["report", "nope", "--storage", storage, "--out", str(tmp_path / "r2")])
    assert missing.exit_code == 2 and "no study named 'nope'" in missing.stderr
    assert not (tmp_path / "r2").exists()


def test_study_note_names_the_strategy_the_lr_test_and_the_best_config(storage: str) -> None:
    note = study_note("small", open_storage(storage))
    assert "strategy **random**" in note and "LR range test: suggested lr" in note
    assert "Best: trial" in note and '"epochs": 3' in note


def stage_trials(epochs: int, values: list[float]) -> list[FrozenTrial]:
    """Trials of one stage numbered from 0, as each stage of a coarse-to-fine family numbers its own."""
    study = optuna.create_study()
    for value in values:
        record = TrialRecord(config=TrainConfig(epochs=epochs).to_dict())
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs={RECORD_ATTR: record.to_dict()}))
    return study.trials


def test_the_importances_take_the_full_length_trials_of_every_stage_though_their_numbers_repeat() -> None:
    coarse, fine = stage_trials(1, [0.5, 0.4, 0.3]), stage_trials(3, [0.2, 0.1])
    full, epochs = full_length(coarse + fine)
    assert epochs == 3 and full == fine


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> dict[str, Figure]:
    """The figures write_report draws, by file name, before they are saved and closed."""
    figures: dict[str, Figure] = {}
    save = study_report._save

    def keep(figure: Figure, path: Path) -> Path:
        figure.canvas.draw()  # lays out the legend, as saving does
        figures[path.name] = figure
        return save(figure, path)

    monkeypatch.setattr(study_report, "_save", keep)
    return figures


def test_importances_of_too_few_trials_say_so_in_the_figure_and_the_index(storage: str, tmp_path: Path,
                                                                          drawn: dict[str, Figure]) -> None:
    write_report("small", open_storage(storage), tmp_path / "out")
    title = drawn["importances.png"].axes[0].get_title()
    assert title.startswith("Parameter importances (6 complete trials of 3 epochs)")
    assert "too few to trust: fewer than 20 complete trials" in title
    index = (tmp_path / "out" / "index.md").read_text()
    assert "Drawn from 6 complete trials, too few to trust: fewer than 20 complete trials" in index


def test_the_landscape_legend_sits_outside_the_axes(storage: str, tmp_path: Path, drawn: dict[str, Figure]) -> None:
    write_report("small", open_storage(storage), tmp_path / "out")
    figure = drawn["landscape.png"]
    ax = figure.axes[0]
    legend = ax.get_legend()
    assert legend is not None and not legend.get_window_extent().overlaps(ax.get_window_extent())
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("learning rate (log)", "weight decay (log)")


def test_stages_of_one_range_share_one_box_that_names_them_all() -> None:
    stages = [StageRange("1-coarse", (1e-5, 1e-1), (1e-6, 1e-1)), StageRange("2-fine", (1e-3, 1e-2), (1e-4, 1e-2)),
              StageRange("3-fine", (1e-3, 1e-2), (1e-4, 1e-2))]
    ax = plot_landscape([], "val_loss", False, stages).axes[0]
    boxes = [patch for patch in ax.patches if isinstance(patch, Rectangle)]
    assert [box.get_label() for box in boxes] == ["range of 1-coarse", "range of 2-fine and 3-fine (the same)"]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [box.get_label() for box in boxes]


def test_without_weight_decay_the_landscape_draws_lr_against_the_other_searched_parameter(
        digits: Data, tmp_path: Path, drawn: dict[str, Figure]) -> None:
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    space = SearchSpace.from_mapping({"lr": {"low": 1e-4, "high": 1e-1, "log": True},
                                      "label_smoothing": {"low": 0.0, "high": 0.2}})
    run_study(StudySpec(name="smooth", strategy="random", n_trials=3, pruner="none", space=space,
                        train=TrainConfig(epochs=1, hidden=(16,))), url, data=digits)
    report = write_report("smooth", open_storage(url), tmp_path / "out")
    assert "landscape" in report.figures and "landscape" not in report.missing
    ax = drawn["landscape.png"].axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_yscale()) == ("learning rate (log)", "label smoothing", "linear")
    assert "lr is drawn against label_smoothing" in (tmp_path / "out" / "index.md").read_text()


@pytest.mark.parametrize(("importances", "expected"), [
    ({"dropout": 0.2, "lr": 0.5, "warmup": 0.3}, "warmup"),  # the most important one beside lr
    (None, "warmup"),  # no importances: the float one before the categorical one
])
def test_the_landscape_axis_is_the_most_important_parameter_searched_with_lr(importances: dict[str, float] | None,
                                                                              expected: str) -> None:
    distributions = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "warmup": FloatDistribution(0.0, 0.2),
                     "dropout": CategoricalDistribution([0.0, 0.5])}
    trial = optuna.trial.create_trial(params={"lr": 1e-3, "warmup": 0.1, "dropout": 0.5},
                                      distributions=distributions, value=0.5)
    ranked = dict(sorted((importances or {}).items(), key=lambda item: -item[1]))
    assert landscape_axis([trial], ranked or None) == expected


def reporting_objective(trial: optuna.trial.BaseTrial) -> float:
    """A user's objective of two params that reports a falling curve, as Optuna's examples do."""
    lr = trial.suggest_float("lr", 1e-3, 1e-1, log=True)
    width = trial.suggest_int("width", 4, 64)
    value = 1.0
    for step in range(4):
        value = abs(lr - 0.01) + 1 / width + 0.5 ** step
        trial.report(value, step)
    return value


def test_a_study_of_the_users_objective_reports_its_history_curves_importances_and_best_params(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'hp.db'}")
    run_study(StudySpec(name="own", objective=reporting_objective, strategy="random", pruner="none", n_trials=5),
              storage)
    written = write_report("own", storage, tmp_path / "report")
    assert {"history", "learning_curves", "importances", "landscape"} <= set(written.figures)
    index = written.index.read_text()
    assert "metric: value (minimize)" in index and '"width":' in index  # the best params, as it has no config
