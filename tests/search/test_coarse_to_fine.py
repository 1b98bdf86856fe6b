from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import TrialState, create_trial

from hpsearch.engine.config import TrainConfig
from hpsearch.engine.data import Data
from hpsearch.engine.lr_finder import lr_range_test
from hpsearch.engine.training import train
from hpsearch.presentation.export import export_best
from hpsearch.presentation.notes import family_counts, stage_lines, study_note
from hpsearch.search import objective as objective_module
from hpsearch.search import runner as runner_module
from hpsearch.search.coarse_to_fine import (
    carried_trials,
    coarse_spec,
    fine_spec,
    first_trials,
    narrow,
    ranked,
)
from hpsearch.search.records import (
    RECORD_ATTR,
    StudyRecord,
    TrialRecord,
    is_carried,
    own_trials,
    read_record,
    read_trial,
    write_record,
)
from hpsearch.search.runner import StudyMismatchError, finished_trials, run_study
from hpsearch.search.space import ParamSpec, SearchSpace
from hpsearch.search.spec import CoarseToFine, StudySpec
from hpsearch.search.storages import open_storage
from hpsearch.search.strategies import make_sampler, tpe_startup_trials
from hpsearch.search.summary import best_with_study, counts_by_state, load_family
from hpsearch.search.trusted_epoch import trusted_epoch
from hpsearch.status import Status

PLAN = CoarseToFine(stages=3, coarse_trials=5, fine_trials=3, keep=2, margin=0.2)
SPEC = StudySpec(name="c2f", strategy="coarse-to-fine", coarse_to_fine=PLAN, pruner="none",
                 train=TrainConfig(epochs=3, hidden=(64,)))
STAGES = ["c2f/1-coarse", "c2f/2-fine", "c2f/3-fine"]


def trial(value: float, **params: object) -> optuna.trial.FrozenTrial:
    distributions = {"lr": FloatDistribution(1e-5, 1e-1, log=True), "warmup": FloatDistribution(0.0, 0.5),
                     "schedule": CategoricalDistribution(["constant", "cosine", "wsd"])}
    return create_trial(value=value, params=params, distributions={k: distributions[k] for k in params})


STUDY_LR = SearchSpace((ParamSpec("lr", 1e-5, 1e-1, log=True),))


@pytest.mark.parametrize(("within", "low"), [(None, 1e-3), (STUDY_LR, 10**-3.5)],
                         ids=["held in the range it had", "moves past its edge within the study's space"])
def test_a_range_whose_best_trials_reach_its_edge_moves_past_it_only_within_the_given_space(
        within: SearchSpace | None, low: float) -> None:
    prior = SearchSpace((ParamSpec("lr", 1e-3, 1e-1, log=True),))  # the LR prior, say, narrower than the study's
    trials = [trial(0.1, lr=1e-3), trial(0.2, lr=2e-3), trial(0.9, lr=5e-2)]
    (lr,) = narrow(prior, trials, StudyDirection.MINIMIZE, keep=2, margin=0.5, within=within).params
    assert lr.low == pytest.approx(low) and lr.high == pytest.approx(2e-3 * 10**0.5)


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
    # One best trial and no margin still leave a range: a sliver of half a hundredth of a decade on a log scale
    # (1e-5 x 10**0.005 = 1.01158e-5) and of half a percent of the range otherwise (0.5 - 0.0025), within the old.
    maximized = narrow(space, trials, StudyDirection.MAXIMIZE, keep=1, margin=0.0)
    lr, warmup, schedule = maximized.params
    assert lr.low == 1e-5 and lr.high == pytest.approx(1.01158e-5, rel=1e-5)
    assert (warmup.low, warmup.high) == (pytest.approx(0.4975), 0.5)
    assert schedule.choices == ("constant",)
    assert narrow(space, [], StudyDirection.MINIMIZE, keep=2, margin=0.5) == space


