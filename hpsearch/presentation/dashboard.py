"""optuna-dashboard on a storage: serve it (bound to loopback unless asked), and give it what to show.

Each study gets a note (optuna-dashboard's note API) with the strategy, the LR range test and the
best config; each finished trial one with its status, diagnosis, settings and epochs. With
``--artifacts``, each completed trial uploads its learning-curve PNG and final
checkpoint as Optuna artifacts (``search/objective.py``) to a folder next to the storage, which
``serve_dashboard`` serves.
"""

from __future__ import annotations

import errno
import functools
import importlib.util
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from hpsearch.errors import ConfigError
from hpsearch.search.records import own_trials
from hpsearch.search.storages.optuna_private import storage_of, trial_id
from hpsearch.search.summary import load_family

__all__ = ["artifact_folder", "check_port", "serve_dashboard", "write_notes", "write_trial_note"]
# Where artifacts go when the storage is a server, not a file.
DEFAULT_ARTIFACTS = Path("hpsearch-artifacts")


def artifact_folder(storage_url: str | None, given: Path | None = None) -> Path:
    """``given``, else a folder beside a file storage (``runs/hp.db`` → ``runs/hp-artifacts``), else
    ``hpsearch-artifacts`` in the working directory."""
    from hpsearch.search.storages import DEFAULT_STORAGE  # storage imports Optuna's journal; keep this module light

    if given is not None:
        return given
    url = storage_url or DEFAULT_STORAGE
    for prefix in ("sqlite:///", "journal:"):
        if url.startswith(prefix):
            url = url.removeprefix(prefix)
            break
    else:
        if "://" in url or url == "memory":
            return DEFAULT_ARTIFACTS
    path = Path(url)
    return path.with_name(f"{path.stem}-artifacts")


def check_port(host: str, port: int) -> None:
    """A port out of range, or one already taken on ``host``, is a user error, found before serving."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"port must be between 1 and 65535, got {port} (--port)")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound: {exc.strerror}"
            raise ConfigError(f"port {port} on {host} {reason} (--port, --host)") from None


def write_notes(name: str, storage: BaseStorage) -> None:
    """Give every study of ``name`` (each stage of a coarse-to-fine family) its optuna-dashboard note, and each
    finished trial without one (run by a worker of its own, or before trials had notes) its trial note."""
    from hpsearch.presentation.notes import family_table, study_note

    notes = _note_module()
    note = study_note(name, storage)
    family = load_family(name, storage)
    metric = family_table(family).get("metric", "value")
    for study in family:
        notes.save_note(study, note)
        for trial in own_trials(study):
            if trial.state.is_finished() and not notes.get_note(_TrialHandle.of(study, trial)):
                write_trial_note(study, trial, metric)


def write_trial_note(study: optuna.Study, trial: FrozenTrial, metric: str) -> None:
    """Give a finished trial its optuna-dashboard note (study_notes.trial_note): a trial callback of
    hpsearch.run_study, so that the dashboard shows each trial's note while the study runs. Under 1 ms a trial on
    the default journal file, 13 to 34 ms on SQLite, 0.2% of the training time (scripts/bench_notes.py):
    optuna-dashboard keeps notes in the study's system attrs, two reads and a write per 2,045 characters and one
    for the version."""
    from hpsearch.presentation.notes import trial_note

    _note_module().save_note(_TrialHandle.of(study, trial), trial_note(trial, metric))


@dataclass(frozen=True)
class _TrialHandle:
    """What optuna-dashboard's note functions read of an ``optuna.Trial`` (its storage, study and id), for a
    trial that has finished and so has none any more."""

    storage: BaseStorage
    study: optuna.Study
    _trial_id: int

    @classmethod
    def of(cls, study: optuna.Study, trial: FrozenTrial) -> _TrialHandle:
        return cls(storage_of(study), study, trial_id(trial))


@functools.cache
def _note_module() -> Any:
    """optuna-dashboard's own note functions (``save_note``, ``get_note``), loaded from its ``_note.py`` alone:
    importing the package loads its web app and, through optuna.importance, scikit-learn and SciPy (about a
    second at the end of every run), while the note module needs only Optuna. The package import stays the
    fallback."""
    package = importlib.util.find_spec("optuna_dashboard")  # finds it without importing it
    folders = package.submodule_search_locations if package is not None else None
    path = Path(folders[0]) / "_note.py" if folders else None
    try:
        spec = importlib.util.spec_from_file_location("hpsearch_dashboard_note", path) if path else None
        if spec is None or spec.loader is None or path is None or not path.is_file():
            raise ImportError(path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    except Exception:  # another layout of the package: its public import
        import optuna_dashboard

        return optuna_dashboard


def serve_dashboard(storage: BaseStorage, host: str = "127.0.0.1", port: int = 8080,
                    artifacts: Path | None = None) -> None:
    """Block serving the dashboard (and the artifacts in ``artifacts``, when it exists) until interrupted."""
    from optuna_dashboard import run_server  # imports a web stack; only this command needs it

    store = FileSystemArtifactStore(str(artifacts)) if artifacts is not None and artifacts.is_dir() else None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run_server(storage, host=host, port=port, artifact_store=store)
