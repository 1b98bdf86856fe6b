from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import TrialState, create_trial

from hpsearch.config import TrainConfig
from hpsearch.data import Data
from hpsearch.export import export_best
from hpsearch.search import objective as objective_module
from hpsearch.search import runner as runner_module
from hpsearch.search.coarse_to_fine import narrow
from hpsearch.search.runner import finished_trials, run_study
from hpsearch.search.space import ParamSpec, SearchSpace
from hpsearch.spec import CoarseToFine, StudySpec
from hpsearch.storage import open_storage
from hpsearch.training import train

PLAN = CoarseToFine(stages=3, coarse_trials=5, fine_trials=3, keep=2, margin=0.2)
SPEC = StudySpec(name="c2f", strategy="coarse-to-fine", coarse_to_fine=PLAN, pruner="none",
                 train=TrainConfig(epochs=3, hidden=(64,)))
STAGES = ["c2f/1-coarse", "c2f/2-fine", "c2f/3-fine"]


def trial(value: float, **params: object) -> optuna.trial.FrozenTrial:
    distributions = {"lr": FloatDistribution(1e-5, 1e-1, log=True), "warmup": FloatDistribution(0.0, 0.5),
                     "schedule": CategoricalDistribution(["constant", "cosine", "wsd"])}
    return create_trial(value=value, params=params, distributions={k: distributions[k] for k in params})


def test_narrow_shrinks_to_the_best_trials_plus_a_margin() -> None:
    space = SearchSpace((ParamSpec("lr", 1e-5, 1e-1, log=True), ParamSpec("warmup", 0.0, 0.5),
                         ParamSpec("schedule", choices=("constant", "cosine", "wsd"))))
    trials = [trial(0.1, lr=1e-3, warmup=0.1, schedule="cosine"), trial(0.2, lr=1e-2, warmup=0.2, schedule="wsd"),
              trial(0.9, lr=1e-5, warmup=0.5, schedule="constant")]
    narrowed = narrow(space, trials, StudyDirection.MINIMIZE, keep=2, margin=0.5)
    lr, warmup, schedule = narrowed.params
    assert (lr.low, lr.high) == (pytest.approx(10**-3.5), pytest.approx(10**-1.5)) and lr.log
    assert (warmup.low, warmup.high) == (0.0, pytest.approx(0.45))  # clamped at the old low
    assert schedule.choices == ("cosine", "wsd")
    maximized = narrow(space, trials, StudyDirection.MAXIMIZE, keep=1, margin=0.0)
    assert maximized.params[0].low == 1e-5 and maximized.params[0].high == pytest.approx(10**-4.995)
    assert maximized.params[2].choices == ("constant",)
    assert narrow(space, [], StudyDirection.MINIMIZE, keep=2, margin=0.5) == space


def test_coarse_to_fine_runs_every_stage_narrows_and_exports(tmp_path: Path, digits: Data) -> None:
    url = f"sqlite:///{tmp_path / 'c2f.db'}"
    run_study(SPEC, url, data=digits)
    storage = open_storage(url)
    studies = [optuna.load_study(study_name=name, storage=storage) for name in STAGES]
    assert [len(s.trials) for s in studies] == [5, 3, 3]

    coarse = studies[0]
    lr_test = coarse.user_attrs["hpsearch"]["lr_range_test"]
    low, high = lr_test["prior"]
    assert coarse.trials[0].params["lr"] == pytest.approx(lr_test["suggestion"])  # the enqueued start
    assert coarse.user_attrs["hpsearch"]["spec"]["train"]["epochs"] == 1  # a third of 3
    assert coarse.user_attrs["hpsearch"]["spec"]["space"]["lr"] == {"low": low, "high": high, "log": True}

    spaces = [s.user_attrs["hpsearch"]["spec"]["space"] for s in studies]
    for before, after in pairwise(spaces):
        for name in ("lr", "weight_decay"):
            assert before[name]["low"] <= after[name]["low"] < after[name]["high"] <= before[name]["high"]
            assert after[name]["high"] / after[name]["low"] < before[name]["high"] / before[name]["low"]
    assert studies[1].user_attrs["hpsearch"]["spec"]["train"]["epochs"] == 3

    record = export_best("c2f", storage)
    assert record["stages"] == STAGES
    everything = [t for s in studies for t in s.get_trials(states=(TrialState.COMPLETE,))]
    assert record["value"] == min(t.value for t in everything)
    assert train(TrainConfig.from_mapping(record["config"]), digits).val_loss == record["value"]