def test_coarse_to_fine_runs_every_stage_narrows_and_exports(tmp_path: Path, digits: Data) -> None:
    url = f"sqlite:///{tmp_path / 'c2f.db'}"
    run_study(SPEC, url, data=digits)
    storage = open_storage(url)
    studies = [optuna.load_study(study_name=name, storage=storage) for name in STAGES]
    assert [len(own_trials(s)) for s in studies] == [5, 3, 3]
    assert all(is_carried(t) for s in studies[1:] for t in s.trials[:-3])  # carried first, then its own

    coarse = studies[0]
    lr_test = coarse.user_attrs["hpsearch"]["lr_range_test"]
    low, high = lr_test["prior"]
    first = [t.params["lr"] for t in coarse.trials[:3]]  # the enqueued start: the suggestion and its neighbours
    assert first[0] == pytest.approx(lr_test["suggestion"]) and low <= min(first) < max(first) <= high
    assert coarse.user_attrs["hpsearch"]["spec"]["train"]["epochs"] == 3  # full length: hyperband cuts trials short
    assert coarse.user_attrs["hpsearch"]["spec"]["study"]["pruner"] == "hyperband"
    assert coarse.user_attrs["hpsearch"]["spec"]["space"]["lr"] == {"low": low, "high": high, "log": True}

    spaces = [s.user_attrs["hpsearch"]["spec"]["space"] for s in studies]
    for stage, (before, after) in enumerate(pairwise(spaces), start=2):
        for name in ("lr", "weight_decay"):
            assert before[name]["low"] <= after[name]["low"] < after[name]["high"] <= before[name]["high"]
            ratio, was = after[name]["high"] / after[name]["low"], before[name]["high"] / before[name]["low"]
            # Stage 2 narrows the coarse ranges; later stages may already be at the margin's width.
            assert ratio < was if stage == 2 else ratio <= was
    assert studies[1].user_attrs["hpsearch"]["spec"]["train"]["epochs"] == 3

    record = export_best("c2f", storage)
    assert record["stages"] == STAGES
    everything = [t for s in studies for t in own_trials(s, states=(TrialState.COMPLETE,))]
    assert record["value"] == min(t.value for t in everything)
    _, best_trial = best_with_study(studies, 1)[0]
    assert not is_carried(best_trial) and record["trial"] == best_trial.number
    assert train(TrainConfig.from_mapping(record["config"]), digits).val_loss == record["value"]


@pytest.mark.parametrize("plan", [CoarseToFine(), PLAN, CoarseToFine(stages=2, coarse_trials=3, fine_trials=2)],
                         ids=["default", "test-plan", "two-stages"])
@pytest.mark.parametrize("n_trials", [3, 7, 12, 30, 101])
def test_n_trials_is_shared_between_the_stages_as_the_plan_shares_its_own(plan: CoarseToFine, n_trials: int) -> None:
    sized = plan.sized(n_trials)
    assert sized.total_trials == n_trials and sized.coarse_trials >= 1 and sized.fine_trials >= 1
    assert sized.stages == plan.stages and sized.keep == plan.keep
    assert plan.sized(plan.total_trials) == plan
    # The coarse stage's share stays near the plan's (what the fine stages cannot share evenly goes to it).
    assert abs(sized.coarse_trials / n_trials - plan.coarse_trials / plan.total_trials) <= plan.stages / n_trials


def test_a_coarse_to_fine_run_of_n_trials_finishes_n_trials_over_its_stages(tmp_path: Path, digits: Data) -> None:
    url = f"sqlite:///{tmp_path / 'c2f.db'}"
    run_study(SPEC.replace(n_trials=7), url, data=digits)  # PLAN holds 11: 5 coarse, 3 and 3 fine
    family = load_family("c2f", open_storage(url))
    assert [len(own_trials(s)) for s in family] == [3, 2, 2]
    assert sum(family_counts(family).values()) == 7
    # Its stages were planned from 7: a smaller total would re-size stages already run, so it is refused.
    with pytest.raises(StudyMismatchError, match=r"was planned for n_trials=7 \(3 coarse, 2 a fine stage\), not 5"):
        run_study(SPEC.replace(n_trials=5), url, data=digits)
    assert [len(s.trials) for s in load_family("c2f", open_storage(url))] == [len(s.trials) for s in family]
    run_study(SPEC.replace(n_trials=7), url, data=digits)  # the same command: nothing left to run, no error
    assert sum(family_counts(load_family("c2f", open_storage(url))).values()) == 7


