"""hpsearch.run_study gives a library caller what `hpsearch run` prints: the family, its best trials, the diagnosis
and advice, and whether the study held its trials already."""

from __future__ import annotations

from pathlib import Path

from hpsearch import StudySpec, TrainConfig, run_study
from hpsearch.engine.data import Data
from hpsearch.presentation.notes import study_diagnosis
from hpsearch.search.summary import best_with_study, load_family


def test_run_study_returns_what_the_cli_prints(tmp_path: Path, digits: Data) -> None:
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    spec = StudySpec(name="lib", strategy="random", n_trials=3, pruner="none", train=TrainConfig(epochs=2,
                                                                                               hidden=(16,)))
    result = run_study(spec, url, data=digits, preflight=False)
    family = load_family("lib", url)
    assert [s.study_name for s in result.family] == ["lib"] and result.held_before == 0 and not result.held_already
    assert [t.number for _, t in result.best] == [t.number for _, t in best_with_study(family, 5)]
    assert result.diagnosis == study_diagnosis(family) and result.diagnosis  # "3 trials diagnosed: …"
    assert len(result.trials) == 3 and result.study_name == "lib"  # it reads as its study, as before
    again = run_study(spec, url, data=digits, preflight=False)
    assert again.held_before == 3 and again.held_already and len(again.trials) == 3