def test_a_killed_run_resumes_at_its_stage(tmp_path: Path, digits: Data, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'c2f.db'}"
    calls = {"n": 0}

    def killed_in_stage_two(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 7:  # 5 coarse trials, then the second fine one
            raise KeyboardInterrupt
        return train(*args, **kwargs)

    monkeypatch.setattr(objective_module, "train", killed_in_stage_two)
    with pytest.raises(KeyboardInterrupt):
        run_study(SPEC, url, data=digits)
    monkeypatch.undo()

    def no_second_lr_test(*args: object, **kwargs: object) -> None:
        raise AssertionError("the stored LR range test must be reused")

    monkeypatch.setattr(runner_module, "lr_range_test", no_second_lr_test)
    run_study(SPEC, url, data=digits)
    storage = open_storage(url)
    studies = [optuna.load_study(study_name=name, storage=storage) for name in STAGES]
    assert len(studies[0].trials) == 5  # stage 1 was not run again
    assert [len(finished_trials(s)) for s in studies] == [5, 3, 3]


def test_lr_find_takes_the_lr_range_from_the_test_for_any_strategy(
    tmp_path: Path, digits: Data, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'lr.db'}"
    spec = StudySpec(strategy="tpe", n_trials=3, lr_find=True, pruner="none", train=TrainConfig(epochs=2, hidden=(64,)))
    study = run_study(spec, url, data=digits)
    info = study.user_attrs["hpsearch"]
    assert info["spec"]["space"]["lr"]["low"] == info["lr_range_test"]["prior"][0]
    assert info["spec"]["space"]["lr"]["high"] == info["lr_range_test"]["prior"][1]
    assert study.trials[0].params["lr"] == pytest.approx(info["lr_range_test"]["suggestion"])

    monkeypatch.setattr(runner_module, "lr_range_test", lambda *a, **k: pytest.fail("test re-run"))
    assert len(run_study(spec.replace(n_trials=4), url, data=digits).trials) == 4


def test_a_test_that_never_diverged_leaves_the_given_lr_range(digits: Data) -> None:
    from hpsearch.lr_finder import lr_range_test
    from hpsearch.search.coarse_to_fine import with_lr_prior

    calm = lr_range_test(TrainConfig(), digits, start_lr=1e-7, end_lr=1e-5, steps=20)
    assert calm.diverged_at is None and calm.suggestions.blowup is None
    spec = StudySpec(space=SearchSpace((ParamSpec("lr", 1e-5, 1e-1, log=True),)))
    assert with_lr_prior(spec, calm) == spec
    found = lr_range_test(TrainConfig(), digits)
    assert with_lr_prior(spec, found).space.params[0].high == pytest.approx(found.prior()[1])


def test_a_model_argument_int_range_narrows_to_whole_numbers_that_hold_the_best() -> None:
    space = SearchSpace.from_mapping({"model_args": {"width": {"low": 4, "high": 64}}})
    distribution = IntDistribution(4, 64)
    trials = [create_trial(value=v, params={"model_args.width": w}, distributions={"model_args.width": distribution})
              for v, w in ((0.1, 12), (0.2, 14), (0.9, 60))]
    [width] = narrow(space, trials, StudyDirection.MINIMIZE, keep=2, margin=0.05).params
    assert width.distribution() == IntDistribution(9, 17)  # 12 and 14 widened by 0.05 x 60, outward
    assert SearchSpace.from_mapping(SearchSpace((width,)).to_dict()).distributions() == {
        "model_args.width": IntDistribution(9, 17)}  # a stage's stored spec reads back the same