def test_a_larger_n_trials_for_a_finished_coarse_to_fine_run_goes_on_in_its_last_stage(tmp_path: Path,
                                                                                        digits: Data) -> None:
    url = f"sqlite:///{tmp_path / 'c2f.db'}"
    run_study(SPEC.replace(n_trials=7), url, data=digits)
    before = load_family("c2f", open_storage(url))
    run_study(SPEC.replace(n_trials=11), url, data=digits)
    family = load_family("c2f", open_storage(url))
    assert [len(own_trials(s)) for s in family] == [3, 2, 6]  # the stored plan's 3 and 2, and 4 more in the last
    assert sum(family_counts(family).values()) == 11
    assert read_record(family[-1]).spec["space"] == read_record(before[-1]).spec["space"]  # the ranges it narrowed to
    assert [t.params for t in family[1].trials] == [t.params for t in before[1].trials]  # earlier stages untouched
    run_study(SPEC.replace(n_trials=11), url, data=digits)  # the same command again: nothing left to run
    assert sum(family_counts(load_family("c2f", open_storage(url))).values()) == 11


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
    carried = [sum(is_carried(t) for t in s.trials) for s in studies]
    assert carried[0] == 0 and carried[1] >= 1 and carried[1] == sum(
        is_carried(t) for t in studies[1].trials[:carried[1]])  # held once, before the stage's own trials


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
    from hpsearch.engine.lr_finder import lr_range_test
    from hpsearch.search.coarse_to_fine import with_lr_prior

    calm = lr_range_test(TrainConfig(), digits, start_lr=1e-7, end_lr=1e-5, steps=20)
    assert calm.diverged_at is None and calm.suggestions.blowup is None
    spec = StudySpec(space=SearchSpace((ParamSpec("lr", 1e-5, 1e-1, log=True),)))
    assert with_lr_prior(spec, calm) == spec
    assert first_trials(calm, spec.space) == []  # nor does it say which learning rates to start from
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


def finished(value: float | None, epochs_run: int, config_epochs: int, state: TrialState = TrialState.COMPLETE,
             **params: float) -> optuna.trial.FrozenTrial:
    """A finished trial of ``epochs_run`` reported epochs, with the record a stage stores."""
    distributions = {name: FloatDistribution(1e-6, 1.0, log=True) for name in params}
    record = TrialRecord(config={"epochs": config_epochs}, status="completed")
    return create_trial(state=state, value=value, params=params, distributions=distributions,
                        intermediate_values={e: (value or 1.0) + 0.1 * (epochs_run - e)
                                             for e in range(1, epochs_run + 1)},
                        user_attrs={"hpsearch": record.to_dict()})


def test_a_stage_carries_the_earlier_trials_inside_its_ranges_at_the_fidelity_they_have() -> None:
    space = SearchSpace((ParamSpec("lr", 1e-3, 1e-1, log=True),))
    spec = StudySpec(space=space, train=TrainConfig(epochs=9))
    coarse = [finished(0.5, 1, 9, TrialState.PRUNED, lr=1e-2), finished(0.4, 9, 9, lr=2e-2),
              finished(0.3, 3, 3, lr=3e-2), finished(0.1, 9, 9, lr=1e-5)]  # the last is outside the range
    carried = carried_trials([("s/1-coarse", coarse)], spec)
    assert [(t.params["lr"], t.state, t.value) for t in carried] == [
        (1e-2, TrialState.PRUNED, None), (2e-2, TrialState.COMPLETE, 0.4), (3e-2, TrialState.PRUNED, None)]
    assert [read_trial(t).carried_from for t in carried] == [f"s/1-coarse trial {t.number}" for t in coarse[:3]]
    assert carried[2].intermediate_values == coarse[2].intermediate_values  # a 3-epoch run: known 3 epochs in
    assert carried_trials([("s/2-fine", carried)], spec) == []  # a carried trial is carried once, from its origin


def test_a_fine_stage_sampler_models_from_its_first_trial_on_the_carried_trials(digits: Data) -> None:
    """TPE's start-up is sized to the stage, and the carried trials fill it: no random sampling."""
    space = SearchSpace((ParamSpec("lr", 1e-3, 1e-1, log=True), ParamSpec("weight_decay", 1e-5, 1e-1, log=True)))
    spec = StudySpec(space=space, n_trials=9, train=TrainConfig(epochs=2))
    earlier = [finished(0.1 * i, 2, 2, lr=10 ** (-2.9 + 0.15 * i), weight_decay=1e-3) for i in range(1, 6)]
    assert tpe_startup_trials(9) == 3 and tpe_startup_trials(30) == 10  # 5 carried trials fill the 3

    def relative_sample(carried: list[optuna.trial.FrozenTrial]) -> dict[str, object]:
        study = optuna.create_study()
        study.add_trials(carried)
        study.ask()
        sampler = make_sampler("tpe", space, seed=0, n_trials=9)
        new = study.trials[-1]
        return sampler.sample_relative(study, new, sampler.infer_relative_search_space(study, new))

    assert set(relative_sample(carried_trials([("s/1-coarse", earlier)], spec))) == {"lr", "weight_decay"}
    assert relative_sample([]) == {}  # without them TPE would still be sampling at random


