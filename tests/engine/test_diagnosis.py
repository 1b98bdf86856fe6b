"""Trial labels from curves built to show each one, range advice on real studies, and the run's
pre-flight check."""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path

import optuna
import pytest
import torch
from torch.utils.data import TensorDataset
from typer.testing import CliRunner

from hpsearch.cli import app
from hpsearch.engine import diagnosis as diagnosis_module
from hpsearch.engine.config import TrainConfig
from hpsearch.engine.data import Data, StreamData
from hpsearch.engine.diagnosis import Diagnosis, diagnose, diagnose_reported
from hpsearch.engine.models import MODELS
from hpsearch.engine.task import ChanceLevel, chance_level
from hpsearch.engine.training import EpochMetrics, train
from hpsearch.search.advice import label_summary, range_advice
from hpsearch.search.objective import record_result
from hpsearch.search.records import RECORD_ATTR, TrialRecord, read_trial
from hpsearch.search.runner import run_study
from hpsearch.search.space import SearchSpace
from hpsearch.search.spec import StudySpec


def curve(train: list[float], val: list[float] | None = None, acc: list[float] | None = None,
          ) -> list[dict[str, float | None]]:
    accuracies: list[float | None] = list(acc) if acc else [None] * len(train)
    return [{"epoch": i + 1, "train_loss": t, "val_loss": v, "val_acc": a}
            for i, (t, v, a) in enumerate(zip(train, val or train, accuracies, strict=True))]


THREE_CLASSES = ChanceLevel(loss=math.log(3), accuracy=1 / 3)
TEN_CLASSES = ChanceLevel(loss=math.log(10), accuracy=0.1)
# The two dead networks: a CNN on 3 classes, a LeNet on 10 digits at lr 0.05.
DEAD_CNN = curve([2.73, 1.096, 1.099], [1.2, 1.1, 1.1], [0.39, 0.35, 0.32])
DEAD_LENET = curve([2.61, 2.33, 2.305], [2.31, 2.302, 2.303], [0.11, 0.1, 0.11])


@pytest.mark.parametrize(("history", "chance"), [(DEAD_CNN, THREE_CLASSES), (DEAD_LENET, TEN_CLASSES)],
                         ids=["cnn-3-classes", "lenet-10-classes"])
def test_a_run_that_fell_to_the_chance_level_is_stuck_whatever_it_fell_from(
        history: list[dict[str, float | None]], chance: ChanceLevel) -> None:
    diagnosis = diagnose(history, "completed", chance)
    assert diagnosis.label == "STUCK" and "chance level" in diagnosis.rule
    assert diagnose(history, "completed").label == "OK"  # no chance level known (a custom loss): no chance rule


