"""Storage URLs → Optuna storages: the default journal file, SQLite, PostgreSQL/MySQL, Redis, memory."""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy
from optuna.storages import BaseStorage, InMemoryStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalRedisBackend

from hpsearch.errors import HPSearchError

__all__ = ["DEFAULT_STORAGE", "SQLITE_PRAGMAS", "StorageError", "describe_storage", "open_storage"]

# Optuna's journal file: an append-only log, one line and one fsync per write, that reads back only
# the lines it has not seen. SQLite costs about five times as much per trial, mostly in SQLAlchemy's
# per-statement work (scripts/bench_overhead.py).
DEFAULT_STORAGE = "hpsearch.journal"
# Set on every SQLite connection. WAL lets a reader (the dashboard) run beside the study, and with
# synchronous=NORMAL a commit appends to the WAL without an fsync: a power cut may lose the last
# commits, never the file's consistency. WAL needs a local file system, not a network one.
SQLITE_PRAGMAS = {"journal_mode": "WAL", "synchronous": "NORMAL"}
_RDB_SCHEMES = ("sqlite:///", "postgresql://", "postgresql+psycopg2://", "postgresql+psycopg://", "mysql://",
                "mysql+pymysql://")
# The URL each storage was opened from, for messages; weak so that a closed storage is forgotten.
_URLS: weakref.WeakKeyDictionary[BaseStorage, str] = weakref.WeakKeyDictionary()


class StorageError(HPSearchError):
    """A storage URL that is malformed or cannot be opened."""


def open_storage(url: str | None = None) -> BaseStorage:
    """Open ``url``: ``journal:FILE`` (or a ``*.journal`` / ``*.log`` path), ``sqlite:///FILE``,
    ``postgresql://…``, ``mysql://…``, ``redis://…``, or ``memory``; None means DEFAULT_STORAGE."""
    url = url or DEFAULT_STORAGE
    storage = _open(url)
    _URLS[storage] = _hide_password(url)
    return storage


def describe_storage(storage: BaseStorage) -> str:
    """A short human name for messages: the URL it was opened from, without a password."""
    if isinstance(storage, RDBStorage):
        return str(storage.engine.url.render_as_string(hide_password=True))
    return _URLS.get(storage, type(storage).__name__)


def _open(url: str) -> BaseStorage:
    try:
        if url == "memory":
            return InMemoryStorage()
        if url.startswith("journal:") or url.endswith((".journal", ".log")):
            path = Path(url.removeprefix("journal:"))
            _check_folder(path, url)
            return JournalStorage(JournalFileBackend(str(path)))
        if url.startswith("redis://"):
            return JournalStorage(JournalRedisBackend(url))
        if url.startswith("sqlite:///"):
            _check_folder(Path(url.removeprefix("sqlite:///")), url)
            return _open_sqlite(url)
        if url.startswith(_RDB_SCHEMES):
            return RDBStorage(url)
    except StorageError:
        raise
    except Exception as exc:  # SQLAlchemy, redis and OS errors all mean: cannot open this storage
        raise StorageError(f"cannot open storage (--storage {url}): {_first_line(exc)}") from None
    raise StorageError(f"storage must be sqlite:///FILE, postgresql://…, mysql://…, journal:FILE, redis://… "
                       f"or memory, got {url!r}")


def _open_sqlite(url: str) -> RDBStorage:
    """An RDBStorage whose connections all run SQLITE_PRAGMAS."""
    storage = RDBStorage(url)

    def set_pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        for name, value in SQLITE_PRAGMAS.items():
            cursor.execute(f"PRAGMA {name}={value}")
        cursor.close()

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


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