def test_carried_trials_are_not_counted_again_by_the_budget_the_counts_or_the_note(
    tmp_path: Path, digits: Data
) -> None:
    url = f"sqlite:///{tmp_path / 'c2f.db'}"
    plan = CoarseToFine(stages=2, coarse_trials=4, fine_trials=2, keep=4, margin=1.0)
    spec = SPEC.replace(coarse_to_fine=plan)
    run_study(spec, url, data=digits)
    fine = optuna.load_study(study_name="c2f/2-fine", storage=open_storage(url))
    carried = [t for t in fine.trials if is_carried(t)]
    assert carried and len(fine.trials) == len(carried) + 2
    assert len(finished_trials(fine)) == 2 and sum(counts_by_state(fine).values()) == 2
    family = load_family("c2f", open_storage(url))
    assert sum(family_counts(family).values()) == 6  # 4 coarse + 2 fine, not the carried ones
    note = study_note("c2f", open_storage(url))
    assert f"{len(carried)} carried over" in note


def test_first_trials_are_the_lr_suggestion_its_neighbours_and_the_recipes_weight_decay(digits: Data) -> None:
    found = lr_range_test(TrainConfig(), digits)
    low, high = found.prior()
    space = SearchSpace((ParamSpec("lr", low, high, log=True), ParamSpec("weight_decay", 1e-5, 1e-1, log=True)))
    params = first_trials(found, space)
    assert params[0] == {"lr": found.suggestion, "weight_decay": 1e-2}
    assert len(params) == 3 and all(low <= p["lr"] <= high for p in params)
    no_decay = SearchSpace((ParamSpec("lr", low, high, log=True), ParamSpec("weight_decay", 1e-5, 1e-3, log=True)))
    assert all("weight_decay" not in p for p in first_trials(found, no_decay))


def test_ranking_compares_trials_at_an_epoch_both_reached() -> None:
    long_and_good = finished(0.30, 9, 9, lr=1e-2)
    short_and_great = finished(0.05, 1, 9, TrialState.PRUNED, lr=1e-3)  # early values look better
    halfway = finished(0.20, 3, 9, TrialState.PRUNED, lr=1e-4)
    assert ranked([short_and_great, halfway, long_and_good], StudyDirection.MINIMIZE) == [
        long_and_good, halfway, short_and_great]


@pytest.mark.parametrize(("pruner", "epochs"), [("asha", 9), ("hyperband", 9), ("median", 3)])
def test_the_coarse_stage_trains_full_length_under_a_pruner_with_rungs(pruner: str, epochs: int,
                                                                        digits: Data) -> None:
    spec = StudySpec(strategy="coarse-to-fine", coarse_to_fine=CoarseToFine(coarse_pruner=pruner),
                     train=TrainConfig(epochs=9))
    coarse = coarse_spec(spec, lr_range_test(TrainConfig(), digits))
    assert coarse.pruner == pruner and coarse.train.epochs == epochs


@pytest.mark.parametrize(("study", "fine_pruner"), [({}, "hyperband"), ({"pruner": "median"}, "median")])
def test_a_pruner_asked_for_a_coarse_to_fine_study_is_its_fine_stages(study: dict[str, str], fine_pruner: str,
                                                                      ) -> None:
    spec = StudySpec.from_mapping({"study": {"name": "x", "strategy": "coarse-to-fine", **study}})
    assert spec.coarse_to_fine.fine_pruner == fine_pruner
    assert StudySpec.from_mapping(spec.to_dict()) == spec


def curve(final: float, values: list[float], lr: float = 1e-3) -> optuna.trial.FrozenTrial:
    """A complete trial with these per-epoch values (epochs 1..n) and ``final`` value."""
    return create_trial(value=final, params={"lr": lr}, distributions={"lr": FloatDistribution(1e-5, 1e-1, log=True)},
                        intermediate_values={epoch: v for epoch, v in enumerate(values, start=1)})