@pytest.mark.parametrize(("history", "chance", "label"), [
    # STUCK_IMPROVEMENT 0.05: fell 4.5% / 5.5% of its first value
    (curve([2.0, 1.91]), None, "STUCK"),
    (curve([2.0, 1.89]), None, "OK"),
    # CLIMB_FACTOR 1.5: the last loss 1.55x / 1.45x its best
    (curve([4.0, 1.0, 1.55]), None, "DIVERGING"),
    (curve([4.0, 1.0, 1.45]), None, "OK"),
    # OSCILLATION_RISE 0.05: two rises of 6% / 4%
    (curve([3.0, 2.0, 2.12, 1.5, 1.59, 1.0]), None, "OSCILLATING"),
    (curve([3.0, 2.0, 2.08, 1.5, 1.56, 1.0]), None, "OK"),
    # OSCILLATION_FLOOR 0.01: two rises of 7-9% of themselves that are 0.035 / 0.025 against a first loss of 3
    (curve([3.0, 0.5, 0.535, 0.4, 0.435, 0.3]), None, "OSCILLATING"),
    (curve([3.0, 0.4, 0.425, 0.3, 0.325, 0.2]), None, "OK"),
    # OVERFIT_FACTOR 1.2: validation loss 1.25x / 1.15x its best while training loss falls
    (curve([2.0, 1.0, 0.5, 0.2], [2.0, 1.0, 1.1, 1.25]), None, "OVERFITTING"),
    (curve([2.0, 1.0, 0.5, 0.2], [2.0, 1.0, 1.1, 1.15]), None, "OK"),
    # OVERFIT_FLOOR 0.05: validation loss 1.3x / 2.1x its best 0.1, up 0.03 / 0.11 against a first loss of 2
    (curve([2.0, 1.0, 0.5, 0.2], [2.0, 0.1, 0.11, 0.13]), None, "OK"),
    (curve([2.0, 1.0, 0.5, 0.2], [2.0, 0.1, 0.15, 0.21]), None, "OVERFITTING"),
    # ... while training loss kept falling: it ends under / over its 0.5 at the validation loss's best epoch
    (curve([2.0, 1.0, 0.5, 0.45], [2.0, 1.0, 0.4, 0.6]), None, "OVERFITTING"),
    (curve([2.0, 1.0, 0.5, 0.55], [2.0, 1.0, 0.4, 0.6]), None, "OK"),
    # MEMORIZED 0.02: training loss ends at 1.5% / 2.5% of its first 2.0 with validation loss flat at 0.5
    (curve([2.0, 0.5, 0.1, 0.03], [2.0, 0.5, 0.5, 0.5]), None, "OVERFITTING"),
    (curve([2.0, 0.5, 0.1, 0.05], [2.0, 0.5, 0.5, 0.5]), None, "OK"),
    # ... and the validation loss above it by 0.11 / 0.09 against the first loss's floor of 0.1 (OVERFIT_FLOOR)
    (curve([2.0, 0.5, 0.1, 0.03], [2.0, 0.5, 0.2, 0.14]), None, "OVERFITTING"),
    (curve([2.0, 0.5, 0.1, 0.03], [2.0, 0.5, 0.2, 0.12]), None, "OK"),
    # CHANCE_LOSS_SHARE 0.05: the last training loss 4% / 6% under log(3)
    (curve([2.0, 0.96 * math.log(3)], acc=[0.9, 0.9]), THREE_CLASSES, "STUCK"),
    (curve([2.0, 0.94 * math.log(3)], acc=[0.9, 0.9]), THREE_CLASSES, "OK"),
    # CHANCE_ACCURACY_SHARE 0.1: accuracy 18% / 20% on 10 classes (ceiling 19%)
    (curve([2.0, 1.0], acc=[0.15, 0.18]), TEN_CLASSES, "STUCK"),
    (curve([2.0, 1.0], acc=[0.15, 0.20]), TEN_CLASSES, "OK"),
], ids=["stuck-in", "stuck-out", "climb-in", "climb-out", "oscillation-in", "oscillation-out",
        "oscillation-floor-in", "oscillation-floor-out", "overfit-in", "overfit-out", "overfit-floor-out",
        "overfit-floor-in", "overfit-train-falling-in", "overfit-train-falling-out", "memorized-in", "memorized-out",
        "gap-in", "gap-out", "chance-loss-in", "chance-loss-out", "chance-accuracy-in", "chance-accuracy-out"])
def test_each_threshold_sits_between_a_curve_just_inside_and_one_just_outside(
        history: list[dict[str, float | None]], chance: ChanceLevel | None, label: str) -> None:
    assert diagnose(history, "completed", chance).label == label


# Each curve shows two problems; the first (label, a word of its rule) wins by the documented order, and with its
# rule switched off (the constant set where it can never fire) the second comes out: the curve really shows both.
TWO_PROBLEMS = [
    pytest.param(curve([2.0, 1.0, 1.95]), None, ("DIVERGING", "climbed"), {"CLIMB_FACTOR": math.inf},
                 ("STUCK", "moved from"), id="diverging-over-stuck"),
    pytest.param(curve([3.0, 1.0, 1.2, 0.9, 1.1, 1.5]), None, ("DIVERGING", "climbed"), {"CLIMB_FACTOR": math.inf},
                 ("OSCILLATING", "rose by over"), id="diverging-over-oscillating"),
    pytest.param(curve([4.0, 1.0, 0.5, 0.8], [4.0, 0.5, 0.9, 1.5]), None, ("DIVERGING", "climbed"),
                 {"CLIMB_FACTOR": math.inf}, ("OVERFITTING", "validation loss rose"), id="diverging-over-overfitting"),
    pytest.param(curve([2.0, 1.5, 1.8, 1.5, 1.95]), None, ("STUCK", "moved from"), {"STUCK_IMPROVEMENT": -math.inf},
                 ("OSCILLATING", "rose by over"), id="stuck-over-oscillating"),
    pytest.param(curve([2.0, 1.97, 1.95, 1.92], [2.0, 1.0, 1.5, 2.0]), None, ("STUCK", "moved from"),
                 {"STUCK_IMPROVEMENT": -math.inf}, ("OVERFITTING", "validation loss rose"),
                 id="stuck-over-overfitting"),
    pytest.param(curve([2.0, 1.3, 1.5, 1.1, 1.3, 1.06]), THREE_CLASSES, ("STUCK", "chance level"),
                 {"CHANCE_LOSS_SHARE": -math.inf}, ("OSCILLATING", "rose by over"), id="chance-loss-over-oscillating"),
    pytest.param(curve([2.5, 1.5, 1.0, 0.5], [2.4, 2.0, 2.3, 2.6], [0.1, 0.15, 0.12, 0.11]), TEN_CLASSES,
                 ("STUCK", "chance level"), {"CHANCE_ACCURACY_SHARE": -math.inf},
                 ("OVERFITTING", "validation loss rose"), id="chance-accuracy-over-overfitting"),
    pytest.param(curve([3.0, 2.0, 2.2, 1.5, 1.7, 1.0], [3.0, 1.0, 1.2, 1.3, 1.4, 1.5]), None,
                 ("OSCILLATING", "rose by over"), {"OSCILLATION_RISE": math.inf},
                 ("OVERFITTING", "validation loss rose"), id="oscillating-over-overfitting"),
    pytest.param(curve([1.12, 1.10, 1.10]), THREE_CLASSES, ("STUCK", "moved from"), {"STUCK_IMPROVEMENT": -math.inf},
                 ("STUCK", "chance level"), id="barely-moved-over-chance-level"),
    pytest.param(curve([2.0, 0.5, 0.1, 0.03], [2.0, 0.2, 0.4, 0.6]), None, ("OVERFITTING", "memorized"),
                 {"MEMORIZED": 0.0}, ("OVERFITTING", "validation loss rose"), id="memorized-over-validation-rise"),
]


