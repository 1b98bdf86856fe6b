"""Storage URLs → Optuna storages: the default journal file, SQLite, PostgreSQL/MySQL, Redis, memory.

Every storage that several processes can share gets heartbeats: a running trial records one every
``heartbeat`` seconds, and a trial silent for three of them (its worker was killed) is failed by the
next worker that starts a trial, then queued again up to ``max_retries`` times.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sqlite3
import time
import warnings
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage, InMemoryStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalRedisBackend

from hpsearch.errors import HPSearchError
from hpsearch.search.storages.journal_file import UnsyncedJournalFileBackend
from hpsearch.search.storages.optuna_private import redis_client
from hpsearch.search.storages.optuna_private.heartbeat import HeartbeatJournalStorage

__all__ = ["DEFAULT_HEARTBEAT", "DEFAULT_MAX_RETRIES", "DEFAULT_STORAGE", "DURABLE_SQLITE_PRAGMAS", "GRACE_BEATS",
           "SQLITE_PRAGMAS", "StorageError", "describe_storage", "open_storage"]

# Optuna's journal file: an append-only log, one line per write, that reads back only the lines it has
# not seen. SQLite costs several times as much per trial, mostly in SQLAlchemy's per-statement work
# (scripts/bench_overhead.py).
DEFAULT_STORAGE = "hpsearch.journal"
# Set on every SQLite connection. WAL lets a reader (the dashboard) run beside the study, and with
# synchronous=NORMAL a commit appends to the WAL without an fsync: a power cut may lose the last
# commits, never the file's consistency. WAL needs a local file system, not a network one.
SQLITE_PRAGMAS = {"journal_mode": "WAL", "synchronous": "NORMAL"}
# What ``durable`` changes: every commit (SQLite) and every journal line is fsynced before it returns.
DURABLE_SQLITE_PRAGMAS = {**SQLITE_PRAGMAS, "synchronous": "FULL"}
# Seconds between a running trial's heartbeats, and how many may be missed before it counts as dead.
DEFAULT_HEARTBEAT = 10
GRACE_BEATS = 3
DEFAULT_MAX_RETRIES = 2
# How long an SQLite writer waits for another process's lock before "database is locked".
SQLITE_BUSY_TIMEOUT = 60
# A server that does not answer within this many seconds is reported as unreachable.
CONNECT_TIMEOUT = 10
# URL scheme → (module a driver provides, extra that installs it).
_DRIVERS = {"postgresql": ("psycopg", "postgres"), "postgresql+psycopg": ("psycopg", "postgres"),
            "postgresql+psycopg2": ("psycopg2", "postgres"), "mysql": ("pymysql", "mysql"),
            "mysql+pymysql": ("pymysql", "mysql"), "redis": ("redis", "redis")}
_RDB_SCHEMES = ("sqlite:///", "postgresql://", "postgresql+psycopg2://", "postgresql+psycopg://", "mysql://",
                "mysql+pymysql://")
# The URL each storage was opened from, for messages; weak so that a closed storage is forgotten.
_URLS: weakref.WeakKeyDictionary[BaseStorage, str] = weakref.WeakKeyDictionary()


class StorageError(HPSearchError):
    """A storage URL that is malformed or cannot be opened."""


def open_storage(url: str | None = None, *, heartbeat: int | None = DEFAULT_HEARTBEAT,
                 max_retries: int = DEFAULT_MAX_RETRIES, durable: bool = False) -> BaseStorage:
    """Open ``url``: ``journal:FILE`` (or a ``*.journal`` / ``*.log`` path), ``sqlite:///FILE``,
    ``postgresql://…``, ``mysql://…``, ``redis://…``, or ``memory``; None means DEFAULT_STORAGE.

    ``heartbeat`` seconds (None or 0: off) and ``max_retries`` set how trials of killed workers are
    found and run again; ``memory`` has no other process to lose, so it ignores them. A journal file and
    SQLite hand each write to the operating system, which keeps it through a killed or crashed process;
    ``durable`` also fsyncs each one, so that it survives a power cut too, at about 0.4 ms a write.
    """
    url = url or DEFAULT_STORAGE
    if heartbeat is not None and heartbeat < 0:
        raise StorageError(f"heartbeat must be >= 0 seconds, got {heartbeat}")
    if max_retries < 0:
        raise StorageError(f"max_retries must be >= 0, got {max_retries}")
    _check_driver(url)
    with warnings.catch_warnings():  # Optuna marks heartbeats experimental; they are used on purpose here
        warnings.simplefilter("ignore", ExperimentalWarning)
        storage = _open(url, _Heartbeats(heartbeat or None, max_retries), durable)
    _URLS[storage] = _hide_password(url)
    return storage


def describe_storage(storage: BaseStorage) -> str:
    """A short human name for messages: the URL it was opened from, without a password."""
    if isinstance(storage, RDBStorage):
        return str(storage.engine.url.render_as_string(hide_password=True))
    return _URLS.get(storage, type(storage).__name__)


class _Heartbeats:
    """The heartbeat keyword arguments of Optuna's storages, or none when heartbeats are off."""

    def __init__(self, interval: int | None, max_retries: int) -> None:
        self.kwargs: dict[str, Any] = {} if interval is None else {
            "heartbeat_interval": interval,
            "grace_period": GRACE_BEATS * interval,
            # A retry keeps the killed trial's params and names it (system attrs failed_trial,
            # retry_history), so the link between the two stays in the storage. It reports its own
            # values: from its first epoch, or the restored ones when it resumes from a checkpoint.
            "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=max_retries),
        }


