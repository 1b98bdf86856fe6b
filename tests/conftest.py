"""Shared fixtures: small real datasets, loaded once per session, and a database of its own per test on each server
(PostgreSQL, MySQL, Redis)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import settings

from hpsearch.engine import training
from hpsearch.engine.data import Data
from hpsearch.engine.datasets import load_data

# Property tests: the same examples on every run (derandomized, no example database written into the tree) and no
# per-example deadline, which a loaded two-core machine would trip; HYPOTHESIS_PROFILE=explore searches wider.
settings.register_profile("ci", max_examples=40, derandomize=True, database=None, deadline=None)
settings.register_profile("explore", max_examples=500, database=None, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def digits() -> Data:
    """scikit-learn's digits, split and normalized as the default dataset is."""
    return load_data("digits")


@dataclass
class TrainedEpochs:
    """What ``train`` really trains: the weights each trained epoch starts from and the data it reads, so a resume
    shows which epochs it ran and from which weights (restored epochs reach the reporter too, untrained)."""

    starting_weights: list[dict[str, torch.Tensor]] = field(default_factory=list)
    data: list[type] = field(default_factory=list)
    interrupt_at: int | None = None  # the trained epoch (counted over the test) at which to raise KeyboardInterrupt

    @property
    def count(self) -> int:
        return len(self.starting_weights)


@pytest.fixture
def trained_epochs(monkeypatch: pytest.MonkeyPatch) -> TrainedEpochs:
    """Records every epoch ``train`` trains in this test (see TrainedEpochs)."""
    seen = TrainedEpochs()
    run_epoch = training._run_epoch

    def recorded(stepper: Any, scheduler: object, data: object, *args: object) -> object:
        if seen.interrupt_at == seen.count + 1:
            raise KeyboardInterrupt  # what Ctrl-C raises in the middle of an epoch, after the last checkpoint
        seen.starting_weights.append({k: v.clone() for k, v in stepper.model.state_dict().items()})
        seen.data.append(type(data))
        return run_epoch(stepper, scheduler, data, *args)

    monkeypatch.setattr(training, "_run_epoch", recorded)
    return seen


POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"


@contextlib.contextmanager
def fresh_postgres_database(template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database (a copy of the database ``template`` when given), dropped on exit; skip when
    the server is down, except on CI (CI=true), where a missing server is a failure."""
    import psycopg

    name = f"hpsearch_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 ({str(exc).strip().splitlines()[0]})")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        try:
            yield f"{POSTGRES_SERVER}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own."""
    with fresh_postgres_database() as url:
        yield url


MYSQL_SERVER = "mysql://root@127.0.0.1:3306"


@contextlib.contextmanager
def fresh_mysql_database() -> Iterator[str]:
    """A new MySQL (MariaDB) database, dropped on exit; skip when the server or its driver is missing, except on CI
    (CI=true), where that is a failure."""
    try:
        import pymysql

        admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", connect_timeout=5, autocommit=True)
    except Exception as exc:  # ImportError (no driver) or pymysql's OperationalError (no server)
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no MySQL on 127.0.0.1:3306 ({str(exc).strip().splitlines()[0]})")
    name = f"hpsearch_test_{uuid.uuid4().hex[:12]}"
    with admin, admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}`")
        try:
            yield f"{MYSQL_SERVER}/{name}"
        finally:  # as PostgreSQL's DROP DATABASE … WITH (FORCE): a connection still open must not hold the drop up
            cursor.execute("SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()",
                           (name,))
            for (connection,) in cursor.fetchall():
                with contextlib.suppress(pymysql.err.OperationalError):  # it ended meanwhile
                    cursor.execute(f"KILL {int(connection)}")
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


REDIS_SERVER = "redis://127.0.0.1:6379"
# Held in a Redis database while a test uses it; it expires in case the test is killed before it lets go.
REDIS_LEASE = "hpsearch-test:lease"


@contextlib.contextmanager
def fresh_redis_database() -> Iterator[str]:
    """An empty Redis database of this test's own (numbers 1 to 15; 0 is left to others), found empty and leased by
    a key, its keys deleted on exit; skip when the server or its client is missing, except on CI (CI=true).

    Optuna's Redis journal keeps its log under fixed keys, so two studies' journals need two databases."""
    try:
        import redis

        redis.Redis.from_url(REDIS_SERVER, socket_connect_timeout=5).ping()
    except Exception as exc:  # ImportError (no client) or redis's ConnectionError (no server)
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no Redis on 127.0.0.1:6379 ({str(exc).strip().splitlines()[0]})")
    token = uuid.uuid4().hex
    for number in range(1, 16):
        client = redis.Redis.from_url(f"{REDIS_SERVER}/{number}")
        if client.set(REDIS_LEASE, token, nx=True, ex=600):
            if client.dbsize() == 1:
                break
            client.delete(REDIS_LEASE)  # another's keys are there: not ours to use
    else:
        pytest.fail("no empty Redis database among numbers 1 to 15")
    try:
        yield f"{REDIS_SERVER}/{number}"
    finally:
        client.delete(*[key for key in client.scan_iter() if key != REDIS_LEASE.encode()], REDIS_LEASE)


def cut_a_read_short(engine: Any, database: Path, held: list[Any]) -> None:
    """What Ctrl-C between a read's execute and its last fetch leaves behind on SQLite: the read's statement
    still open on a pooled connection of ``engine`` (its cursor in ``held``, as the interrupt's traceback holds
    it), and a commit by another connection since, so that statement's snapshot is stale."""
    with engine.connect() as connection:
        result = connection.exec_driver_sql("SELECT trial_id FROM trials")  # needs two trials or more
        result.fetchone()
        held.append(result)
    with contextlib.closing(sqlite3.connect(database)) as other:
        other.execute("UPDATE studies SET study_name = study_name")
        other.commit()
