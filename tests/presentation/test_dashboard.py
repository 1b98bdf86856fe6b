"""The real optuna-dashboard, started by our command, serves the study over HTTP."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial

from hpsearch.engine.config import TrainConfig
from hpsearch.engine.data import Data
from hpsearch.presentation.notes import trial_note
from hpsearch.search.records import RECORD_ATTR, TrialRecord, read_trial
from hpsearch.search.runner import run_study
from hpsearch.search.spec import StudySpec


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str, deadline: float) -> object:
    """GET ``url`` until the server answers or the deadline passes."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_dashboard_serves_the_study_api_on_loopback(tmp_path: Path, digits: Data) -> None:
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    run_study(StudySpec(name="shown", strategy="random", n_trials=2, train=TrainConfig(epochs=1, hidden=(8,))),
              storage, data=digits)
    port = free_port()
    command = [sys.executable, "-m", "hpsearch", "dashboard", "--storage", storage, "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        studies = get_json(f"http://127.0.0.1:{port}/api/studies", time.monotonic() + 60)
        assert isinstance(studies, dict)
        names = [study["study_name"] for study in studies["study_summaries"]]
        assert names == ["shown"]
        study_id = studies["study_summaries"][0]["study_id"]
        detail = get_json(f"http://127.0.0.1:{port}/api/studies/{study_id}", time.monotonic() + 10)
        assert isinstance(detail, dict) and len(detail["trials"]) == 2
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=10)
    assert f"http://127.0.0.1:{port}/" in output


def test_notes_written_without_importing_the_dashboard_read_back_through_its_api(tmp_path: Path, digits: Data) -> None:
    from hpsearch.presentation.dashboard import write_notes
    from hpsearch.presentation.notes import study_note
    from hpsearch.search.storages import open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 'notes.db'}")
    run_study(StudySpec(name="noted", strategy="random", n_trials=1, train=TrainConfig(epochs=1, hidden=(8,))),
              storage, data=digits)
    write_notes("noted", storage)
    write_notes("noted", storage)  # a second version replaces the first

    import optuna
    from optuna_dashboard import get_note

    study = optuna.load_study(study_name="noted", storage=storage)
    assert get_note(study) == study_note("noted", storage)
    # Trials run without hpsearch.run_study's callback (as a worker of its own runs them) get their note here.
    assert dashboard_note(study, study.trials[0]).startswith("**hpsearch** trial 0: **")


def dashboard_note(study: object, trial: FrozenTrial) -> str:
    """A trial's note as optuna-dashboard reads it (its own get_note, on the trial's live handle)."""
    from optuna_dashboard import get_note

    return get_note(optuna.trial.Trial(study, trial._trial_id))  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["sqlite:///{tmp}/notes.db", "journal:{tmp}/notes.journal"])
def test_each_trial_gets_a_readable_note_as_it_finishes(url: str, tmp_path: Path, digits: Data) -> None:
    from hpsearch.presentation.run import run_study as run_with_notes

    storage = url.format(tmp=tmp_path)
    spec = StudySpec(name="noted", strategy="random", n_trials=2, pruner="none",
                     train=TrainConfig(epochs=2, hidden=(16,)))
    seen: dict[int, str] = {}  # each note as read while the study runs, right after its trial

    def read_note(study: optuna.Study, trial: FrozenTrial) -> None:
        seen[trial.number] = dashboard_note(study, trial)

    study = run_with_notes(spec, storage, data=digits, callbacks=[read_note])
    assert sorted(seen) == [0, 1]
    for trial in study.trials:
        note, stored = seen[trial.number], read_trial(trial)
        assert note.startswith(f"**hpsearch** trial {trial.number}: **completed**; val_loss **{trial.value:.4g}**")
        assert f"Diagnosis: **{stored.diagnosis['label']}** ({stored.diagnosis['rule']})" in note
        assert f"`lr={trial.params['lr']:.3g}`" in note and "model `mlp`" in note and "hidden `[16]`" in note
        assert "epochs `2`" in note and "lr `" not in note  # a searched setting is shown once, as a param
        last = stored.history[-1]
        assert f"| 2 | {last['train_loss']:.4g} | {last['val_loss']:.4g} | {last['val_acc']:.4f} |" in note
        assert "| epoch | train_loss | val_loss | val_acc |" in note


def test_a_pruned_trials_note_says_why_and_has_no_value() -> None:
    record = TrialRecord(config=TrainConfig(model="usertask.py:net", epochs=3).to_dict(), status="diverged",
                         reason="loss is nan after epoch 1", diagnosis={"label": "diverging", "rule": "loss nan"},
                         history=[{"epoch": 1, "train_loss": None, "val_loss": None, "val_acc": None, "lr": 0.5}])
    trial = optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, user_attrs={RECORD_ATTR: record.to_dict()})
    note = trial_note(trial, "val_loss")
    assert note.splitlines()[0] == f"**hpsearch** trial {trial.number}: **diverged** (loss is nan after epoch 1)"
    assert "Diagnosis: **diverging**" in note and "hidden" not in note  # hidden is the built-in mlp's
    assert "| epoch | lr |\n| ---: | ---: |\n| 1 | 0.5 |" in note
