"""open_storage: every URL form opens the backend it names, and what it cannot open is a StorageError."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.storages import BaseStorage, InMemoryStorage, JournalStorage, RDBStorage

from hpsearch.search.storages import DEFAULT_STORAGE, StorageError, describe_storage, open_storage

REDIS_URL = "redis://127.0.0.1:6379"


def roundtrip(storage: BaseStorage, reopen: BaseStorage | None = None) -> None:
    """A study written through ``storage`` reads back, params and user attrs, through ``reopen``."""
    name = f"roundtrip-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(study_name=name, storage=storage)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        trial.set_user_attr("config", {"lr": x, "hidden": [8]})
        return x

    study.optimize(objective, n_trials=2)
    loaded = optuna.load_study(study_name=name, storage=reopen or storage)
    assert [(t.params, t.user_attrs) for t in loaded.trials] == [(t.params, t.user_attrs) for t in study.trials]
    assert loaded.trials[1].user_attrs["config"]["hidden"] == [8]
    optuna.delete_study(study_name=name, storage=reopen or storage)


def test_sqlite_url_opens_rdb_storage(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    storage = open_storage(url)
    assert isinstance(storage, RDBStorage)
    roundtrip(storage, open_storage(url))
    assert describe_storage(storage) == url


def test_sqlite_pragmas_are_in_effect_on_every_connection(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    open_storage(url)
    storage = open_storage(url)  # an existing file gets them too
    assert isinstance(storage, RDBStorage)
    with storage.engine.connect() as first, storage.engine.connect() as second:
        for connection in (first, second):
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    optuna.create_study(study_name="s", storage=storage)
    assert (tmp_path / "studies.db-wal").exists()


@pytest.mark.parametrize(("durable", "synchronous"), [(False, 1), (True, 2)])  # NORMAL, FULL
def test_durable_sqlite_syncs_every_commit(durable: bool, synchronous: int, tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'studies.db'}", durable=durable)
    assert isinstance(storage, RDBStorage)
    with storage.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == synchronous


@pytest.mark.parametrize(("durable", "fsyncs_per_write"), [(False, 0), (True, 1)])
def test_a_journal_write_is_fsynced_only_when_durable(durable: bool, fsyncs_per_write: int, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    storage = open_storage(f"journal:{tmp_path / 'studies.journal'}", heartbeat=None, durable=durable)
    study = optuna.create_study(study_name="s", storage=storage)
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    trial = study.ask()
    for epoch in range(3):
        trial.report(1.0 / (epoch + 1), epoch)
    study.tell(trial, 0.5)
    writes = 5  # the new trial, three reports, the tell
    assert len(synced) == fsyncs_per_write * writes
    reopened = optuna.load_study(study_name="s", storage=open_storage(f"journal:{tmp_path / 'studies.journal'}"))
    assert reopened.trials[0].intermediate_values == {0: 1.0, 1: 0.5, 2: 1 / 3} and reopened.trials[0].value == 0.5


@pytest.mark.parametrize("form", ["journal:{}", "{}"])
@pytest.mark.parametrize("suffix", [".journal", ".log"])
def test_journal_urls_open_a_journal_file(form: str, suffix: str, tmp_path: Path) -> None:
    path = tmp_path / f"studies{suffix}"
    url = form.format(path)
    storage = open_storage(url)
    assert isinstance(storage, JournalStorage)
    roundtrip(storage, open_storage(url))
    assert path.stat().st_size > 0
    assert describe_storage(storage) == url


def test_journal_prefix_takes_any_file_name(tmp_path: Path) -> None:
    storage = open_storage(f"journal:{tmp_path / 'studies.txt'}")
    assert isinstance(storage, JournalStorage)
    roundtrip(storage)
    assert (tmp_path / "studies.txt").stat().st_size > 0


def test_default_storage_is_a_journal_file_in_the_working_directory(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    storage = open_storage(None)
    assert isinstance(storage, JournalStorage)
    roundtrip(storage)
    assert (tmp_path / DEFAULT_STORAGE).stat().st_size > 0
    assert describe_storage(storage) == DEFAULT_STORAGE


def test_memory_opens_a_fresh_in_memory_storage() -> None:
    storage = open_storage("memory")
    assert isinstance(storage, InMemoryStorage)
    roundtrip(storage)
    optuna.create_study(study_name="kept", storage=storage)
    assert optuna.get_all_study_names(storage) == ["kept"]
    assert optuna.get_all_study_names(open_storage("memory")) == []


def test_redis_url_opens_a_journal_on_redis() -> None:
    """Needs the redis client and a Redis server on 127.0.0.1:6379; skipped without them, except on CI."""
    missing = _redis_missing()
    if missing and os.environ.get("CI") != "true":
        pytest.skip(missing)
    storage = open_storage(REDIS_URL)
    assert isinstance(storage, JournalStorage)
    roundtrip(storage, open_storage(REDIS_URL))
    assert describe_storage(storage) == REDIS_URL


@pytest.mark.parametrize("url", ["foo://bar", "studies.db", "sqlite:/x.db", "mongodb://127.0.0.1/x"])
def test_unknown_url_is_a_storage_error_naming_it(url: str) -> None:
    with pytest.raises(StorageError, match="storage must be") as raised:
        open_storage(url)
    assert repr(url) in str(raised.value)


@pytest.mark.parametrize("form", ["sqlite:///{}/x.db", "journal:{}/x.journal", "{}/x.journal", "{}/x.log"])
def test_missing_folder_is_a_storage_error_naming_the_url(form: str, tmp_path: Path) -> None:
    url = form.format(tmp_path / "missing")
    with pytest.raises(StorageError, match="storage folder does not exist") as raised:
        open_storage(url)
    assert url in str(raised.value)
    assert not (tmp_path / "missing").exists()


def test_unreachable_server_is_a_storage_error_naming_the_url() -> None:
    url = "redis://127.0.0.1:1"  # nothing listens on port 1
    with pytest.raises(StorageError, match="cannot open storage") as raised:
        open_storage(url)
    assert url in str(raised.value)


def test_a_file_that_is_not_a_database_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not a database\n" * 100)
    url = f"sqlite:///{path}"
    with pytest.raises(StorageError, match="not an SQLite database") as raised:
        open_storage(url)
    assert url in str(raised.value)
    assert path.read_text() == "not a database\n" * 100 and sorted(tmp_path.iterdir()) == [path]  # nothing written


def _redis_missing() -> str | None:
    """Why the Redis test cannot run here, or None when it can."""
    try:
        import redis  # noqa: F401 (optuna's journal backend imports it)
    except ImportError:
        return "the redis client is not installed"
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError as exc:
        return f"no Redis server on 127.0.0.1:6379 ({exc})"
    return None