AGREEING = [curve(v[-1], v) for v in ([2.0, 1.0, 0.5, 0.3], [2.2, 1.2, 0.7, 0.5], [2.4, 1.4, 0.9, 0.7],
                                      [2.6, 1.6, 1.1, 0.9])]
# Fast learners that overfit: best after epoch 1, worst at the end; the slow ones overtake them by epoch 3.
CROSSING = [curve(v[-1], v) for v in ([0.8, 1.0, 1.3, 1.5], [0.9, 1.0, 1.2, 1.3], [1.8, 1.2, 0.9, 0.8],
                                      [2.0, 1.4, 0.8, 0.7], [2.1, 1.3, 1.0, 0.9])]


@pytest.mark.parametrize(("trials", "epoch"), [(AGREEING, 1), (CROSSING, 3), (AGREEING[:3], None)],
                         ids=["curves that agree from the first epoch", "curves that cross", "too few to tell"])
def test_the_trusted_epoch_is_the_first_whose_ranking_agrees_with_the_final_one(
        trials: list[optuna.trial.FrozenTrial], epoch: int | None) -> None:
    assert trusted_epoch(trials) == epoch


@pytest.mark.parametrize(("trials", "warmup"), [(CROSSING, 3), (AGREEING, 1), (AGREEING[:3], None)])
def test_a_fine_stage_prunes_no_trial_before_the_trusted_epoch(trials: list[optuna.trial.FrozenTrial],
                                                               warmup: int | None) -> None:
    stage = fine_spec(SPEC, 2, SPEC.replace(pruner="hyperband"), trials, StudyDirection.MINIMIZE)
    assert stage.pruner_warmup == warmup


def stopped(values: list[float], lr: float, status: Status = Status.PRUNED, carried_from: str | None = None,
            ) -> optuna.trial.FrozenTrial:
    """A trial told PRUNED after these epochs: stopped by its pruner, diverged, or carried from a stage before."""
    record = TrialRecord(status=status, carried_from=carried_from)
    return create_trial(state=TrialState.PRUNED, params={"lr": lr},
                        distributions={"lr": FloatDistribution(1e-5, 1e-1, log=True)},
                        intermediate_values={epoch: v for epoch, v in enumerate(values, start=1)},
                        user_attrs={RECORD_ATTR: record.to_dict()})


@pytest.mark.parametrize(("extra", "narrowed"), [
    (stopped([2.2], 1e-4), False), (stopped([2.2, 1.5, 1.0], 1e-4), True), (None, True),
    (stopped([9.0], 5e-2, status=Status.DIVERGED), True), (stopped([2.2], 1e-4, carried_from="c2f/1-coarse trial 0"),
                                                             True)],
    ids=["a trial pruned before its ranking held: ranges kept", "pruned from the trusted epoch on", "nothing pruned",
         "diverged, not pruned", "pruned in the stage before"])
def test_a_stage_whose_pruner_kept_trials_by_misleading_epochs_is_not_narrowed_around_them(
        extra: optuna.trial.FrozenTrial | None, narrowed: bool) -> None:
    lrs = (3e-3, 1e-3, 2e-4, 1e-4, 5e-4)  # the fast learners that overfit have the large lrs
    trials = [curve(t.value, list(t.intermediate_values.values()), lr=lr) for t, lr in zip(CROSSING, lrs, strict=True)]
    assert trusted_epoch(trials) == 3
    previous = SPEC.replace(pruner="hyperband")
    stage = fine_spec(SPEC, 2, previous, trials + ([extra] if extra is not None else []), StudyDirection.MINIMIZE)
    assert (stage.space != previous.space) == narrowed


def test_the_note_says_from_which_epoch_a_stage_prunes_when_it_is_not_the_first() -> None:
    storage = open_storage("memory")
    family = []
    for stage, warmup in ((1, None), (2, 4)):
        study = optuna.create_study(study_name=f"c2f/{stage}-stage", storage=storage)
        write_record(study, StudyRecord(spec=SPEC.replace(name=study.study_name, pruner_warmup=warmup).to_dict()))
        family.append(study)
    first, second = stage_lines(family)
    assert "pruned before" not in first and second.endswith("; no trial pruned before epoch 4")
