"""Optuna's private names that hpsearch uses exist in the installed Optuna (hpsearch.search.optuna_private)."""

from __future__ import annotations

import optuna

from hpsearch.search.optuna_private import check_available, in_optimize_loop, requeue, take_stop_request


def test_every_private_name_hpsearch_uses_exists_in_this_optuna() -> None:
    assert check_available() == [], f"optuna {optuna.__version__} lacks these; update hpsearch/search/optuna_private.py"


def test_a_requeued_trial_is_asked_again_and_a_stop_inside_the_loop_is_seen_once() -> None:
    study = optuna.create_study()
    trial = study.ask()
    requeue(study, trial)
    assert study.trials[0].state == optuna.trial.TrialState.WAITING
    with in_optimize_loop(study):
        again = study.ask()
        study.stop()  # allowed only inside the optimize loop
    assert again.number == trial.number
    assert take_stop_request(study) and not take_stop_request(study)
