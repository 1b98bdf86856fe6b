"""optuna-dashboard on a storage: serve it (bound to loopback unless asked), and give it what to show.

Each study gets a note (optuna-dashboard's note API) with the strategy, the LR range test and the
best config. With ``--artifacts``, each completed trial uploads its learning-curve PNG and final
checkpoint as Optuna artifacts (``search/objective.py``) to a folder next to the storage, which
``serve_dashboard`` serves.
"""

from __future__ import annotations

import errno
import functools
import importlib.util
import socket
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages import BaseStorage

from hpsearch.errors import ConfigError
from hpsearch.search.summary import load_family

__all__ = ["artifact_folder", "check_port", "serve_dashboard", "write_notes"]
# Where artifacts go when the storage is a server, not a file.
DEFAULT_ARTIFACTS = Path("hpsearch-artifacts")


def artifact_folder(storage_url: str | None, given: Path | None = None) -> Path:
    """``given``, else a folder beside a file storage (``runs/hp.db`` → ``runs/hp-artifacts``), else
    ``hpsearch-artifacts`` in the working directory."""
    from hpsearch.storage import DEFAULT_STORAGE  # storage imports Optuna's journal; keep this module light

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
    """Give every study of ``name`` (each stage of a coarse-to-fine family) its optuna-dashboard note."""
    from hpsearch.study_notes import study_note

    save_note = _note_writer()
    note = study_note(name, storage)
    for study in load_family(name, storage):
        save_note(study, note)


@functools.cache
def _note_writer() -> Callable[[optuna.Study, str], None]:
    """optuna-dashboard's own ``save_note``, loaded from its ``_note.py`` alone: importing the package loads
    its web app and, through optuna.importance, scikit-learn and SciPy (about a second at the end of every
    run), while the note module needs only Optuna. The package import stays the fallback."""
    package = importlib.util.find_spec("optuna_dashboard")  # finds it without importing it
    folders = package.submodule_search_locations if package is not None else None
    path = Path(folders[0]) / "_note.py" if folders else None
    try:
        spec = importlib.util.spec_from_file_location("hpsearch_dashboard_note", path) if path else None
        if spec is None or spec.loader is None or path is None or not path.is_file():
            raise ImportError(path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.save_note  # type: ignore[no-any-return]
    except Exception:  # another layout of the package: its public import
        from optuna_dashboard import save_note

        return save_note


def serve_dashboard(storage: BaseStorage, host: str = "127.0.0.1", port: int = 8080,
                    artifacts: Path | None = None) -> None:
    """Block serving the dashboard (and the artifacts in ``artifacts``, when it exists) until interrupted."""
    from optuna_dashboard import run_server  # imports a web stack; only this command needs it

    store = FileSystemArtifactStore(str(artifacts)) if artifacts is not None and artifacts.is_dir() else None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run_server(storage, host=host, port=port, artifact_store=store)