def _open(url: str, beats: _Heartbeats, durable: bool) -> BaseStorage:
    try:
        if url == "memory":
            return InMemoryStorage()
        if url.startswith("journal:") or url.endswith((".journal", ".log")):
            path = Path(url.removeprefix("journal:"))
            _check_folder(path, url)
            backend = JournalFileBackend(str(path)) if durable else UnsyncedJournalFileBackend(str(path))
            return _journal(backend, beats)
        if url.startswith("redis://"):
            backend = JournalRedisBackend(url)
            redis_client(backend).ping()  # fail here, naming the URL, rather than at the first write
            return _journal(backend, beats)
        if url.startswith("sqlite:///"):
            _check_sqlite_file(Path(url.removeprefix("sqlite:///")), url)
            return _open_sqlite(url, beats, DURABLE_SQLITE_PRAGMAS if durable else SQLITE_PRAGMAS)
        if url.startswith("mysql://"):  # SQLAlchemy's default MySQL driver needs a compiler; the extra has PyMySQL
            url = "mysql+pymysql://" + url.removeprefix("mysql://")
        if url.startswith(_RDB_SCHEMES):
            return _rdb(url, {"connect_timeout": CONNECT_TIMEOUT}, beats)
    except StorageError:
        raise
    except Exception as exc:  # SQLAlchemy, redis and OS errors all mean: cannot open this storage
        raise StorageError(f"cannot open storage (--storage {url}): {_first_line(exc)}") from None
    raise StorageError(f"storage must be sqlite:///FILE, postgresql://…, mysql://…, journal:FILE, redis://… "
                       f"or memory, got {url!r}")


def _rdb(url: str, connect_args: dict[str, Any], beats: _Heartbeats) -> RDBStorage:
    """Optuna's RDBStorage; when processes create the same new database at once, one creates its tables
    and the others, refused (unique keys, tables that exist), try again and find them."""
    import sqlalchemy  # only an RDB storage needs it: not imported for the journal or memory

    for attempt in range(3):
        try:
            storage = RDBStorage(url, engine_kwargs={"connect_args": connect_args}, **beats.kwargs)
            # Close its connections as soon as the storage is freed: SQLAlchemy's pool holds them in reference
            # cycles that only a later garbage collection frees, and SQLite folds its write-ahead log into the
            # database file when the last one closes, which would then happen in the middle of later work.
            weakref.finalize(storage, storage.engine.dispose)
            return storage
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as exc:
            racing = isinstance(exc, sqlalchemy.exc.IntegrityError) or "already exists" in str(exc)
            if not racing or attempt == 2:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _journal(backend: JournalFileBackend | JournalRedisBackend, beats: _Heartbeats) -> JournalStorage:
    return HeartbeatJournalStorage(backend, **beats.kwargs) if beats.kwargs else JournalStorage(backend)


def _open_sqlite(url: str, beats: _Heartbeats, pragmas: dict[str, str]) -> RDBStorage:
    """An RDBStorage whose connections all run ``pragmas`` and wait for each other's locks."""
    storage = _rdb(url, {"timeout": SQLITE_BUSY_TIMEOUT}, beats)

    def set_pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        for name, value in pragmas.items():
            cursor.execute(f"PRAGMA {name}={value}")
        cursor.close()

    import sqlalchemy

    # RDBStorage creates its engine and first connection itself (tables, schema version), so the
    # listener comes after; disposing the pool makes every later connection go through it.
    sqlalchemy.event.listen(storage.engine, "connect", set_pragmas)
    storage.engine.dispose()
    return storage


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def _check_folder(path: Path, url: str) -> None:
    if not path.parent.is_dir():
        raise StorageError(f"storage folder does not exist (--storage {url})")


def _check_sqlite_file(path: Path, url: str) -> None:
    """Refuse a file that is not SQLite before SQLAlchemy touches it (it would add a WAL beside it).

    Read through SQLite, read-only, never with open(): closing any other descriptor of the file drops
    every POSIX lock this process holds on it, and other processes would then write under our readers.
    """
    _check_folder(path, url)
    if not path.is_file():
        return
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            connection.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"not an SQLite database (--storage {url}): {exc}; give another file") from None


def _check_driver(url: str) -> None:
    """A URL whose database driver is not installed names the extra that installs it."""
    scheme = url.partition("://")[0] if "://" in url else ""
    module, extra = _DRIVERS.get(scheme, (None, None))
    if module is not None and importlib.util.find_spec(module) is None:
        raise StorageError(f"{scheme}:// storages need the {module} driver (--storage {_hide_password(url)}); "
                           f"install it with: pip install 'hpsearch[{extra}]'")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
