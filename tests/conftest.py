"""Shared fixtures: small real datasets, loaded once per session, and a PostgreSQL database per test."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

from hpsearch.data import Data
from hpsearch.datasets import load_data


@pytest.fixture(scope="session")
def digits() -> Data:
    """scikit-learn's digits, split and normalized as the default dataset is."""
    return load_data("digits")


POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new PostgreSQL database, dropped on exit; skip when the server is down, except on CI
    (CI=true), where a missing server is a failure."""
    import psycopg

    name = f"hpsearch_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 ({str(exc).strip().splitlines()[0]})")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{POSTGRES_SERVER}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own."""
    with fresh_postgres_database() as url:
        yield url