@pytest.mark.parametrize(("history", "chance", "first", "switch_off", "second"), TWO_PROBLEMS)
def test_a_curve_with_two_problems_gets_the_label_of_the_rule_tried_first(
        history: list[dict[str, float | None]], chance: ChanceLevel | None, first: tuple[str, str],
        switch_off: dict[str, float], second: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    diagnosis = diagnose(history, "completed", chance)
    assert (diagnosis.label, first[1] in diagnosis.rule) == (first[0], True), diagnosis
    for name, value in switch_off.items():
        monkeypatch.setattr(diagnosis_module, name, value)
    runner_up = diagnose(history, "completed", chance)
    assert (runner_up.label, second[1] in runner_up.rule) == (second[0], True), runner_up


@pytest.mark.parametrize(("history", "chance"), [
    pytest.param(curve([2.30, 2.29, 2.29, 2.28, 2.28]), None, id="stuck"),
    pytest.param(DEAD_LENET, TEN_CLASSES, id="chance-level"),
    pytest.param(curve([2.3, 1.0, 1.4, 0.8, 1.2, 0.7]), None, id="oscillating"),
    pytest.param(curve([2.3, 1.0, 0.5, 0.2, 0.05], [2.2, 1.1, 0.8, 1.0, 1.4]), None, id="overfitting"),
    pytest.param(curve([2.3]), TEN_CLASSES, id="one-epoch"),
])
def test_a_run_stopped_as_diverged_is_diverging_whatever_else_its_curve_shows(
        history: list[dict[str, float | None]], chance: ChanceLevel | None) -> None:
    assert diagnose(history, "completed", chance).label != "DIVERGING"  # the curve alone shows another label
    assert diagnose(history, "diverged", chance).label == "DIVERGING"


def test_a_single_epoch_is_too_short_to_judge_even_at_the_chance_level() -> None:
    at_chance = curve([2.3], acc=[0.1])
    assert diagnose(at_chance, "completed", TEN_CLASSES) == Diagnosis("OK", "one epoch: too short to judge")


def noisy_healthy_curve(seed: int, epochs: int = 20) -> list[dict[str, float | None]]:
    """A run that learns well, from log(10) towards 0.1 (train) and 0.12 (validation), with the epoch-to-epoch
    noise of real runs: 5% on the training loss (another shuffle each epoch), 15% on the validation loss (a few
    hundred validation samples) and 1% on the accuracy."""
    rng = random.Random(seed)
    history: list[dict[str, float | None]] = []
    for epoch in range(epochs):
        left = math.exp(-epoch / 3)  # the share of the way from the chance loss to the floor still to go
        history.append({"epoch": epoch + 1,
                        "train_loss": (0.1 + 2.2 * left) * (1 + rng.gauss(0, 0.05)),
                        "val_loss": (0.12 + 2.18 * left) * (1 + rng.gauss(0, 0.15)),
                        "val_acc": min(1.0, (0.96 - 0.86 * left) * (1 + rng.gauss(0, 0.01)))})
    return history


@pytest.mark.parametrize("chance", [TEN_CLASSES, None], ids=["chance-known", "chance-unknown"])
@pytest.mark.parametrize("seed", range(10), ids=lambda seed: f"seed-{seed}")
def test_a_healthy_run_with_realistic_noise_is_ok(seed: int, chance: ChanceLevel | None) -> None:
    diagnosis = diagnose(noisy_healthy_curve(seed), "completed", chance)
    assert diagnosis.label == "OK", diagnosis


def test_the_floors_are_shares_of_the_chance_loss_when_it_is_known() -> None:
    """A fast learner's first epoch (0.8) is far below where learning starts (log 10 = 2.3): a gap of 0.05 after it
    memorized its data is 6% of the first epoch's loss but 2% of the chance loss, noise of a model that generalizes."""
    fast = curve([0.8, 0.1, 0.03, 0.01], [0.2, 0.08, 0.06, 0.06], [0.95, 0.98, 0.99, 0.99])
    assert diagnose(fast, "completed").label == "OVERFITTING"
    assert diagnose(fast, "completed", TEN_CLASSES).label == "OK"


def test_the_chance_level_comes_from_the_task(digits: Data) -> None:
    classes = torch.bincount(digits.y_train, minlength=10).double() / digits.n_train
    level = chance_level(TrainConfig(), digits)
    assert level is not None and level.loss == pytest.approx(float(-(classes * classes.log()).sum()))
    assert level.loss == pytest.approx(math.log(10), rel=0.01)
    assert level.accuracy == pytest.approx(float(torch.bincount(digits.y_val).max()) / digits.n_val)
    custom = chance_level(TrainConfig(loss="mylosses:ce"), digits)
    assert custom == ChanceLevel(loss=None, accuracy=level.accuracy)  # a custom loss: only the accuracy is known
    values = Data(digits.x_train, digits.y_train.float() * 2, digits.x_val, digits.y_val.float(), 1, "values",
                  classification=False)
    assert chance_level(TrainConfig(loss="mse"), values) == ChanceLevel(loss=pytest.approx(
        float((digits.y_train.float() * 2).var(unbiased=False))))
    assert chance_level(TrainConfig(loss="mylosses:ce"), values) is None
    streamed = StreamData(TensorDataset(digits.x_train, digits.y_train), TensorDataset(digits.x_val, digits.y_val),
                          10, "streamed", digits.sample_shape)
    assert chance_level(TrainConfig(), streamed) == ChanceLevel(loss=math.log(10), accuracy=0.1)


def test_a_trial_record_is_diagnosed_against_its_task_chance_level(digits: Data) -> None:
    result = train(TrainConfig(epochs=1, hidden=(16,)), digits)
    assert result.chance == chance_level(TrainConfig(), digits)
    epochs = [EpochMetrics(epoch=e["epoch"], train_loss=e["train_loss"], val_loss=e["val_loss"], val_acc=e["val_acc"],
                           lr=0.05, grad_norm=1.0, samples_per_s=1.0, seconds=1.0) for e in DEAD_LENET]
    dead = dataclasses.replace(result, history=epochs, chance=TEN_CLASSES)
    recorded = record_result(TrialRecord(), dead, "val_loss")
    assert recorded.diagnosis is not None and recorded.diagnosis["label"] == "STUCK"


def test_the_label_counts_take_every_trial_though_stages_repeat_their_numbers() -> None:
    trials = []
    for labels in (["OK", "OVERFITTING", "OK"], ["OK", "DIVERGING"]):  # two stages, each numbering from 0
        stage = optuna.create_study()
        for label in labels:
            record = TrialRecord(diagnosis={"label": label, "rule": "made for the test"})
            stage.add_trial(optuna.trial.create_trial(value=1.0, params={"lr": 0.5}, user_attrs={
                RECORD_ATTR: record.to_dict()}, distributions={"lr": optuna.distributions.FloatDistribution(1e-5, 1)}))
        trials += stage.trials
    assert label_summary(trials) == "5 trials diagnosed: 1 diverging (all at lr >= 0.5), 1 overfitting, 3 ok"


@pytest.mark.parametrize(("history", "status", "label"), [
    (curve([2.3, 1.2, 0.6, 0.4, 0.3], [2.2, 1.3, 0.7, 0.5, 0.45]), "completed", "OK"),
    (curve([2.3, 1.0, 5.0, 40.0]), "completed", "DIVERGING"),
    (curve([2.3, float("nan")]), "diverged", "DIVERGING"),
    ([{"epoch": 1, "train_loss": None, "val_loss": None}], "diverged", "DIVERGING"),  # as stored: JSON has no NaN
    (curve([2.30, 2.29, 2.29, 2.28, 2.28]), "completed", "STUCK"),
    (curve([2.3, 1.0, 1.4, 0.8, 1.2, 0.7], [2.3, 1.1, 1.3, 0.9, 1.1, 0.8]), "completed", "OSCILLATING"),
    (curve([2.3, 1.0, 0.5, 0.2, 0.05], [2.2, 1.1, 0.8, 1.0, 1.4]), "completed", "OVERFITTING"),
])
def test_each_label_comes_out_for_a_curve_that_shows_it(history: list[dict[str, float]], status: str,
                                                        label: str) -> None:
    diagnosis = diagnose(history, status)
    assert diagnosis.label == label and diagnosis.rule


def grid_study(low: float, high: float, digits: Data, tmp_path: Path) -> optuna.Study:
    space = SearchSpace.from_mapping({"lr": {"low": low, "high": high, "log": True}})
    spec = StudySpec(name=f"grid-{low:g}", strategy="grid", grid_points=5, pruner="none", space=space,
                     train=TrainConfig(epochs=3, hidden=(32,)))
    return run_study(spec, f"sqlite:///{tmp_path / 'hp.db'}", data=digits)


def test_edge_advice_fires_for_a_range_far_too_low(digits: Data, tmp_path: Path) -> None:
    study = grid_study(1e-7, 1e-5, digits, tmp_path)
    advice = range_advice(study.trials, {"lr": {"low": 1e-7, "high": 1e-5, "log": True}}, maximize=False)
    assert len(advice) == 1 and "top 10% of the lr range: try --lr-range 1e-06 0.0001" in advice[0]


def test_edge_advice_stays_silent_for_a_well_centred_range(digits: Data, tmp_path: Path) -> None:
    study = grid_study(1e-5, 1.0, digits, tmp_path)
    assert range_advice(study.trials, {"lr": {"low": 1e-5, "high": 1.0, "log": True}}, maximize=False) == []
    assert all(read_trial(t).diagnosis is not None for t in study.trials)


def test_divergence_advice_names_the_lr_above_which_trials_diverge(digits: Data, tmp_path: Path) -> None:
    study = grid_study(1e-3, 100.0, digits, tmp_path)
    advice = range_advice(study.trials, {"lr": {"low": 1e-3, "high": 100.0, "log": True}}, maximize=False)
    assert any("trials diverged, all at lr >=" in line and "try --lr-range 0.001" in line for line in advice)


def test_run_stops_on_a_failed_preflight_check_and_writes_nothing(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from test_checks import DetachedHead

    monkeypatch.setitem(MODELS, "detached-head", DetachedHead)
    storage = f"sqlite:///{tmp_path / 'hp.db'}"
    runner = CliRunner()
    args = ["run", "--model", "detached-head", "--hidden", "32", "--epochs", "1", "--n-trials", "1", "--storage",
            storage, "--quiet"]
    done = runner.invoke(app, args)
    assert done.exit_code == 2
    assert done.stderr.startswith("error: pre-flight check 'gradients' failed: max relative error")
    assert optuna.get_all_study_names(storage) == []
    assert runner.invoke(app, [*args, "--no-check"]).exit_code == 0


@pytest.mark.parametrize(("values", "maximize", "label"), [
    ([0.2, 0.6, 0.8, 0.9, 0.92], True, "OK"),
    ([2.3, 1.1, 0.6, 0.45, 0.4], False, "OK"),
    ([0.1, 0.1, 0.1, 0.1], True, "STUCK"),
    ([0.5, 0.9, 0.3, 0.2], True, "DIVERGING"),
    ([1.0, 0.5, math.nan, 0.4], False, "DIVERGING"),
    ([0.3, 0.9, 0.95, 0.7, 0.6], True, "OVERFITTING"),
    ([1.0, 0.4, 0.6, 0.3, 0.5, 0.2], False, "OSCILLATING"),
], ids=["climbs", "falls", "flat", "ends-below-start", "not-finite", "gives-back", "swings"])
def test_a_reported_curve_is_labelled_against_its_own_gain(values: list[float], maximize: bool, label: str) -> None:
    diagnosis = diagnose_reported(values, maximize)
    assert diagnosis is not None and diagnosis.label == label


def test_a_reported_curve_too_short_to_judge_has_no_label() -> None:
    assert diagnose_reported([0.9, 0.1], maximize=False) is None
    assert diagnose_reported([0.9, 0.5, 0.1], maximize=False) is not None
